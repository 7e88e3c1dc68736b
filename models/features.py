"""Per-card features: the one code path shared by training and serving.

A card's history (:mod:`models.history`) holds its last transactions as
columns, oldest first, as kept in the worker's changelog-backed table. Every
time-based feature uses the event's own timestamp and only history entries at
or before it, never the wall clock, so replaying last year's data yields
exactly the features live traffic would have had.

Example:
    >>> from models.history import append, new_history
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
from typing import TYPE_CHECKING

from stream.records import Transaction

if TYPE_CHECKING:
    from models.history import History

__all__ = [
    "FEATURE_NAMES",
    "category_hash",
    "engineered",
    "stable_hash",
    "txid_hash",
]

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


_CATEGORY_HASHES: dict[str, int] = {}


def category_hash(text: str) -> int:
    """:func:`stable_hash` of a category string (MCC, country, channel), cached: they are few.

    A plain dict, not ``lru_cache``: it is called for every transaction.

    >>> category_hash("FR") == stable_hash("FR")
    True
    """
    cached = _CATEGORY_HASHES.get(text)
    if cached is None:
        if len(_CATEGORY_HASHES) > 1 << 16:  # bound it against a flood of junk values
            _CATEGORY_HASHES.clear()
        cached = _CATEGORY_HASHES[text] = stable_hash(text)
    return cached


@lru_cache(maxsize=8192)  # position_of and advance both need it for the same transaction
def txid_hash(transaction_id: str) -> int:
    """64-bit digest of a transaction id, used to spot a redelivered event."""
    return int.from_bytes(hashlib.blake2b(transaction_id.encode(), digest_size=8).digest(), "big")


def _most_common(values: Sequence[int]) -> int | None:
    """The most frequent value, the earliest seen on a tie (as ``Counter.most_common``)."""
    counts = Counter(values)  # first-seen order; max keeps the first of equals
    return max(counts, key=counts.__getitem__) if counts else None


def engineered(history: History, t: Transaction) -> dict[str, float]:
    """Engineered features of ``t`` given the card's prior ``history``.

    ``history`` must already be cut to entries before ``t``
    (:func:`models.history.prior_history`) and, like every history
    :func:`models.history.append` builds, be in event-time order; the result
    is keyed by :data:`FEATURE_NAMES`. Categories are compared by their
    :func:`category_hash` (CRC-32: two different strings of the same length
    of up to four bytes, such as two MCCs or two country codes, never
    collide; any other pair collides once in about four billion).
    """
    now = t.event_time_ms
    amount = t.amount
    log_amount = math.log1p(amount)
    n = len(history)
    if n:
        # Column scans at C speed (in, max, bisect, sum) instead of a Python loop per entry.
        times, amounts = history.ts, history.amount
        # Windows by bisection on the ordered times: age <= w  <=>  time >= now - w.
        in_7d = bisect.bisect_left(times, now - 7 * _DAY)
        in_24h = bisect.bisect_left(times, now - _DAY, in_7d)
        in_1h = bisect.bisect_left(times, now - _HOUR, in_24h)
        n_7d, n_24h, n_1h = n - in_7d, n - in_24h, n - in_1h
        sum_24h = sum(amounts[in_24h:], 0.0)  # oldest first, as a running total would add them
        n_small = sum(1 for a in amounts[in_1h:] if a < _SMALL_AMOUNT)
        amount_ratio_max = math.log(amount / max(amounts))
        gap_s = max(now - times[-1], 0) / 1000.0
        country, countries = category_hash(t.country), history.hashed("country")
        home_count = countries.count(country)
        is_new_merchant = float(stable_hash(t.merchant_id) not in history.hashed("merchant"))
        is_new_mcc = float(category_hash(t.mcc) not in history.hashed("mcc"))
        is_new_country = float(home_count == 0)
        is_new_channel = float(category_hash(t.channel) not in history.hashed("channel"))
        # A country used by most of the history is the most common one (the usual card at
        # home), and one never used is not: only the rest need counting every country.
        if 2 * home_count > n or home_count == 0:
            is_foreign = is_new_country
        else:
            is_foreign = float(_most_common(countries) != country)
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
