"""``FRAUDSTREAM_ALERT_BUDGET``: a share of transactions, or alerts per hour of event time.

The setting's value and its validation; the controller that holds the
budget is :mod:`stream.core.budget`.

Example:
    >>> Budget.parse("0.5%"), Budget.parse("0.005") == Budget.parse("0.5%")
    (Budget(share=0.005, per_hour=None), True)
    >>> Budget.parse("20/h").share_at(4_000)  # 20 alerts an hour at 4,000 transactions an hour
    0.005
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Budget", "BudgetError"]


class BudgetError(ValueError):
    """``FRAUDSTREAM_ALERT_BUDGET`` holds something that is not a budget."""


_SHARE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(%?)\s*$")
_PER_HOUR = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*/\s*h\s*$")


@dataclass(frozen=True)
class Budget:
    """A share of transactions (``share``), or alerts per hour of event time (``per_hour``); one of the two."""

    share: float | None = None
    per_hour: float | None = None

    @classmethod
    def parse(cls, text: str) -> Budget | None:
        """``"0.5%"`` or ``"0.005"`` (a share), ``"20/h"`` (per hour); ``""`` is no budget (None).

        >>> Budget.parse("")
        >>> Budget.parse("5")
        Traceback (most recent call last):
        ...
        stream.contracts.budget.BudgetError: FRAUDSTREAM_ALERT_BUDGET='5': a share must be above 0 and below 1 (0.5% or 0.005); for a count per hour write 5/h
        """
        if not text.strip():
            return None
        hourly = _PER_HOUR.match(text)
        if hourly:
            per_hour = float(hourly.group(1))
            if per_hour <= 0:
                raise BudgetError(f"FRAUDSTREAM_ALERT_BUDGET={text!r}: alerts per hour must be above 0")
            return cls(per_hour=per_hour)
        shared = _SHARE.match(text)
        if not shared:
            raise BudgetError(f"FRAUDSTREAM_ALERT_BUDGET={text!r} is not a budget: write a share (0.5% or 0.005) "
                              "or alerts per hour of event time (20/h)")
        share = float(shared.group(1)) / (100.0 if shared.group(2) else 1.0)
        if not 0.0 < share < 1.0:
            hint = f"; for a count per hour write {shared.group(1)}/h" if not shared.group(2) else ""
            raise BudgetError(f"FRAUDSTREAM_ALERT_BUDGET={text!r}: a share must be above 0 and below 1 "
                              f"(0.5% or 0.005){hint}")
        return cls(share=share)

    def share_at(self, per_hour: float) -> float:
        """The share of transactions the budget allows when ``per_hour`` transactions arrive an hour.

        >>> Budget(per_hour=20).share_at(4_000)
        0.005
        """
        if self.share is not None:
            return self.share
        assert self.per_hour is not None
        return min(0.5, self.per_hour / max(per_hour, 1e-9))
