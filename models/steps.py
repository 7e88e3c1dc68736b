"""Per-step inputs of the sequence model: a card's last ``n`` transactions.

The window is the card's prior history (as :func:`models.history.prior_history`
cut it) followed by the transaction being scored, which is always the last
step. Shorter windows are left-padded; ``mask`` is True on padded steps (the
``src_key_padding_mask`` convention of :mod:`torch.nn`).

Every step has the numeric features :data:`STEP_NUMERIC` and the categorical
buckets :data:`STEP_CATEGORICAL` (bucket 0 is padding). Features that compare
a step with earlier ones (novelty, shares, counts, amount vs. mean/max) look
only at earlier steps inside the window. Both the serving path
(:func:`step_tensors`) and the training path (:mod:`models.dataset`) gather
raw columns into ``[B, n]`` arrays and call the same :func:`window_features`,
so the two cannot drift apart (a test checks they are bit-identical).

Example:
    >>> from models.features import engineered_batch
    >>> from models.history import append, new_history
    >>> from models.scoring import ScoringItem
    >>> from stream.records import Transaction
    >>> t1 = Transaction("t1", "c1", 1_740_830_400_000, 20.0, "EUR", "m1", "5411", "FR", "pos")
    >>> t2 = Transaction("t2", "c1", 1_740_830_460_000, 900.0, "EUR", "m2", "5732", "BR", "ecom")
    >>> prior = append(new_history(), t1, limit=32)
    >>> item = ScoringItem(t2, prior, engineered_batch([prior], [t2])[0])
    >>> x = step_tensors([item], n=4)
    >>> x["numeric"].shape, x["categorical"].shape, x["mask"].tolist()
    (torch.Size([1, 4, 16]), torch.Size([1, 4, 4]), [[True, True, False, False]])
    >>> gap = STEP_NUMERIC.index("log_gap_prev")
    >>> round(float(x["numeric"][0, 3, gap].expm1()), 1)  # seconds since t1
    60.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch

from models.history import Columns, check_windows, scored_windows
from models.scoring import ScoringItem

__all__ = [
    "STEP_CATEGORICAL",
    "STEP_NUMERIC",
    "StepSpec",
    "as_tensors",
    "step_tensors",
    "window_features",
]

#: Numeric features of every step, in tensor order.
STEP_NUMERIC: tuple[str, ...] = (
    "log_amount",
    "amount_vs_mean",
    "amount_vs_max",
    "log_gap_prev",
    "log_gap_to_scored",
    "hour_sin",
    "hour_cos",
    "weekday_sin",
    "weekday_cos",
    "is_new_merchant",
    "is_new_country",
    "is_new_channel",
    "country_share",
    "channel_share",
    "log_n_1h",
    "log_n_24h",
)
#: Categorical fields of every step, in tensor order (hashed into buckets).
STEP_CATEGORICAL: tuple[str, ...] = ("merchant", "mcc", "country", "channel")

_MINUTE_MS = 60_000
_DAY_MS = 86_400_000
# Same "no previous transaction" gap as models.features: a month.
_NO_GAP_S = 30 * 86_400.0
# Cycles come from lookup tables (per minute of day, per weekday) rather than
# np.sin on each call, so both paths get bit-identical values by indexing.
_MINUTE_ANGLE = 2 * np.pi * np.arange(1440) / 1440
_DAY_ANGLE = 2 * np.pi * np.arange(7) / 7
_CYCLES = {
    "hour_sin": np.sin(_MINUTE_ANGLE), "hour_cos": np.cos(_MINUTE_ANGLE),
    "weekday_sin": np.sin(_DAY_ANGLE), "weekday_cos": np.cos(_DAY_ANGLE),
}
# Per categorical field: its novelty flag and, where useful, its share feature.
_REPEATS = {"merchant": ("is_new_merchant", None), "country": ("is_new_country", "country_share"),
            "channel": ("is_new_channel", "channel_share")}
_HOUR_MS = 3_600_000


@dataclass(frozen=True)
class StepSpec:
    """Window length and bucket counts (each count includes padding bucket 0).

    >>> StepSpec(n=16).buckets
    (2048, 512, 256, 16)
    """

    n: int = 32
    merchant_buckets: int = 2048
    mcc_buckets: int = 512
    country_buckets: int = 256
    channel_buckets: int = 16

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if min(self.buckets) < 2 or max(self.buckets) > 2**32:  # the hashes are 32-bit
            raise ValueError(f"bucket counts must be in [2, 2**32], got {self.buckets}")

    @property
    def buckets(self) -> tuple[int, int, int, int]:
        """Bucket counts in :data:`STEP_CATEGORICAL` order."""
        return (self.merchant_buckets, self.mcc_buckets, self.country_buckets, self.channel_buckets)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the feature names for checking at load time."""
        return {**asdict(self), "numeric": list(STEP_NUMERIC), "categorical": list(STEP_CATEGORICAL)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepSpec:
        """Inverse of :meth:`to_dict`; refuses a different feature layout."""
        if tuple(d.get("numeric", STEP_NUMERIC)) != STEP_NUMERIC or tuple(
            d.get("categorical", STEP_CATEGORICAL)
        ) != STEP_CATEGORICAL:
            raise ValueError("feature layout in the checkpoint differs from models.steps")
        return cls(**{k: int(d[k]) for k in ("n", "merchant_buckets", "mcc_buckets", "country_buckets", "channel_buckets")})


def _earlier(valid: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """``[B, step, other]``: True where ``other`` is a valid step before ``step``."""
    n = valid.shape[1]
    return np.tril(np.ones((n, n), dtype=bool), k=-1)[None] & valid[:, None, :]


def _count(flags: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """True entries along the last axis, as float64: ``np.count_nonzero(flags, axis=-1)``, exactly.

    Through a float32 matrix-vector product (BLAS): about 4x faster than
    ``count_nonzero`` on ``[B, 32, 32]``, and exact since the counts are small
    integers. A test holds :func:`window_features` equal to the
    ``count_nonzero`` version bit for bit.

    >>> _count(np.array([[True, False, True], [False, False, False]])).tolist()
    [2.0, 0.0]
    """
    return (flags.astype(np.float32) @ np.ones(flags.shape[-1], dtype=np.float32)).astype(np.float64)


def _matches(h: npt.NDArray[np.uint32], earlier: npt.NDArray[np.bool_], count: npt.NDArray[np.float64]) -> tuple[
        npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per step: is the value new among earlier steps (0 if none), and the share of earlier steps sharing it.

    ``count`` is :func:`_count` of ``earlier`` (the same for every field).
    """
    same = _count((h[:, :, None] == h[:, None, :]) & earlier)
    new = (count > 0) & (same == 0)
    return new.astype(np.float64), np.where(count > 0, same / np.maximum(count, 1), 0.0)


def _relative(
    log_amount: npt.NDArray[np.float64], valid: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Log amount minus the mean and the max of the earlier valid steps (0 if none).

    Explicit because a small transformer learns "8x this card's usual" slowly.
    """
    w = valid.astype(np.float64)
    earlier_n = np.cumsum(w, axis=1) - w
    earlier_sum = np.cumsum(log_amount * w, axis=1) - log_amount * w
    has = earlier_n > 0
    vs_mean = np.where(has, log_amount - earlier_sum / np.maximum(earlier_n, 1.0), 0.0)
    running = np.maximum.accumulate(np.where(valid, log_amount, -np.inf), axis=1)
    earlier_max = np.full_like(log_amount, -np.inf)
    earlier_max[:, 1:] = running[:, :-1]
    vs_max = np.where(has, log_amount - np.where(has, earlier_max, 0.0), 0.0)
    return vs_mean, vs_max


def window_features(
    ts: npt.NDArray[np.int64],
    amount: npt.NDArray[np.float64],
    hashes: npt.NDArray[np.uint32],
    mask: npt.NDArray[np.bool_],
    spec: StepSpec,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Step features from raw ``[B, n]`` columns; the one code path for training and serving.

    ``hashes`` is ``[B, n, 4]`` stable hashes (uint32, as the history keeps
    them) in :data:`STEP_CATEGORICAL` order; padded steps (``mask`` True) may hold anything, they come out as
    zeros. The last step of every row must be valid.
    """
    valid = ~mask
    # Padded steps borrow the scored step's values so nothing below overflows.
    ts = np.where(valid, ts, ts[:, -1:])
    amount = np.where(valid, amount, amount[:, -1:])
    log_amount = np.log1p(amount)
    cols: dict[str, npt.NDArray[np.float64]] = {"log_amount": log_amount}
    cols["amount_vs_mean"], cols["amount_vs_max"] = _relative(log_amount, valid)
    gap_s = np.full(ts.shape, _NO_GAP_S)
    gap_s[:, 1:] = np.maximum(ts[:, 1:] - ts[:, :-1], 0).astype(np.float64) / 1000.0
    first = valid.copy()
    first[:, 1:] &= mask[:, :-1]  # first valid step: its predecessor is outside the window
    cols["log_gap_prev"] = np.log1p(np.where(first, _NO_GAP_S, gap_s))
    cols["log_gap_to_scored"] = np.log1p(np.maximum(ts[:, -1:] - ts, 0).astype(np.float64) / 1000.0)
    minute = (ts % _DAY_MS) // _MINUTE_MS
    weekday = (ts // _DAY_MS + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    for name in ("hour_sin", "hour_cos"):
        cols[name] = _CYCLES[name][minute]
    for name in ("weekday_sin", "weekday_cos"):
        cols[name] = _CYCLES[name][weekday]
    earlier = _earlier(valid)
    n_earlier: npt.NDArray[np.float64] = (np.cumsum(valid, axis=1) - valid).astype(np.float64)  # = _count(earlier), without the matrix
    for field, (new_name, share_name) in _REPEATS.items():
        cols[new_name], share = _matches(hashes[:, :, STEP_CATEGORICAL.index(field)], earlier, n_earlier)
        if share_name is not None:
            cols[share_name] = share
    # Velocity: earlier steps within an hour / a day of each step (the window only).
    cols["log_n_1h"], cols["log_n_24h"] = (np.log1p(n) for n in _within(ts, valid, earlier, (_HOUR_MS, 24 * _HOUR_MS)))
    numeric = np.empty((*ts.shape, len(STEP_NUMERIC)), dtype=np.float32)
    for i, name in enumerate(STEP_NUMERIC):
        numeric[..., i] = cols[name]
    numeric[mask] = 0.0
    categorical = np.empty(hashes.shape, dtype=np.int64)
    for k, size in enumerate(spec.buckets):  # per column: uint32 by a scalar is ~1/3 cheaper than by an int64 vector
        np.remainder(hashes[..., k], np.uint32(size - 1), out=categorical[..., k], casting="unsafe")
    categorical += 1  # 1..K-1; 0 is reserved for padding
    categorical[mask] = 0
    return numeric, categorical


def _within(ts: npt.NDArray[np.int64], valid: npt.NDArray[np.bool_], earlier: npt.NDArray[np.bool_],
            spans_ms: tuple[int, ...]) -> list[npt.NDArray[np.float64]]:
    """Per step, how many earlier valid steps are at most ``span`` ms before it, for each span.

    ``ts`` has padded steps filled in (any value). Windows are in event-time
    order (histories are kept so, and the scored transaction comes after its
    prior history): then the steps within a span of step ``j`` are a run ending
    at ``j``, found by one ``searchsorted`` over all rows, each row's times
    shifted past the previous row's. The ``[B, n, n]`` comparison (3x the
    time) remains for a batch with any window out of order (same counts).

    >>> ts = np.array([[0, 5, 6, 20]]); valid = np.array([[False, True, True, True]])
    >>> [c.tolist() for c in _within(ts, valid, _earlier(valid), (1, 15))]
    [[[0.0, 0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0, 2.0]]]
    """
    b, n = ts.shape
    first = np.argmax(valid, axis=1)  # every window's last step is valid
    filled = np.where(valid, ts, ts[np.arange(b), first][:, None])  # padding takes the first valid time
    low, high = (int(filled.min()), int(filled.max())) if b else (0, 0)
    width = high - low + max(spans_ms, default=0) + 1
    if b == 0 or np.any(filled[:, 1:] < filled[:, :-1]) or b * width >= 2**62:
        age = ts[:, :, None] - ts[:, None, :]
        return [_count(earlier & (age <= span)) for span in spans_ms]
    keys = (filled - low) + (np.arange(b, dtype=np.int64) * width)[:, None]
    flat = keys.ravel()
    row_start = (np.arange(b, dtype=np.int64) * n)[:, None]
    step = np.arange(n, dtype=np.int64)[None, :]
    out = []
    for span in spans_ms:
        # First step (in its row) at most span before step j; padded steps and steps after j do not count.
        start = np.searchsorted(flat, (keys - span).ravel(), side="left").reshape(b, n) - row_start
        out.append(np.where(valid, step - np.maximum(start, first[:, None]), 0).astype(np.float64))
    return out


def step_tensors(items: Sequence[ScoringItem], n: int, spec: StepSpec | None = None) -> dict[str, torch.Tensor]:
    """Serving path: ``numeric`` float32 ``[B,n,F]``, ``categorical`` int64 ``[B,n,C]``, ``mask`` bool ``[B,n]``.

    Each item's window is its last ``n - 1`` history entries plus its own
    transaction (hashed as :func:`~models.history.advance` stores it).
    ``spec`` defaults to ``StepSpec(n=n)``.
    """
    spec = spec or StepSpec(n=n)
    if spec.n != n:
        raise ValueError(f"spec.n={spec.n} but n={n}")
    cols = _windows(items, n - 1)
    mask = ~cols.valid
    numeric, categorical = window_features(cols.ts, cols.amount, cols.hashes, mask, spec)
    return as_tensors(numeric, categorical, mask)


def _windows(items: Sequence[ScoringItem], width: int) -> Columns:
    """The items' last ``width`` history entries and their transaction, as :class:`~models.history.Columns`.

    Taken from the batch's :func:`~models.history.scored_windows` when every
    item points into the same one (the score agent's batches), else gathered
    here. The same arrays either way: a history right-aligned in wider columns
    has its last ``width`` entries in the last ``width`` of them, and narrower
    columns only lack padding on the left.
    """
    shared = items[0].windows if items else None
    if shared is None or not all(item.windows is shared for item in items):
        return scored_windows([item.history for item in items], [item.transaction for item in items], width)
    rows = [item.row for item in items]
    if None in rows:
        raise ValueError("an item points at shared windows without its row")
    rows_ = cast(list[int], rows)
    check_windows(shared, [item.history for item in items], [item.transaction for item in items], rows_)
    pick: slice | npt.NDArray[np.int64] = (
        slice(None) if rows_ == list(range(shared.ts.shape[0])) else np.asarray(rows_, dtype=np.int64))
    have = shared.ts.shape[1] - 1  # history columns in the shared windows
    if have >= width:
        start = have - width
        return Columns(shared.ts[pick, start:], shared.amount[pick, start:], shared.hashes[pick, start:],
                       shared.valid[pick, start:], np.minimum(shared.lengths[pick], width))
    # Every history of the batch shorter than the window (young cards; or history_length < n - 1): pad on the left.
    b, span = len(items), width + 1
    out = Columns(np.zeros((b, span), np.int64), np.zeros((b, span), np.float64),
                  np.zeros((b, span, shared.hashes.shape[2]), np.uint32), np.zeros((b, span), bool),
                  shared.lengths[pick].copy())
    tail = slice(span - have - 1, None)
    out.ts[:, tail], out.amount[:, tail] = shared.ts[pick], shared.amount[pick]
    out.hashes[:, tail], out.valid[:, tail] = shared.hashes[pick], shared.valid[pick]
    return out


def as_tensors(
    numeric: npt.NDArray[np.float32], categorical: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_]
) -> dict[str, torch.Tensor]:
    """The model's input dict from numpy arrays (shares memory where it can)."""
    return {
        "numeric": torch.from_numpy(np.ascontiguousarray(numeric, dtype=np.float32)),
        "categorical": torch.from_numpy(np.ascontiguousarray(categorical, dtype=np.int64)),
        "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)),
    }

