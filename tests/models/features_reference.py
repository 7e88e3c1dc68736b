"""The engineered features as whole-array NumPy: the oracle :func:`models.features.engineered_batch` is held to.

Earlier releases computed them this way (``[B, width, 4]`` comparisons, a
Python ``Counter`` for the most common country); the compiled loop that
replaced the per-entry part must give the same values bit for bit, so an
online learner trained on earlier features sees the same inputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from models.features import _CHANNEL, _COUNTRY, _DAY, _HOUR, _MCC, _MERCHANT, _NO_GAP_S, _SMALL_AMOUNT, FEATURE_NAMES
from models.history import History
from models.history_windows import scored_windows
from stream.contracts.records import Transaction


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


def reference_engineered_batch(histories: Sequence[History],
                               transactions: Sequence[Transaction]) -> npt.NDArray[np.float64]:
    """``engineered_batch(histories, transactions)`` as earlier releases computed it."""
    b = len(transactions)
    windows = scored_windows(histories, transactions)
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
        "amount_ratio_max": np.where(has, np.log(np.maximum(amt, 0.01) / np.maximum(np.where(has, largest, 1.0), 0.01)),
                                     0.0),
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


