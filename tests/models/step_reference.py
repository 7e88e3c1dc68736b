"""The step features as whole-array NumPy: the oracle :func:`models.steps.window_features` is held to.

Earlier releases computed the step features this way (``[B, n, n]``
comparisons for the repeat and velocity counts); the compiled loop that
replaced it must give the same values bit for bit, so checkpoints trained
before it score exactly as they did.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# The constants and the cycles' lookup tables are definitions, shared; the arithmetic is this module's own.
from models.steps import _CYCLES, _DAY_MS, _HOUR_MS, _MINUTE_MS, _NO_GAP_S, STEP_CATEGORICAL, STEP_NUMERIC, StepSpec

_REPEATS = {"merchant": ("is_new_merchant", None), "country": ("is_new_country", "country_share"),
            "channel": ("is_new_channel", "channel_share")}


def _count(flags: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    return np.count_nonzero(flags, axis=-1).astype(np.float64)


def reference_window_features(
    ts: npt.NDArray[np.int64], amount: npt.NDArray[np.float64], hashes: npt.NDArray[np.uint32],
    mask: npt.NDArray[np.bool_], spec: StepSpec,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """``(numeric, categorical)`` as :func:`models.steps.window_features` returns them."""
    valid = ~mask
    n_steps = ts.shape[1]
    ts = np.where(valid, ts, ts[:, -1:])
    amount = np.where(valid, amount, amount[:, -1:])
    log_amount = np.log1p(amount)
    cols: dict[str, npt.NDArray[np.float64]] = {"log_amount": log_amount}
    # Against the earlier valid steps: the running sum minus the step itself, as earlier releases rounded it.
    w = valid.astype(np.float64)
    earlier_n = np.cumsum(w, axis=1) - w
    earlier_sum = np.cumsum(log_amount * w, axis=1) - log_amount * w
    has = earlier_n > 0
    cols["amount_vs_mean"] = np.where(has, log_amount - earlier_sum / np.maximum(earlier_n, 1.0), 0.0)
    running = np.maximum.accumulate(np.where(valid, log_amount, -np.inf), axis=1)
    earlier_max = np.full_like(log_amount, -np.inf)
    earlier_max[:, 1:] = running[:, :-1]
    cols["amount_vs_max"] = np.where(has, log_amount - np.where(has, earlier_max, 0.0), 0.0)
    gap_s = np.full(ts.shape, _NO_GAP_S)
    gap_s[:, 1:] = np.maximum(ts[:, 1:] - ts[:, :-1], 0).astype(np.float64) / 1000.0
    first = valid.copy()
    first[:, 1:] &= mask[:, :-1]
    cols["log_gap_prev"] = np.log1p(np.where(first, _NO_GAP_S, gap_s))
    cols["log_gap_to_scored"] = np.log1p(np.maximum(ts[:, -1:] - ts, 0).astype(np.float64) / 1000.0)
    minute = (ts % _DAY_MS) // _MINUTE_MS
    weekday = (ts // _DAY_MS + 3) % 7
    for name in ("hour_sin", "hour_cos"):
        cols[name] = _CYCLES[name][minute]
    for name in ("weekday_sin", "weekday_cos"):
        cols[name] = _CYCLES[name][weekday]
    earlier = np.tril(np.ones((n_steps, n_steps), dtype=bool), k=-1)[None] & valid[:, None, :]
    count = _count(earlier)
    for field, (new_name, share_name) in _REPEATS.items():
        h = hashes[:, :, STEP_CATEGORICAL.index(field)]
        same = _count((h[:, :, None] == h[:, None, :]) & earlier)
        cols[new_name] = ((count > 0) & (same == 0)).astype(np.float64)
        if share_name is not None:
            cols[share_name] = np.where(count > 0, same / np.maximum(count, 1), 0.0)
    age = ts[:, :, None] - ts[:, None, :]
    cols["log_n_1h"] = np.log1p(_count(earlier & (age <= _HOUR_MS)))
    cols["log_n_24h"] = np.log1p(_count(earlier & (age <= 24 * _HOUR_MS)))
    numeric = np.empty((*ts.shape, len(STEP_NUMERIC)), dtype=np.float32)
    for i, name in enumerate(STEP_NUMERIC):
        numeric[..., i] = cols[name]
    numeric[mask] = 0.0
    categorical = np.empty(hashes.shape, dtype=np.int64)
    for k, size in enumerate(spec.buckets):
        categorical[..., k] = hashes[..., k].astype(np.int64) % (size - 1)
    categorical += 1
    categorical[mask] = 0
    return numeric, categorical
