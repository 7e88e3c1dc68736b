"""Per-card features: the one code path shared by training and serving.

A card's history (:mod:`models.history`) holds its last transactions as
columns, oldest first, as kept in the worker's changelog-backed table. Every
time-based feature uses the event's own timestamp and only history entries at
or before it, never the wall clock, so replaying last year's data yields
exactly the features live traffic would have had.

The score agent computes a micro-batch at once (:func:`engineered_batch`: one
row per transaction, over the batch's histories gathered into arrays, a
compiled loop per history for what needs every entry and NumPy for the
rest: a fraction of the cost of the whole-array NumPy before it, and of a
Python function per transaction before that, docs/benchmark-history.md);
:func:`engineered` is the same code for one
transaction, as a dict. A row does
not depend on the rest of its batch (a test holds each row equal, bit for
bit, to the same transaction computed alone), so a replay gets the features
live traffic got whatever the batching.

Example:
    >>> from models.history import append, new_history
    >>> from stream.contracts.records import Transaction
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

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from models.compiled import compiled, frozen
from models.history import HASHED, History
from models.history_windows import Columns, check_windows, scored_windows
from stream.contracts.records import Transaction

__all__ = [
    "FEATURE_NAMES",
    "compile_engineered",
    "engineered",
    "engineered_batch",
]

_HOUR = 3_600_000
_DAY = 24 * _HOUR
_NO_GAP_S = 30 * 86_400.0  # "no previous transaction" reads as a month-long gap
_SMALL_AMOUNT = 5.0  # card testing probes with amounts below this (zero-amount checks included)
_CENT = 0.01  # the smallest amount a ratio of amounts sees

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

    ``windows``: :func:`~models.history_windows.scored_windows` of the same histories
    and transactions (every entry), when the caller has gathered them already
    (the score agent shares them with the sequence model); gathered here
    otherwise. :func:`~models.history_windows.check_windows` refuses windows whose
    entry counts or transaction times differ.

    What needs every entry of a history (counts in time windows, novelty, the
    most common country, sums and the largest amount) is one compiled loop per
    history (:func:`_history_summary`, :mod:`models.compiled`); the rest is
    NumPy over the batch. The loop adds in the order the earlier whole-array
    code added (oldest entry first) and takes its logarithms from NumPy (see
    :func:`models.steps.window_features`), so the values are those of that
    code, bit for bit (a test holds them to it).
    """
    b = len(transactions)
    if windows is None:
        windows = scored_windows(histories, transactions)  # refuses histories and transactions of different counts
    else:
        check_windows(windows, histories, transactions)
    width = windows.ts.shape[1] - 1  # the history columns; the last is the transaction's
    n = windows.lengths
    now, amt = windows.ts[:, width], windows.amount[:, width]
    summary = np.empty((b, _SUMMARY_WIDTH))
    _history_summary(frozen(windows.ts, np.int64), frozen(windows.amount, np.float64),
                     frozen(np.log1p(windows.amount), np.float64),  # 0 where there is no entry
                     frozen(windows.hashes, np.uint32), frozen(windows.valid, np.bool_), _COUNTRY, summary)
    has = n > 0
    log_amount = np.log1p(amt)
    mean = summary[:, _S_MEAN]
    spread = np.sqrt(summary[:, _S_SQUARES] / np.maximum(n - 1, 1))
    hour = (now % _DAY) / _HOUR
    newest = windows.ts[:, width - 1] if width else now  # right-aligned: the newest entry where there is one
    columns: dict[str, npt.ArrayLike] = {
        "log_amount": log_amount,
        "amount_z": np.where(n >= 2, (log_amount - mean) / np.maximum(spread, 0.25), 0.0),
        # Amounts floored at a cent: zero-amount authorisations (card checks, card testing) are valid traffic.
        "amount_ratio_max": np.where(has, np.log(np.maximum(amt, _CENT) / np.maximum(np.where(has, summary[:, _S_LARGEST],
                                                                                                1.0), _CENT)), 0.0),
        "n_1h": summary[:, _S_N_1H],
        "n_24h": summary[:, _S_N_24H],
        "n_7d": summary[:, _S_N_7D],
        "log_sum_24h": np.log1p(summary[:, _S_SUM_24H]),
        "log_gap_prev": np.log1p(np.where(has, np.maximum(now - newest, 0) / 1000.0, _NO_GAP_S)),
        "n_small_1h": summary[:, _S_N_SMALL_1H],
        "is_new_merchant": summary[:, _S_NEW + _MERCHANT],
        "is_new_mcc": summary[:, _S_NEW + _MCC],
        "is_new_country": summary[:, _S_NEW + _COUNTRY],
        "is_new_channel": summary[:, _S_NEW + _CHANNEL],
        "is_foreign": summary[:, _S_FOREIGN],
        "log_history_len": np.log1p(n),
        "hour_sin": np.sin(2 * np.pi * hour / 24),
        "hour_cos": np.cos(2 * np.pi * hour / 24),
        "is_ecom": [t.channel == "ecom" for t in transactions],
    }
    out = np.empty((b, len(FEATURE_NAMES)))
    for i, name in enumerate(FEATURE_NAMES):
        out[:, i] = columns[name]
    return out


def compile_engineered() -> None:
    """Compile :func:`engineered_batch`'s loop now (or load it from the cache), not in the first micro-batch.

    >>> compile_engineered()
    """
    one = np.ones((1, 1))
    _history_summary(frozen(one, np.int64), frozen(one, np.float64), frozen(one, np.float64),
                     frozen(np.ones((1, 1, len(HASHED))), np.uint32), frozen(one, np.bool_), _COUNTRY,
                     np.empty((1, _SUMMARY_WIDTH)))


# Columns of _history_summary's output.
_S_N_1H, _S_N_24H, _S_N_7D, _S_N_SMALL_1H, _S_SUM_24H, _S_LARGEST, _S_MEAN, _S_SQUARES, _S_FOREIGN, _S_NEW = range(10)
_SUMMARY_WIDTH = _S_NEW + len(HASHED)  # one novelty flag per HASHED field


@compiled
def _history_summary(ts: Any, amount: Any, log_amount: Any, hashes: Any, valid: Any, country: int,
                     out: Any) -> None:  # pragma: no cover - compiled; NUMBA_DISABLE_JIT runs it as Python
    """Per row of scored windows (history columns, then the transaction's), what needs every history entry.

    Sums run oldest entry first, padding adding 0.0 as it did in the
    whole-array code (a cumulative sum over the row). ``country`` is the
    country's column in ``hashes``: an argument, not the global, because
    Numba's cache is keyed on this file only and :data:`HASHED` lives in
    :mod:`models.history`.
    """
    b, span = ts.shape
    width = span - 1
    for r in range(b):
        now, count = ts[r, width], 0
        n_1h = n_24h = n_7d = n_small_1h = home = 0
        sum_24h, largest, logs = 0.0, -np.inf, 0.0
        seen = np.zeros(hashes.shape[2], np.bool_)
        for k in range(width):
            if not valid[r, k]:
                continue
            count += 1
            t, a = ts[r, k], amount[r, k]
            if t >= now - _HOUR:
                n_1h += 1
                n_small_1h += a < _SMALL_AMOUNT
            if t >= now - _DAY:
                n_24h += 1
                sum_24h += a
            n_7d += t >= now - 7 * _DAY
            if a > largest or np.isnan(a):  # NaN sticks, as in np.max
                largest = a
            logs += log_amount[r, k]
            for f in range(hashes.shape[2]):
                seen[f] |= hashes[r, k, f] == hashes[r, width, f]
            home += hashes[r, k, country] == hashes[r, width, country]
        mean = logs / max(count, 1)
        squares = 0.0
        for k in range(width):
            if valid[r, k]:
                d = log_amount[r, k] - mean
                squares += d * d
        out[r, _S_N_1H], out[r, _S_N_24H], out[r, _S_N_7D] = n_1h, n_24h, n_7d
        out[r, _S_N_SMALL_1H], out[r, _S_SUM_24H], out[r, _S_LARGEST] = n_small_1h, sum_24h, largest
        out[r, _S_MEAN], out[r, _S_SQUARES] = mean, squares
        for f in range(hashes.shape[2]):
            out[r, _S_NEW + f] = 1.0 if count > 0 and not seen[f] else 0.0
        # Abroad: the country is new to the card, or not its most common one. A country used by
        # at least half the history is the most common, only the rest need every country counted.
        foreign = out[r, _S_NEW + country]
        if home > 0 and 2 * home <= count:
            best, best_count = 0, 0
            for k in range(width):  # the most common country; the earliest seen on a tie
                if not valid[r, k]:
                    continue
                c = 0
                for j in range(width):
                    c += valid[r, j] and hashes[r, j, country] == hashes[r, k, country]
                if c > best_count:
                    best, best_count = hashes[r, k, country], c
            foreign = 1.0 if best != hashes[r, width, country] else 0.0
        out[r, _S_FOREIGN] = foreign


def engineered(history: History, t: Transaction) -> dict[str, float]:
    """Engineered features of one transaction ``t`` given its card's prior ``history``, keyed by :data:`FEATURE_NAMES`.

    The same code as :func:`engineered_batch` (a row of it), for people and
    tests; the score agent computes whole batches.
    """
    return dict(zip(FEATURE_NAMES, engineered_batch([history], [t])[0].tolist(), strict=True))
