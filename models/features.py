"""Per-card features: the one code path shared by training and serving.

A card's history (:mod:`models.history`) holds its last transactions as
columns, oldest first, as kept in the worker's changelog-backed table. Every
time-based feature uses the event's own timestamp and only history entries at
or before it, never the wall clock, so replaying last year's data yields
exactly the features live traffic would have had.

The score agent computes a micro-batch at once (:func:`engineered_batch`: one
row per transaction, NumPy over the batch's histories gathered into arrays;
in the bench's worker the features stage went from 13-17 to 7-8 µs per
transaction against a Python function per transaction);
:func:`engineered` is the same code for one transaction, as a dict. A row does
not depend on the rest of its batch (a test holds each row equal, bit for
bit, to the same transaction computed alone), so a replay gets the features
live traffic got whatever the batching.

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
    >>> x = engineered_batch([h, new_history()], [t2, t1])
    >>> x.shape, x[0].tolist() == list(f.values())
    ((2, 18), True)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from models.history import HASHED, Columns, History, check_windows, scored_windows
from stream.records import Transaction

__all__ = [
    "FEATURE_NAMES",
    "engineered",
    "engineered_batch",
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
_MERCHANT, _MCC, _COUNTRY, _CHANNEL = (HASHED.index(f) for f in ("merchant", "mcc", "country", "channel"))


def _most_common(values: Sequence[int]) -> int | None:
    """The most frequent value, the earliest seen on a tie (as ``Counter.most_common``)."""
    counts = Counter(values)  # first-seen order; max keeps the first of equals
    return max(counts, key=counts.__getitem__) if counts else None


def _last(running: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Row totals added oldest first, as a Python loop (or ``sum``) over the entries would add them.

    ``np.sum`` adds pairwise, a different rounding; a cumulative sum is
    sequential, and the zeros of padded and excluded entries add nothing.
    """
    return np.cumsum(running, axis=1)[:, -1] if running.shape[1] else np.zeros(running.shape[0])


def engineered_batch(histories: Sequence[History], transactions: Sequence[Transaction],
                     windows: Columns | None = None) -> npt.NDArray[np.float64]:
    """Engineered features of each ``transactions[i]`` given its card's prior ``histories[i]``.

    ``[B, len(FEATURE_NAMES)]`` float64, columns in :data:`FEATURE_NAMES`
    order. Each history must already be cut to entries before its
    transaction (:func:`models.history.prior_history`) and, like every
    history :func:`models.history.append` builds, be in event-time order.
    Categories are compared by their :func:`~models.hashing.category_hash`
    (CRC-32: two different strings of the same length of up to four bytes,
    such as two MCCs or two country codes, never collide; any other pair
    collides once in about four billion).

    ``windows``: :func:`~models.history.scored_windows` of the same histories
    and transactions (every entry), when the caller has gathered them already
    (the score agent shares them with the sequence model); gathered here
    otherwise. :func:`~models.history.check_windows` refuses windows whose
    entry counts or transaction times differ.
    """
    b = len(transactions)
    if windows is None:
        windows = scored_windows(histories, transactions)  # refuses histories and transactions of different counts
    else:
        check_windows(windows, histories, transactions)
    width = windows.ts.shape[1] - 1  # the history columns; the last is the transaction's
    ts, amount, valid, n = windows.ts[:, :width], windows.amount[:, :width], windows.valid[:, :width], windows.lengths
    now, amt, mine = windows.ts[:, width], windows.amount[:, width], windows.hashes[:, width]
    hashes = windows.hashes[:, :width]
    has = n > 0
    # Time windows: entries at or after now - w (age <= w); the history is in event-time order.
    in_24h = valid & (ts >= (now - _DAY)[:, None])
    in_1h = valid & (ts >= (now - _HOUR)[:, None])
    # Novelty: is the transaction's merchant / MCC / country / channel anywhere in the history.
    same = (hashes == mine[:, None, :]) & valid[:, :, None]
    is_new = has[:, None] & ~same.any(axis=1)
    home_count = np.count_nonzero(same[:, :, _COUNTRY], axis=1)
    # A country used by most of the history is the most common one (the usual card at home),
    # and one never used is not: only the rest need counting every country, one by one.
    is_foreign = is_new[:, _COUNTRY].astype(np.float64)
    for r in np.flatnonzero((home_count > 0) & (2 * home_count <= n)).tolist():
        is_foreign[r] = float(_most_common(histories[r].hashed("country")) != int(mine[r, _COUNTRY]))
    largest = np.where(valid, amount, -np.inf).max(axis=1, initial=-np.inf)
    log_amount = np.log1p(amt)
    # amount_z: against the mean and sample std of the history's log amounts (floored at 0.25).
    logs = np.where(valid, np.log1p(amount), 0.0)
    mean = _last(logs) / np.maximum(n, 1)
    spread = np.sqrt(_last(np.where(valid, (logs - mean[:, None]) ** 2, 0.0)) / np.maximum(n - 1, 1))
    hour = (now % _DAY) / _HOUR
    newest = ts[:, -1] if ts.shape[1] else now
    columns = {
        "log_amount": log_amount,
        "amount_z": np.where(n >= 2, (log_amount - mean) / np.maximum(spread, 0.25), 0.0),
        "amount_ratio_max": np.where(has, np.log(amt / np.where(has, largest, 1.0)), 0.0),
        "n_1h": np.count_nonzero(in_1h, axis=1),
        "n_24h": np.count_nonzero(in_24h, axis=1),
        "n_7d": np.count_nonzero(valid & (ts >= (now - 7 * _DAY)[:, None]), axis=1),
        "log_sum_24h": np.log1p(_last(np.where(in_24h, amount, 0.0))),
        "log_gap_prev": np.log1p(np.where(has, np.maximum(now - newest, 0) / 1000.0, _NO_GAP_S)),
        "n_small_1h": np.count_nonzero(in_1h & (amount < _SMALL_AMOUNT), axis=1),
        "is_new_merchant": is_new[:, _MERCHANT],
        "is_new_mcc": is_new[:, _MCC],
        "is_new_country": is_new[:, _COUNTRY],
        "is_new_channel": is_new[:, _CHANNEL],
        "is_foreign": is_foreign,
        "log_history_len": np.log1p(n),
        "hour_sin": np.sin(2 * np.pi * hour / 24),
        "hour_cos": np.cos(2 * np.pi * hour / 24),
        "is_ecom": [t.channel == "ecom" for t in transactions],
    }
    out = np.empty((b, len(FEATURE_NAMES)))
    for i, name in enumerate(FEATURE_NAMES):
        out[:, i] = columns[name]
    return out


def engineered(history: History, t: Transaction) -> dict[str, float]:
    """Engineered features of one transaction ``t`` given its card's prior ``history``, keyed by :data:`FEATURE_NAMES`.

    The same code as :func:`engineered_batch` (a row of it), for people and
    tests; the score agent computes whole batches.
    """
    return dict(zip(FEATURE_NAMES, engineered_batch([history], [t])[0].tolist(), strict=True))
