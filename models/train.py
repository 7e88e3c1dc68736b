"""Offline training of the sequence model (``fraudstream train``).

Reads a labelled CSV or Parquet file, splits it by time (the last
``val_fraction`` of the time span validates; its windows still see the
earlier transactions, as the worker would), and trains on every fraud plus
``legit_per_epoch`` freshly drawn legitimate rows each epoch. Keeping a share
``q`` of legitimate rows multiplies the odds by ``1/q``, so the saved model
adds ``log(q)`` to its logit and its probabilities match the real base rate.
Early stopping keeps the epoch with the best validation average precision
(:func:`models.ranking.average_precision`, the definition evaluation reports).
Seeded and single-process, so the same data and config give the same model.

Example (the figure early stopping compares):
    >>> y = np.array([1, 0, 1, 0, 0])
    >>> round(_validation_ap(y, np.array([0.9, 0.8, 0.7, 0.2, 0.1])), 4)  # (1 + 2/3) / 2
    0.8333
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import torch
from torch.nn import functional
from tqdm import tqdm

from models.checkpoint import save_checkpoint
from models.dataset import StepDataset, file_sha256, normalise, read_table, table_sha256
from models.ranking import average_precision
from models.sequence import Architecture, SequenceModel
from models.steps import StepSpec

__all__ = ["TrainConfig", "TrainResult", "cli", "train"]


def _validation_ap(y: npt.ArrayLike, logits: npt.ArrayLike, weight: npt.ArrayLike | None = None) -> float:
    """:func:`~models.ranking.average_precision` of validation rows, which :func:`train` made sure hold frauds."""
    ap = average_precision(y, logits, weight)
    if ap is None:
        raise ValueError("average precision needs at least one positive")
    return ap


@dataclass(frozen=True)
class TrainConfig:
    """What to train on and how. Give ``data`` (a file) or ``table`` (already loaded)."""

    data: str | Path | None = None
    out: str | Path = "data/sequence-model"
    table: pa.Table | None = field(default=None, repr=False, compare=False)
    columns: Mapping[str, str] = field(default_factory=dict)  # contract name -> file column
    n_steps: int = 32  # window incl. the scored transaction; keep <= history_length + 1
    arch: Architecture = field(default_factory=Architecture)
    epochs: int = 5
    patience: int = 2  # epochs without a better validation AP before stopping
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 1e-4
    legit_per_epoch: int = 100_000
    val_legit: int | None = 50_000  # legit rows scored per epoch (weighted); None = all. The final AP uses all.
    val_fraction: float = 0.2
    seed: int = 0
    threads: int = 2
    progress: bool = True
    max_minutes: float | None = None  # skip epochs that would end past this (results then depend on speed)
    #: The terminal's features as the engine computes them (labels known ``label_delay_ms`` after their
    #: transaction); None: the model reads the card's sequence only.
    label_delay_ms: int | None = 7 * 86_400_000


@dataclass(frozen=True)
class TrainResult:
    """What a run produced."""

    path: Path
    version: str
    val_ap: float
    val_ap_by_epoch: list[float]
    best_epoch: int
    train_rows: int
    val_rows: int
    seconds: float


def _split(ds: StepDataset, val_fraction: float) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
    lo, hi = int(ds.ts.min()), int(ds.ts.max())
    cutoff = lo + int((hi - lo) * (1.0 - val_fraction))
    rows = np.arange(len(ds))
    return rows[ds.ts < cutoff], rows[ds.ts >= cutoff], cutoff


def _schedule(optimiser: torch.optim.Optimizer, lr: float, total_steps: int) -> Any:
    """One-cycle learning rate; a constant one for runs too short to warm up (OneCycleLR divides by zero there)."""
    if total_steps < 20:  # a 10 % warm-up of under 2 steps: one step would be both start and end of the phase
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=total_steps, pct_start=0.1)


def _normalisation(ds: StepDataset, rows: npt.NDArray[np.int64], rng: np.random.Generator) -> tuple[list[float], list[float]]:
    sample = rng.choice(rows, size=min(len(rows), 20_000), replace=False)
    numeric, _, mask = ds.arrays(np.sort(sample))
    valid = numeric[~mask].astype(np.float64)
    return valid.mean(0).tolist(), np.maximum(valid.std(0), 1e-3).tolist()


def _validation_sample(
    rows: npt.NDArray[np.int64], y: npt.NDArray[np.float32], n_legit: int | None, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64] | None]:
    """All fraud plus ``n_legit`` legit rows, legit weighted up to stand for all of them."""
    legit = rows[y[rows] == 0]
    if n_legit is None or n_legit >= len(legit):
        return rows, None
    picked = np.sort(np.concatenate([rows[y[rows] == 1], rng.choice(legit, size=n_legit, replace=False)]))
    return picked, np.where(y[picked] == 1, 1.0, len(legit) / n_legit)


def _logits(model: SequenceModel, ds: StepDataset, rows: npt.NDArray[np.int64], batch: int = 4096) -> np.ndarray:
    model.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(rows), batch):
            x = ds.tensors(rows[s:s + batch])
            out.append(model(x["numeric"], x["categorical"], x["mask"], x.get("entity")).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _epoch(
    model: SequenceModel,
    ds: StepDataset,
    rows: npt.NDArray[np.int64],
    y: npt.NDArray[np.float32],
    optimiser: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    batch_size: int,
    bar: tqdm,
) -> None:
    """One pass over ``rows`` (already shuffled) in mini-batches."""
    model.train()
    for s in range(0, len(rows), batch_size):
        chunk = rows[s:s + batch_size]
        x = ds.tensors(chunk)
        loss = functional.binary_cross_entropy_with_logits(
            model(x["numeric"], x["categorical"], x["mask"], x.get("entity")), torch.from_numpy(y[chunk]))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # rare huge-gradient batches of frauds
        optimiser.step()
        schedule.step()
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)


def train(config: TrainConfig) -> TrainResult:
    """Train, keep the best epoch by validation AP, save a checkpoint at ``config.out``."""
    began = time.perf_counter()
    if config.epochs < 1 or config.batch_size < 1 or not 0.0 < config.val_fraction < 1.0:
        raise ValueError("need epochs >= 1, batch_size >= 1 and 0 < val_fraction < 1")
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    if config.table is not None:
        table, data_hash = normalise(config.table, config.columns), table_sha256(config.table)
    elif config.data is not None:
        table, data_hash = read_table(config.data, config.columns), file_sha256(config.data)
    else:
        raise ValueError("TrainConfig needs data (a file path) or table")
    ds = StepDataset(table, StepSpec(n=config.n_steps))
    if ds.labels is None:
        raise ValueError("training data has no is_fraud column (map it with columns={'is_fraud': ...})")
    train_rows, val_rows, cutoff = _split(ds, config.val_fraction)
    y = ds.labels.astype(np.float32)
    fraud, legit = train_rows[y[train_rows] == 1], train_rows[y[train_rows] == 0]
    if len(fraud) == 0 or y[val_rows].sum() == 0:
        raise ValueError("both the training and the validation period need fraud rows")
    n_legit = min(config.legit_per_epoch, len(legit))
    mean, std = _normalisation(ds, train_rows, rng)
    entity: dict[str, Any] = {}
    if config.label_delay_ms is not None:
        ds.with_entity_features(config.label_delay_ms)
        assert ds.entity is not None
        seen = ds.entity[train_rows].astype(np.float64)
        entity = {"entity_names": ds.entity_names, "entity_mean": seen.mean(0).tolist(),
                  "entity_std": np.maximum(seen.std(0), 1e-3).tolist()}
    model = SequenceModel(ds.spec, config.arch, mean, std, **entity)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = math.ceil((len(fraud) + n_legit) / config.batch_size)
    schedule = _schedule(optimiser, config.lr, per_epoch * config.epochs)
    check_rows, check_weight = _validation_sample(val_rows, y, config.val_legit, rng)
    best_ap, best_epoch, best_state, history = -1.0, 0, None, []
    longest_epoch = 0.0
    for epoch in range(1, config.epochs + 1):
        epoch_began = time.perf_counter()
        budget = 60 * config.max_minutes if config.max_minutes is not None else math.inf
        if epoch > 1 and epoch_began - began + longest_epoch > budget:
            tqdm.write(f"stopping before epoch {epoch}: it would end past --max-minutes {config.max_minutes}")
            break
        rows = np.concatenate([fraud, rng.choice(legit, size=n_legit, replace=False)])
        bar = tqdm(desc=f"epoch {epoch}/{config.epochs}", total=per_epoch, unit="batch", disable=not config.progress)
        with bar:
            _epoch(model, ds, rows[rng.permutation(len(rows))], y, optimiser, schedule, config.batch_size, bar)
        ap = _validation_ap(y[check_rows], _logits(model, ds, check_rows), check_weight)
        history.append(ap)
        longest_epoch = max(longest_epoch, time.perf_counter() - epoch_began)
        if config.progress:
            tqdm.write(f"epoch {epoch}: validation AP {ap:.4f}" + (" (estimate)" if check_weight is not None else ""))
        if ap > best_ap:
            best_ap, best_epoch = ap, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state or model.state_dict())
    if len(check_rows) < len(val_rows):
        best_ap = _validation_ap(y[val_rows], _logits(model, ds, val_rows))
    # Undo the legit subsampling in the odds: logit_true = logit_sampled + log(q).
    model.logit_offset.fill_(math.log(n_legit / len(legit)))
    metadata: dict[str, Any] = {
        "training_data_hash": data_hash,
        "training": {
            "data": str(config.data) if config.data is not None else "<table>",
            "rows": len(ds), "train_rows": len(train_rows), "val_rows": len(val_rows), "val_cutoff_ms": cutoff,
            # What the engine's learner must not stack on (stream/core/training.py): logits of seen transactions.
            "trained_until_ms": int(ds.ts.max()),
            "train_frauds": len(fraud), "legit_per_epoch": n_legit, "epochs_run": len(history),
            "batch_size": config.batch_size, "lr": config.lr, "seed": config.seed, "columns": dict(config.columns),
        },
        "metrics": {"val_average_precision": best_ap, "best_epoch": best_epoch, "val_ap_by_epoch_estimate": history,
                    "val_frauds": int(y[val_rows].sum()), "val_base_rate": float(y[val_rows].mean())},
    }
    version = save_checkpoint(model, metadata, config.out)
    return TrainResult(Path(config.out), version, best_ap, history, best_epoch,
                       len(train_rows), len(val_rows), time.perf_counter() - began)


def _columns(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    if text.lstrip().startswith("{"):
        return {str(k): str(v) for k, v in json.loads(text).items()}
    pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"--columns {text!r}: expected contract=column pairs or a JSON object")
    return {k.strip(): v.strip() for k, v in pairs}


def cli(argv: list[str] | None = None) -> int:
    """``fraudstream train``: train the sequence model on a labelled file and save a checkpoint."""
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="fraudstream train", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--data", required=True, help="labelled transactions, .csv or .parquet")
    p.add_argument("--out", default=str(d.out), help="checkpoint directory (replaced atomically)")
    p.add_argument("--columns", help="column mapping: 'card_id=card,timestamp=ts' or a JSON object")
    p.add_argument("--steps", type=int, default=d.n_steps, help="window length incl. the scored transaction")
    p.add_argument("--layers", type=int, default=d.arch.n_layers,
                   help="encoder layers (1: the scored step is the only query; more cost ~40 us/tx each)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--legit-per-epoch", type=int, default=d.legit_per_epoch)
    p.add_argument("--val-legit", type=int, default=d.val_legit,
                   help="legit validation rows scored per epoch for early stopping (0 = all)")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--max-minutes", type=float, help="skip epochs that would end after this many minutes")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--label-delay-days", type=float, default=(d.label_delay_ms or 0) / 86_400_000,
                   help="days after its transaction a label arrives: the terminal features the model reads count "
                        "each label from then, as the engine does (default 7)")
    p.add_argument("--no-entity-features", action="store_true",
                   help="read the card's sequence only (no terminal features), as checkpoints before them did")
    args = p.parse_args(argv)
    try:
        config = TrainConfig(
            data=args.data, out=args.out, columns=_columns(args.columns), n_steps=args.steps,
            arch=replace(d.arch, n_layers=args.layers), epochs=args.epochs,
            patience=args.patience, batch_size=args.batch_size, lr=args.lr, legit_per_epoch=args.legit_per_epoch,
            val_legit=args.val_legit or None, val_fraction=args.val_fraction, seed=args.seed, threads=args.threads, progress=not args.no_progress,
            max_minutes=args.max_minutes,
            label_delay_ms=None if args.no_entity_features else int(args.label_delay_days * 86_400_000),
        )
        result = train(config)
    except (OSError, ValueError, pa.ArrowException) as exc:
        print(f"fraudstream train: {exc}", file=sys.stderr)
        return 1
    print(f"saved {result.version} to {result.path}: validation AP {result.val_ap:.4f} "
          f"(epoch {result.best_epoch}), {result.train_rows:,} train / {result.val_rows:,} validation rows, "
          f"{result.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
