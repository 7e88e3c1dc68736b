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
    >>> from stream.contracts.records import Transaction
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

from models.compiled import compiled, frozen
from models.history_windows import Columns, check_windows, scored_windows
from models.scoring import ScoringItem

__all__ = [
    "STEP_CATEGORICAL",
    "STEP_NUMERIC",
    "StepSpec",
    "as_tensors",
    "compile_step_features",
    "entity_tensor",
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


def window_features(
    ts: npt.NDArray[np.int64],
    amount: npt.NDArray[np.float64],
    hashes: npt.NDArray[np.uint32],
    mask: npt.NDArray[np.bool_],
    spec: StepSpec,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Step features from raw ``[B, n]`` columns; the one code path for training and serving.

    ``hashes`` is ``[B, n, 4]`` stable hashes (uint32, as the history keeps
    them) in :data:`STEP_CATEGORICAL` order; padded steps (``mask`` True) may
    hold anything, they come out as zeros. The last step of every row must be
    valid. Returns ``numeric`` float32 ``[B, n, F]`` and ``categorical`` int64
    ``[B, n, C]``.

    The work is one compiled loop over each window (:func:`_step_kernel`,
    Numba, :mod:`models.compiled`): the repeat and velocity features compare every step with every
    earlier one, which as whole-array NumPy meant ``[B, n, n]`` temporaries
    (several times the compiled loop's cost: docs/benchmark-history.md). The loop does
    the additions, divisions and comparisons of the NumPy code it replaced,
    in the same order; the logarithms stay NumPy's, before and after it
    (NumPy's ``log1p`` is its own, not the C library's that compiled code
    calls, and differs from it in the last bit of one value in twenty here).
    So the output is that code's, bit for bit (a test holds it to it), and
    checkpoints trained before it score as they did.

    >>> ts = np.array([[0, 1_740_830_400_000, 1_740_830_460_000]])
    >>> numeric, categorical = window_features(ts, np.array([[0.0, 20.0, 900.0]]),
    ...     np.array([[[0, 0, 0, 0], [7, 7, 7, 7], [8, 7, 9, 7]]], dtype=np.uint32),
    ...     np.array([[True, False, False]]), StepSpec(n=3))
    >>> [round(float(numeric[0, 2, STEP_NUMERIC.index(f)]), 3) for f in ("log_gap_prev", "is_new_merchant")]
    [4.111, 1.0]
    >>> categorical[0].tolist()
    [[0, 0, 0, 0], [8, 8, 8, 8], [9, 8, 10, 8]]
    """
    # The one argument type the loop is compiled for (models/compiled.py).
    ts, amount, hashes, mask = frozen(ts, np.int64), frozen(amount, np.float64), frozen(hashes, np.uint32), frozen(
        mask, np.bool_)
    b, n = ts.shape
    if amount.shape != (b, n) or mask.shape != (b, n) or hashes.shape != (b, n, len(STEP_CATEGORICAL)):
        raise ValueError(f"window columns of shapes ts {ts.shape}, amount {amount.shape}, hashes {hashes.shape}, "
                         f"mask {mask.shape}; expected [B, n] and [B, n, {len(STEP_CATEGORICAL)}]")
    if b and mask[:, -1].any():
        raise ValueError("the last step of every window is the scored transaction and must be valid")
    numeric = np.empty((b, n, len(STEP_NUMERIC)), dtype=np.float32)
    categorical = np.empty((b, n, len(STEP_CATEGORICAL)), dtype=np.int64)
    gaps = np.empty((b, n, 2))  # seconds: since the step before, and to the scored step
    # Padded steps take the scored step's amount, as they always did: nothing is read from them.
    log_amount = frozen(np.log1p(np.where(mask, amount[:, -1:], amount)), np.float64)
    log_counts = frozen(np.log1p(np.arange(n + 1, dtype=np.float64)), np.float64)  # every count of earlier steps
    moduli = frozen([size - 1 for size in spec.buckets], np.uint32)  # a bucket count may be 2**32, its modulus not
    _step_kernel(ts, log_amount, hashes, mask, moduli, log_counts, _CYCLE_TABLES, numeric, categorical, gaps)
    logs = np.log1p(gaps)  # 0 for padded steps
    numeric[..., _GAP_PREV], numeric[..., _GAP_SCORED] = logs[..., 0], logs[..., 1]
    return numeric, categorical


# Rows: hour_sin and hour_cos per minute of the day (1,440), then weekday_sin and weekday_cos (7, padded).
_CYCLE_TABLES = np.zeros((4, 1440))
for _row, _name in enumerate(("hour_sin", "hour_cos", "weekday_sin", "weekday_cos")):
    _CYCLE_TABLES[_row, :len(_CYCLES[_name])] = _CYCLES[_name]
_CYCLE_TABLES = frozen(_CYCLE_TABLES, np.float64)
# Output columns (STEP_NUMERIC order) and hash columns (STEP_CATEGORICAL order): globals the compiler folds in.
(_LOG_AMOUNT, _VS_MEAN, _VS_MAX, _GAP_PREV, _GAP_SCORED, _HOUR_SIN, _HOUR_COS, _WEEKDAY_SIN, _WEEKDAY_COS,
 _NEW_MERCHANT, _NEW_COUNTRY, _NEW_CHANNEL, _COUNTRY_SHARE, _CHANNEL_SHARE, _N_1H, _N_24H) = (
    STEP_NUMERIC.index(f) for f in (
        "log_amount", "amount_vs_mean", "amount_vs_max", "log_gap_prev", "log_gap_to_scored", "hour_sin", "hour_cos",
        "weekday_sin", "weekday_cos", "is_new_merchant", "is_new_country", "is_new_channel", "country_share",
        "channel_share", "log_n_1h", "log_n_24h"))
_MERCHANT, _COUNTRY, _CHANNEL = (STEP_CATEGORICAL.index(f) for f in ("merchant", "country", "channel"))


def compile_step_features() -> None:
    """Compile :func:`window_features`' loop now (or load it from the cache) rather than in the first call.

    A worker calls it while loading its sequence model, so the first
    micro-batch does not wait the 0.5-2 s it takes.

    >>> compile_step_features()
    """
    window_features(np.zeros((1, 1), np.int64), np.ones((1, 1)), np.zeros((1, 1, len(STEP_CATEGORICAL)), np.uint32),
                    np.zeros((1, 1), np.bool_), StepSpec(n=1))


@compiled
def _step_kernel(ts: Any, log_amount: Any, hashes: Any, mask: Any, moduli: Any, log_counts: Any, cycles: Any,
                 numeric: Any, categorical: Any, gaps: Any) -> None:  # pragma: no cover - compiled
    """Fill ``numeric`` (but for the two gap columns), ``categorical`` and ``gaps`` (seconds) for every window.

    See :func:`window_features`. Each value as the NumPy version computed it,
    operation for operation: the log amounts' running sum has the step's own
    term added and subtracted again (a padded step adds its log amount times
    0.0, so a NaN or infinite scored amount, which padded steps borrow, makes
    the later means NaN as it always did), the gaps are integer differences
    divided by 1000.0, the counts are exact integers looked up in
    ``log_counts``. Constants are this module's own (Numba's cache is keyed
    on this file only).
    """
    b, n = ts.shape
    t = np.empty(n, np.int64)
    for r in range(b):
        for j in range(n):
            # Padded steps borrow the scored step's time, as the NumPy version did; none is ever read below.
            t[j] = ts[r, n - 1] if mask[r, j] else ts[r, j]
        seen = 0.0  # valid steps so far
        running_sum = 0.0
        running_max = -np.inf
        for j in range(n):
            out = numeric[r, j]
            if mask[r, j]:
                out[:] = 0.0
                categorical[r, j, :] = 0
                gaps[r, j, 0] = gaps[r, j, 1] = 0.0
                running_sum += log_amount[r, j] * 0.0  # the NumPy version's weight 0, NaN * 0 included
                continue
            x = log_amount[r, j]
            earlier = seen
            seen += 1.0
            running_sum += x
            earlier_sum = running_sum - x
            out[_LOG_AMOUNT] = x
            # Against the mean and the max of the earlier valid steps, explicitly: a small
            # transformer learns "8x this card's usual" slowly.
            out[_VS_MEAN] = x - earlier_sum / max(earlier, 1.0) if earlier > 0 else 0.0
            out[_VS_MAX] = x - running_max if earlier > 0 else 0.0
            if x > running_max or np.isnan(x):  # NaN sticks, as in np.maximum.accumulate
                running_max = x
            if j == 0 or mask[r, j - 1]:  # no earlier step inside the window
                gaps[r, j, 0] = _NO_GAP_S
            else:
                gaps[r, j, 0] = np.float64(max(t[j] - t[j - 1], 0)) / 1000.0
            gaps[r, j, 1] = np.float64(max(t[n - 1] - t[j], 0)) / 1000.0
            minute = (t[j] % _DAY_MS) // _MINUTE_MS
            weekday = (t[j] // _DAY_MS + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
            out[_HOUR_SIN] = cycles[0, minute]
            out[_HOUR_COS] = cycles[1, minute]
            out[_WEEKDAY_SIN] = cycles[2, weekday]
            out[_WEEKDAY_COS] = cycles[3, weekday]
            # Repeats and velocity: every earlier valid step of the window against this one.
            merchant, country, channel = hashes[r, j, _MERCHANT], hashes[r, j, _COUNTRY], hashes[r, j, _CHANNEL]
            same_merchant = same_country = same_channel = within_1h = within_24h = 0
            for k in range(j):
                if mask[r, k]:
                    continue
                same_merchant += hashes[r, k, _MERCHANT] == merchant
                same_country += hashes[r, k, _COUNTRY] == country
                same_channel += hashes[r, k, _CHANNEL] == channel
                age = t[j] - t[k]  # negative for an out-of-order window's later step: counted, as before
                within_1h += age <= _HOUR_MS
                within_24h += age <= 24 * _HOUR_MS
            has = earlier > 0
            out[_NEW_MERCHANT] = 1.0 if has and same_merchant == 0 else 0.0
            out[_NEW_COUNTRY] = 1.0 if has and same_country == 0 else 0.0
            out[_NEW_CHANNEL] = 1.0 if has and same_channel == 0 else 0.0
            out[_COUNTRY_SHARE] = np.float64(same_country) / max(earlier, 1.0) if has else 0.0
            out[_CHANNEL_SHARE] = np.float64(same_channel) / max(earlier, 1.0) if has else 0.0
            out[_N_1H] = log_counts[within_1h]
            out[_N_24H] = log_counts[within_24h]
            for c in range(moduli.shape[0]):  # 1..K-1; 0 is reserved for padding
                categorical[r, j, c] = np.int64(hashes[r, j, c] % moduli[c]) + 1


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


def entity_tensor(items: Sequence[ScoringItem], names: Sequence[str]) -> torch.Tensor:
    """Serving path: the items' entity features ``names`` (of :data:`~models.profile_features.ENTITY_INPUTS`),
    float32 ``[B, len(names)]``; an item without entity features gets those of an entity never seen.

    >>> from models.profile_features import ENTITY_INPUTS
    >>> item = ScoringItem(None, None, None, entity=np.arange(len(ENTITY_INPUTS), dtype=np.float64))  # type: ignore[arg-type]
    >>> entity_tensor([item], ENTITY_INPUTS[1:3]).tolist()
    [[1.0, 2.0]]
    """
    from models.profile_features import ENTITY_INPUTS, blank_entity_features

    index = [ENTITY_INPUTS.index(name) for name in names]
    blank = blank_entity_features(names)
    rows = [blank if item.entity is None else item.entity[index] for item in items]
    return torch.from_numpy(np.asarray(rows, dtype=np.float32).reshape(len(items), len(index)))


def _windows(items: Sequence[ScoringItem], width: int) -> Columns:
    """The items' last ``width`` history entries and their transaction, as :class:`~models.history_windows.Columns`.

    Taken from the batch's :func:`~models.history_windows.scored_windows` when every
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

