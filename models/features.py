"""Per-card features: the one code path shared by training and serving.

A card's history is a short list of compact entries (see :func:`entry_of`),
oldest first, as kept in the worker's changelog-backed table. Every time-based
feature uses the event's own timestamp and only history entries at or before
it, never the wall clock, so replaying last year's data yields exactly the
features live traffic would have had.

Example:
    >>> from stream.records import Transaction
    >>> day = 86_400_000
    >>> t1 = Transaction("t1", "c1", 10 * day, 20.0, "EUR", "m1", "5411", "FR", "pos")
    >>> t2 = Transaction("t2", "c1", 10 * day + 60_000, 900.0, "EUR", "m2", "5732", "BR", "ecom")
    >>> h = append(new_history(), t1, limit=32)
    >>> f = engineered(h, t2)
    >>> f["n_1h"], f["is_new_country"], f["is_new_merchant"], round(f["amount_ratio_max"], 2)
    (1.0, 1.0, 1.0, 3.81)
"""

from __future__ import annotations

import bisect
import hashlib
import math
import zlib
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from operator import itemgetter
from sys import intern
from typing import Any

from stream.records import Transaction

__all__ = [
    "FEATURE_NAMES",
    "History",
    "HistoryEntry",
    "advance",
    "append",
    "engineered",
    "entry_of",
    "new_history",
    "position_of",
    "prior_history",
    "stable_hash",
    "txid_hash",
]

# Compact entry: [event_time_ms, amount, merchant_hash, mcc, country, channel, txid_hash].
# A list (not a dict) because it is what the changelog stores for every card.
HistoryEntry = list[Any]
History = list[HistoryEntry]
TS, AMOUNT, MERCHANT, MCC, COUNTRY, CHANNEL, TXID = range(7)
_event_time = itemgetter(TS)

_HOUR = 3_600_000
_DAY = 24 * _HOUR
_NO_GAP_S = 30 * 86_400.0  # "no previous transaction" reads as a month-long gap
_SMALL_AMOUNT = 5.0  # card testing probes with amounts below this

FEATURE_NAMES: tuple[str, ...] = (
    "log_amount",
    "amount_z",
    "amount_ratio_max",
    "n_1h",
    "n_24h",
    "n_7d",
    "log_sum_24h",
    "log_gap_prev",
    "n_small_1h",
    "is_new_merchant",
    "is_new_mcc",
    "is_new_country",
    "is_new_channel",
    "is_foreign",
    "log_history_len",
    "hour_sin",
    "hour_cos",
    "is_ecom",
)


def stable_hash(text: str) -> int:
    """32-bit hash that is the same in every process (unlike ``hash``).

    >>> stable_hash("merchant-42")
    3187588786
    """
    return zlib.crc32(text.encode())


@lru_cache(maxsize=8192)  # prior_history, append and entry_of each need it for the same transaction
def txid_hash(transaction_id: str) -> int:
    """64-bit digest of a transaction id, used to spot a redelivered event."""
    return int.from_bytes(hashlib.blake2b(transaction_id.encode(), digest_size=8).digest(), "big")


def new_history() -> History:
    """An empty history."""
    return []


def entry_of(t: Transaction) -> HistoryEntry:
    """The compact history entry for one transaction.

    The category strings are interned: all entries share one ``"FR"`` object
    instead of each decoded record keeping its own (three objects fewer per
    entry: 384,000 for 4,000 cards with full 32-entry histories). Entries
    recovered from the changelog keep their own strings until they age out.
    """
    return [t.event_time_ms, t.amount, stable_hash(t.merchant_id), intern(t.mcc), intern(t.country),
            intern(t.channel), txid_hash(t.transaction_id)]


def position_of(history: History, t: Transaction) -> int | None:
    """Index of ``t`` in ``history`` if it is already there (a redelivery); the last one if twice."""
    h = txid_hash(t.transaction_id)
    txids = [e[TXID] for e in history]
    if h not in txids:  # the usual case: one C-level scan
        return None
    return len(txids) - 1 - txids[::-1].index(h)


def prior_history(history: History, t: Transaction) -> History:
    """The part of ``history`` that precedes ``t`` in event time.

    A redelivered transaction (already in the history after an at-least-once
    replay) sees exactly the history it saw the first time, so its score and
    its alert are the same.
    """
    return history[:_place(history, t)[0]]


def append(history: History, t: Transaction, limit: int) -> History:
    """Insert ``t`` in event-time order, skip a duplicate, keep the last ``limit``."""
    return advance(history, t, limit)[1]


def _place(history: History, t: Transaction) -> tuple[int, bool]:
    """Where ``t`` is or goes in ``history``, and whether it is already there."""
    pos = position_of(history, t)
    if pos is not None:
        return pos, True
    return bisect.bisect_right(history, t.event_time_ms, key=_event_time), False


def advance(history: History, t: Transaction, limit: int) -> tuple[History, History]:
    """``(prior_history(history, t), append(history, t, limit))`` with one search of ``history``.

    What the score agent does for every transaction: the history ``t`` is
    scored against, and the history kept after it.

    >>> from stream.records import Transaction
    >>> t1 = Transaction("t1", "c1", 1_000, 20.0, "EUR", "m1", "5411", "FR", "pos")
    >>> t2 = Transaction("t2", "c1", 2_000, 35.0, "EUR", "m2", "5411", "FR", "pos")
    >>> prior, kept = advance(append(new_history(), t2, 32), t1, 32)  # t1 arrives late
    >>> prior, [e[AMOUNT] for e in kept]
    ([], [20.0, 35.0])
    >>> advance(kept, t2, 32)[0] == kept[:1]  # t2 redelivered: the history it had, nothing appended
    True
    """
    cut, present = _place(history, t)
    prior = history[:cut]
    if present:
        return prior, history
    return prior, [*prior, entry_of(t), *history[cut:]][-limit:]


def _most_common_country(countries: Sequence[str]) -> str:
    """The card's home country: the most frequent, the earliest seen on a tie (as Counter.most_common)."""
    counts = Counter(countries)  # first-seen order; max keeps the first of equals
    return max(counts, key=counts.__getitem__) if counts else ""


def engineered(history: Sequence[HistoryEntry], t: Transaction) -> dict[str, float]:
    """Engineered features of ``t`` given the card's prior ``history``.

    ``history`` must already be cut to entries before ``t``
    (:func:`prior_history`) and, like every history :func:`append` builds, be
    in event-time order; the result is keyed by :data:`FEATURE_NAMES`.
    """
    now = t.event_time_ms
    amount = t.amount
    log_amount = math.log1p(amount)
    n = len(history)
    if n:
        # One transposition into columns, then C-level scans (in, max, bisect, sum)
        # instead of a Python loop per entry and feature: ~2x faster on full histories.
        times, amounts, merchants, mccs, countries, channels = list(zip(*history))[:TXID]
        # Windows by bisection on the ordered times: age <= w  <=>  time >= now - w.
        in_7d = bisect.bisect_left(times, now - 7 * _DAY)
        in_24h = bisect.bisect_left(times, now - _DAY, in_7d)
        in_1h = bisect.bisect_left(times, now - _HOUR, in_24h)
        n_7d, n_24h, n_1h = n - in_7d, n - in_24h, n - in_1h
        sum_24h = sum(amounts[in_24h:], 0.0)  # oldest first, as a running total would add them
        n_small = sum(1 for a in amounts[in_1h:] if a < _SMALL_AMOUNT)
        amount_ratio_max = math.log(amount / max(amounts))
        gap_s = max(now - times[-1], 0) / 1000.0
        is_new_merchant = float(stable_hash(t.merchant_id) not in merchants)
        is_new_mcc = float(t.mcc not in mccs)
        is_new_country = float(t.country not in countries)
        is_new_channel = float(t.channel not in channels)
        is_foreign = float(_most_common_country(countries) != t.country)
    else:
        n_7d = n_24h = n_1h = n_small = 0
        sum_24h = 0.0
        amount_ratio_max = 0.0
        gap_s = _NO_GAP_S
        is_new_merchant = is_new_mcc = is_new_country = is_new_channel = is_foreign = 0.0
    if n >= 2:
        logs = list(map(math.log1p, amounts))
        mean = sum(logs) / n
        std = math.sqrt(sum([(x - mean) ** 2 for x in logs]) / (n - 1))
        amount_z = (log_amount - mean) / max(std, 0.25)
    else:
        amount_z = 0.0
    hour = (now % _DAY) / _HOUR
    return {
        "log_amount": log_amount,
        "amount_z": amount_z,
        "amount_ratio_max": amount_ratio_max,
        "n_1h": float(n_1h),
        "n_24h": float(n_24h),
        "n_7d": float(n_7d),
        "log_sum_24h": math.log1p(sum_24h),
        "log_gap_prev": math.log1p(gap_s),
        "n_small_1h": float(n_small),
        "is_new_merchant": is_new_merchant,
        "is_new_mcc": is_new_mcc,
        "is_new_country": is_new_country,
        "is_new_channel": is_new_channel,
        "is_foreign": is_foreign,
        "log_history_len": math.log1p(n),
        "hour_sin": math.sin(2 * math.pi * hour / 24),
        "hour_cos": math.cos(2 * math.pi * hour / 24),
        "is_ecom": float(t.channel == "ecom"),
    }
