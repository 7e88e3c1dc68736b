"""The model comparison on generated data: the engine's scores against offline baselines, per fraud scenario.

``fraudstream experiment`` generates a labelled history (60 days by default,
every fraud scenario, breached terminals making most of the fraud), splits it
by time (the last ``test_days`` are the test period) and labels arrive
``label_delay_days`` after their transaction, as chargebacks do. Everything
trained offline uses only the labels known at the split: the training rows
are those whose ``labelled_at`` is at or before it.

1. Offline baselines, trained once: the card's engineered features plus
   per-terminal window features known in event time (:mod:`replay.baseline`),
   a logistic regression (``baseline_lr``) and LightGBM trees (``baseline_gbt``).
2. With ``--engines`` (the default) the sequence model is trained on the same
   rows, and the *whole* history streams through two engines at once through
   an embedded broker, every label arriving on the feedback topic after its
   delay, so both learn online as in production: engine A fuses the sequence
   model with the online learner (``fused``, its component ``sequence``),
   engine B is the online learner alone (``online``).

On the test period it prints, per scenario and overall, ROC AUC, average
precision and card precision@k of every model (:mod:`replay.scoreboard`),
issue 32's bars, and writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from models.online import SEQUENCE_INPUT
from replay.generate import GeneratorConfig
from replay.metrics import BoolArray, FloatArray
from replay.scoreboard import MODELS, Rows, bars, format_scoreboard, scoreboard

__all__ = ["ExperimentConfig", "Split", "baseline_scores", "cli", "engine_scores", "run_experiment", "split"]

_DAY_MS = 86_400_000


@dataclass(frozen=True)
class ExperimentConfig:
    """What to generate and compare. Every field is a command-line option (``--test-days`` ...)."""

    rows: int = 100_000
    cards: int = 2_000
    merchants: int = 2_000  # terminals; as many as cards keeps each terminal's traffic everyday-sized
    days: int = 60
    test_days: int = 14
    fraud_rate: float = 0.01
    seed: int = 11
    label_delay_days: float = 7.0
    replay_rate: float = 1600.0  # events/s (transactions + labels); keep it below what both engines sustain
    epochs: int = 4
    gbt_rounds: int = 300
    engines: bool = True  # False: the offline baselines only (no broker, no sequence model): a quick look
    entities: str = "merchant_id"  # FRAUDSTREAM_ENTITIES of both engines ("" : the card's state only)
    trees_refit_days: float = 1.0  # FRAUDSTREAM_TREES_REFIT_S of both engines, in days (0: no trees)
    out_dir: str = "experiment"
    k: int = 100

    def __post_init__(self) -> None:
        if not 0 < self.test_days < self.days:
            raise ValueError(f"test_days must be within (0, days), got {self.test_days} of {self.days}")
        if self.label_delay_days < 0 or self.days - self.test_days <= self.label_delay_days:
            raise ValueError(f"no label would be known when the test period starts: label_delay_days "
                             f"{self.label_delay_days:g} must be in [0, days - test_days = {self.days - self.test_days})")

    @property
    def label_delay_ms(self) -> int:
        return int(self.label_delay_days * _DAY_MS)

    def generator(self) -> GeneratorConfig:
        return GeneratorConfig(seed=self.seed, n_transactions=self.rows, n_cards=self.cards,
                               n_merchants=self.merchants, days=self.days, fraud_rate=self.fraud_rate)


@dataclass(frozen=True)
class Split:
    """Rows of the training and test periods, as masks over the table."""

    cutoff_ms: int
    train: BoolArray  # labelled by the cutoff: timestamp + label delay <= cutoff
    test: BoolArray  # timestamp >= cutoff


def split(table: pa.Table, cfg: ExperimentConfig) -> Split:
    """The last ``test_days`` are the test period; training takes the rows whose label is known by then.

    >>> cfg = ExperimentConfig(days=14, test_days=4, label_delay_days=5)
    >>> start = cfg.generator().start_ms
    >>> s = split(pa.table({"timestamp": [start + d * _DAY_MS for d in (0, 5, 9, 10)]}), cfg)
    >>> s.cutoff_ms == start + 10 * _DAY_MS, s.train.tolist(), s.test.tolist()
    (True, [True, True, False, False], [False, False, False, True])
    """
    ts = np.asarray(table["timestamp"].to_numpy(zero_copy_only=False), dtype=np.int64)
    cutoff = cfg.generator().start_ms + (cfg.days - cfg.test_days) * _DAY_MS
    return Split(cutoff, ts + cfg.label_delay_ms <= cutoff, ts >= cutoff)


def baseline_scores(table: pa.Table, rows: Split, label_delay_ms: int, seed: int = 0, rounds: int = 300,
                    threads: int = 0) -> dict[str, FloatArray]:
    """``baseline_lr`` and ``baseline_gbt`` scores of the test rows, trained once on the training rows."""
    from replay.baseline import feature_matrix, fit_predict, fit_predict_gbt, terminal_features

    x = np.hstack([feature_matrix(table), terminal_features(table, label_delay_ms)])
    y = np.asarray(table["is_fraud"].to_numpy(zero_copy_only=False), dtype=np.int64)
    return {
        "baseline_lr": fit_predict(x[rows.train], y[rows.train], x[rows.test], seed=seed),
        "baseline_gbt": fit_predict_gbt(x[rows.train], y[rows.train], x[rows.test], seed=seed, rounds=rounds,
                                        threads=threads),
    }


def engine_scores(records: Iterable[Mapping[str, Any]], ids: Iterable[str], component: str | None = None) -> FloatArray:
    """The engine's score (or one ``component`` of it) of each of ``ids``; NaN where none was recorded.

    Delivery is at least once: the first record of a transaction wins.

    >>> recs = [{"transaction_id": "a", "score": 0.2, "components": {"sequence": 0.3}},
    ...         {"transaction_id": "a", "score": 0.9}, {"transaction_id": "b", "score": 0.5}]
    >>> engine_scores(recs, ["a", "b", "c"]).tolist(), engine_scores(recs, ["a", "b"], "sequence").tolist()
    ([0.2, 0.5, nan], [0.3, nan])
    """
    first: dict[str, Mapping[str, Any]] = {}
    for record in records:
        first.setdefault(str(record["transaction_id"]), record)
    out = []
    for tid in ids:
        found = first.get(tid)
        value = None if found is None else (
            found.get("score") if component is None else (found.get("components") or {}).get(component))
        out.append(np.nan if value is None else float(value))
    return np.asarray(out, dtype=np.float64)


def _engine(name: str, bootstrap: str, out: Path, checkpoint: str, topics: dict[str, Any],
            entities: str = "", trees_refit_days: float = 1.0) -> tuple[Any, Any]:
    from stream.contracts.settings import Settings
    from stream.kafka.topics import ensure_topics
    from stream.tools.broker import free_port

    settings = Settings(
        app_id=f"experiment-{name}", bootstrap_servers=bootstrap, topic_partitions=4,
        topic_scores=f"scores-{name}", topic_alerts=f"alerts-{name}", topic_transactions_dlq=f"tx.dlq-{name}",
        topic_feedback_dlq=f"fb.dlq-{name}", topic_ops=f"ops-{name}", **topics,
        broker_session_timeout_s=6.0, broker_heartbeat_interval_s=1.0, broker_rebalance_timeout_s=6.0,
        # Faust's default fetch wait: two engines polling every 10 ms overload the embedded broker.
        broker_max_poll_interval_s=60.0, embedded_broker_compat=True,
        model_signing_key=secrets.token_hex(16), web_enabled=True, web_port=free_port(),
        sequence_model_path=checkpoint, data_dir=str(out / f"data-{name}"), log_level="warn", entities=entities,
        trees_refit_s=trees_refit_days * 86_400.0,
    )
    ensure_topics(settings)
    log = open(out / f"worker-{name}.log", "wb")  # noqa: SIM115 - the worker's output for its life
    proc = subprocess.Popen([sys.executable, "-m", "stream.tools.cli", "worker"], env={**os.environ, **settings.to_env()},
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}/ready", timeout=2):
                return settings, proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"engine {name} exited; see {out}/worker-{name}.log") from None
            time.sleep(0.5)
    raise RuntimeError(f"engine {name} not ready; see {out}/worker-{name}.log")


def read_ops(settings: Any, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Every record of ``settings``' ops topic as it is now (JSON objects; others are left out)."""
    import asyncio

    from stream.kafka.follow import follow_topic

    values: list[bytes] = []

    async def read() -> None:
        done = asyncio.Event()
        task = asyncio.ensure_future(follow_topic(settings, settings.topic_ops, lambda m: values.append(m.value),
                                                  done.set, lambda _: None))
        try:
            await asyncio.wait_for(done.wait(), timeout=timeout_s)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(read())
    out = []
    for value in values:
        try:
            record = json.loads(value)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def refit_summary(ops: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """How the trainer's refits went: their count, the periods skipped, and where the sequence logit was read.

    >>> refit_summary([{"type": "trees_refit_skipped"}, {"type": "trees_refit", "ignored": ["sequence_logit"]},
    ...                {"type": "trees_refit", "ignored": []}])
    {'refits': 2, 'skipped': 1, 'failed': 0, 'sequence_logit_read': 1}
    """
    fits = [o for o in ops if o.get("type") == "trees_refit"]
    return {"refits": len(fits), "skipped": sum(o.get("type") == "trees_refit_skipped" for o in ops),
            "failed": sum(o.get("type") == "trees_refit_failed" for o in ops),
            "sequence_logit_read": sum(SEQUENCE_INPUT not in o.get("ignored", ()) for o in fits)}


def _stream(cfg: ExperimentConfig, table: pa.Table, rows: Split, history: Path, out: Path,
            test_ids: list[str]) -> dict[str, Any]:
    """Train the sequence model, stream the history through both engines, return their test-period scores."""
    from models.train import TrainConfig, train
    from replay.inputs import consume_scores
    from replay.plan import LabelPolicy
    from replay.progress import Pace
    from replay.replay import ReplayConfig, run_replay
    from stream.tools.broker import EmbeddedBroker
    from stream.tools.children import stop_children

    trained = train(TrainConfig(table=table.filter(pa.array(rows.train)), out=out / "sequence-model",
                                epochs=cfg.epochs, seed=cfg.seed, label_delay_ms=cfg.label_delay_ms))
    print(f"sequence model {trained.version}: validation AP {trained.val_ap:.3f} in {trained.seconds:.0f} s",
          flush=True)
    topics = {"topic_transactions": "transactions", "topic_feedback": "feedback"}
    with EmbeddedBroker(log_path=out / "broker.log") as broker:
        engines = {name: _engine(name, broker.bootstrap_servers, out, ckpt, topics, cfg.entities,
                                       cfg.trees_refit_days)
                   for name, ckpt in (("fusion", str(trained.path)), ("online", ""))}
        replay_settings = engines["online"][0].replace(app_id="experiment-replay")
        summary = run_replay(ReplayConfig(
            input=history, settings=replay_settings, quiet=True, restart=True,
            checkpoint=out / "replay-checkpoint.json", labels=LabelPolicy(delay_ms=cfg.label_delay_ms),
            pace=Pace(mode="rate", value=cfg.replay_rate),
            # Both engines refit daily in event time, as live: how many refits a compressed replay leaves room
            # for would otherwise decide the comparison (replay/refits.py).
            wait_for_refits=tuple((s.topic_ops, s.app_id) for s, _ in engines.values()) if cfg.trees_refit_days else ()))
        print(summary.line(), flush=True)
        records = {name: consume_scores(broker.bootstrap_servers, s.topic_scores, timeout_s=120, expected=cfg.rows)
                   for name, (s, _) in engines.items()}
        for name, (s, _) in engines.items():  # how far each engine's learning got, for a reader of the run
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{s.web_port}/stats/", timeout=5) as resp:
                    stats = json.loads(resp.read())["stats"]
                print(f"engine {name}: {stats.get('labels_learned', 0):,} labels learned, "
                      f"{stats.get('trees_refits', 0)} tree refits, {stats.get('scored', 0):,} scored", flush=True)
            except OSError as exc:
                print(f"engine {name}: no stats ({exc})", flush=True)
        refits = {}
        for name, (s, _) in engines.items():  # what each trainer did, kept: the ops topic goes with the broker
            ops = read_ops(s)
            with gzip.open(out / f"ops-{name}.jsonl.gz", "wt") as fh:
                fh.writelines(json.dumps(o) + "\n" for o in ops)
            refits[name] = refit_summary(ops)
            print(f"engine {name}: {refits[name]}", flush=True)
        stop_children([proc for _, proc in engines.values()], timeout=60)
    for name, recs in records.items():  # every score record, for a closer look (entity features, components)
        with gzip.open(out / f"scores-{name}.jsonl.gz", "wt") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in recs)
    scores = {"fused": engine_scores(records["fusion"], test_ids),
              "sequence": engine_scores(records["fusion"], test_ids, component="sequence"),
              "online": engine_scores(records["online"], test_ids)}
    for name, engine in (("fused", "fusion"), ("online", "online")):
        scored = int(np.isfinite(scores[name]).sum())
        if scored < 0.99 * len(test_ids):
            raise RuntimeError(f"engine {engine} scored only {scored:,} of the {len(test_ids):,} test transactions; "
                               f"see {out}/worker-{engine}.log")
    return {"scores": scores, "replay": summary.line(), "refits": refits,
            "sequence_model": {"version": trained.version, "val_ap": trained.val_ap, "train_seconds": trained.seconds}}


def run_experiment(cfg: ExperimentConfig) -> dict[str, Any]:
    """Generate, train, stream and score as the module says; returns (and writes) the results."""
    from replay.generate import generate, write

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    table = generate(cfg.generator())
    rows = split(table, cfg)
    history = write(table, out / "history.parquet")
    print(f"generated {table.num_rows:,} rows: {int(rows.train.sum()):,} labelled by the split, "
          f"{int(rows.test.sum()):,} in the test period", flush=True)
    test = {name: table[name].to_numpy(zero_copy_only=False)[rows.test]
            for name in ("transaction_id", "card_id", "timestamp", "is_fraud", "scenario")}
    scores = baseline_scores(table, rows, cfg.label_delay_ms, seed=cfg.seed, rounds=cfg.gbt_rounds)
    print(f"baselines trained and scored after {time.monotonic() - began:.0f} s", flush=True)
    results: dict[str, Any] = {"config": asdict(cfg)}
    if cfg.engines:
        streamed = _stream(cfg, table, rows, history, out, [str(t) for t in test["transaction_id"]])
        scores.update(streamed.pop("scores"))
        results.update(streamed)
    board = scoreboard(Rows(y=test["is_fraud"], scenario=test["scenario"], card=test["card_id"],
                            day=np.asarray(test["timestamp"], dtype=np.int64) // _DAY_MS),
                       {name: scores[name] for name in MODELS if name in scores}, k=cfg.k)
    results.update({
        "test_period": {"from_ms": rows.cutoff_ms, "rows": int(rows.test.sum()),
                        "frauds": int(np.asarray(test["is_fraud"]).sum()), "train_rows": int(rows.train.sum())},
        "scoreboard": board,
        "bars": bars(board),
        "seconds": round(time.monotonic() - began, 1),
    })
    text = _markdown(results)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(text)
    print(text, flush=True)
    return results


def _markdown(results: Mapping[str, Any]) -> str:
    cfg, test = results["config"], results["test_period"]
    lines = [(f"Generated: {cfg['rows']:,} transactions over {cfg['days']} days, {cfg['cards']:,} cards, "
             f"{cfg['merchants']:,} terminals, seed {cfg['seed']}. Test period: the last {cfg['test_days']} days, "
             f"{test['rows']:,} transactions, {test['frauds']:,} frauds; labels {cfg['label_delay_days']:g} days "
             f"late; offline models trained on the {test['train_rows']:,} rows labelled by then."), "",
             format_scoreboard(results["scoreboard"], k=cfg["k"]), ""]
    verdict = {True: "met", False: "NOT met", None: "not measured"}
    lines += [f"- bar {name}: {verdict[ok]}" for name, ok in results["bars"].items()]
    return "\n".join(lines) + "\n"


def cli(argv: list[str] | None = None) -> int:
    """``fraudstream experiment``: every field of :class:`ExperimentConfig` is an option."""
    parser = argparse.ArgumentParser(prog="fraudstream experiment", description=__doc__.split("\n\n")[0])
    defaults = ExperimentConfig()
    for f in fields(ExperimentConfig):
        value = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    results = run_experiment(ExperimentConfig(**vars(parser.parse_args(argv))))
    return 0 if results["scoreboard"] else 1
