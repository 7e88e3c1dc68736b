"""What reasons are written from (:class:`Facts`) and how their numbers read (money, rates, gaps, ordinals).

Shared by the card's reasons (:mod:`models.reasons`) and the entities'
(:mod:`models.entity_reasons`); one way to write each kind of number, so a
test parses every reason's text back the same way.

Example:
    >>> money(1450.0, "EUR"), number(24.17), number(0.066), ordinal(22), duration(180), duration(30 * 86_400)
    ('1,450.00 EUR', '24', '0.07', '22nd', '3 minutes', '30 days')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from models.history import History
from stream.contracts.records import Transaction

__all__ = ["DAY_MS", "HOUR_MS", "RATE", "Explain", "Facts", "Found", "duration", "money", "number", "ordinal",
           "plural"]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: A count, a sum or a gap speaks at twice (or half) its usual level.
RATE = 2.0

#: What an explainer finds: the reason's code, its text and the values the text names.
Found = tuple[str, str, dict[str, Any]]


class Facts:
    """The transaction, its model inputs and the card's earlier transactions (oldest first)."""

    def __init__(self, transaction: Transaction, features: Mapping[str, float], history: History) -> None:
        self.transaction = transaction
        self.features = features
        self.history = history
        self.n = len(history)
        self.now = transaction.event_time_ms

    @cached_property
    def ts(self) -> npt.NDArray[np.int64]:
        return np.asarray(self.history.ts, dtype=np.int64)

    @cached_property
    def amounts(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.history.amount, dtype=np.float64)

    @cached_property
    def entries(self) -> list[Any]:
        return list(self.history)

    def count(self, name: str) -> int:
        """A ``log1p``-ed count input (the entities') as the whole number it holds."""
        return round(math.expm1(self.features.get(name, 0.0)))

    def older(self, window_ms: int) -> npt.NDArray[np.bool_]:
        """Which earlier transactions came before the window of ``window_ms`` that ends at this one."""
        return self.ts < self.now - window_ms

    def usual_per_day(self, window_ms: int, weights: npt.NDArray[np.float64] | None = None) -> float | None:
        """The card's daily count (or sum of ``weights``) before the window; None over less than a day of history."""
        before = self.older(window_ms)
        if not before.any():
            return None
        days = (self.now - window_ms - int(self.ts[before][0])) / DAY_MS
        if days < 1:
            return None
        total = float(before.sum()) if weights is None else float(weights[before].sum())
        return total / days


#: Reads what reasons are written from; None when its comparison does not hold or cannot be made.
Explain = Callable[[Facts], "Found | None"]


def money(amount: float, currency: str) -> str:
    """``1,450.00 EUR``."""
    return f"{amount:,.2f} {currency}"


def number(x: float) -> str:
    """A rate or a ratio as people read it: ``24``, ``2.5``, ``0.07``."""
    if x >= 10:
        return f"{x:,.0f}"
    return f"{x:.1f}" if x >= 0.1 else f"{x:.2f}"


def duration(seconds: float) -> str:
    """A gap in plain units: seconds, minutes, hours (one decimal under 10) or days (likewise).

    >>> duration(30), duration(5 * 3600), duration(1.5 * 86_400), duration(60)
    ('30 seconds', '5 hours', '1.5 days', '60 seconds')
    """
    for limit, size, unit in ((90, 1, "second"), (90 * 60, 60, "minute"), (36 * 3600, 3600, "hour")):
        if seconds < limit:
            return _amount_of(seconds / size, unit)
    return _amount_of(seconds / 86_400, "day")


def _amount_of(x: float, unit: str) -> str:
    text = f"{x:.0f}" if x >= 10 or unit in ("second", "minute") else f"{x:.1f}".removesuffix(".0")
    return f"{text} {unit}{'' if text == '1' else 's'}"


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``21st``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def plural(n: int, word: str) -> str:
    """``1 transaction``, ``3 transactions``."""
    return f"{n} {word}{'' if n == 1 else 's'}"
