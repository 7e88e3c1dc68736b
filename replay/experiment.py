"""The model comparison: online learner, sequence model, their fusion, and a batch baseline.

``fraudstream experiment`` generates a labelled history, splits it by time,
trains the sequence model on the training period, and streams the *whole*
history through two engines at once (one with the sequence model, fused with
the online learner; one with the online learner alone) with every label
arriving on the feedback topic seven days after its transaction. Both engines
therefore learn online exactly as in production. Then, on the test period
only, it compares ROC AUC, average precision and card precision@100 of

1. the online learner alone (engine B),
2. the sequence model alone (engine A's ``sequence`` component),
3. the fusion (engine A's score),
4. a logistic-regression baseline on the same engineered features, trained
   once on the training period (:mod:`replay.baseline`),

and writes ``results.json`` and ``results.md`` (the README table).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

__all__ = ["ExperimentConfig", "cli", "run_experiment"]

_DAY_MS = 86_400_000


@dataclass(frozen=True)
class ExperimentConfig:
    rows: int = 60_000
    cards: int = 1_500
    days: int = 30
    test_days: int = 8
    seed: int = 11
    label_delay_days: float = 7.0
    replay_rate: float = 1600.0  # events/s (transactions + labels); keep it below what both engines sustain
    epochs: int = 4
    out_dir: str = "experiment"
    k: int = 100


def _engine(name: str, bootstrap: str, out: Path, checkpoint: str, topics: dict[str, Any]) -> tuple[Any, Any]:
    from stream.broker import free_port
    from stream.settings import Settings
    from stream.topics import ensure_topics

    settings = Settings(
        app_id=f"experiment-{name}", bootstrap_servers=bootstrap, topic_partitions=4,
        topic_scores=f"scores-{name}", topic_alerts=f"alerts-{name}", topic_transactions_dlq=f"tx.dlq-{name}",
        topic_feedback_dlq=f"fb.dlq-{name}", topic_ops=f"ops-{name}", **topics,
        broker_session_timeout_s=6.0, broker_heartbeat_interval_s=1.0, broker_rebalance_timeout_s=6.0,
        # Faust's default fetch wait: two engines polling every 10 ms overload the embedded broker.
        broker_max_poll_interval_s=60.0, embedded_broker_compat=True,
        model_signing_key=secrets.token_hex(16), web_enabled=True, web_port=free_port(),
        sequence_model_path=checkpoint, data_dir=str(out / f"data-{name}"), log_level="warn",
    )
    ensure_topics(settings)
    log = open(out / f"worker-{name}.log", "wb")  # noqa: SIM115 - the worker's output for its life
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker"], env={**os.environ, **settings.to_env()},
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


def _metrics(result: dict[str, Any]) -> dict[str, float | None]:
    overall = result["overall"]
    return {"roc_auc": overall["roc_auc"], "average_precision": overall["average_precision"],
            "card_precision_at_k": overall["card_precision_at_k"]}


def run_experiment(cfg: ExperimentConfig) -> dict[str, Any]:
    from models.train import TrainConfig, train
    from replay.baseline import feature_matrix, fit_predict
    from replay.evaluate import Label, consume_scores, evaluate
    from replay.generate import GeneratorConfig, generate, write
    from replay.plan import LabelPolicy
    from replay.progress import Pace
    from replay.replay import ReplayConfig, run_replay
    from stream.broker import EmbeddedBroker

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    gen = GeneratorConfig(seed=cfg.seed, n_transactions=cfg.rows, n_cards=cfg.cards,
                          n_merchants=max(cfg.cards // 4, 100), days=cfg.days)
    table = generate(gen)
    cutoff = gen.start_ms + (cfg.days - cfg.test_days) * _DAY_MS
    is_train = pc.less(table["timestamp"], cutoff)
    train_table = table.filter(is_train)
    history = write(table, out / "history.parquet")
    print(f"generated {table.num_rows:,} rows; training period {train_table.num_rows:,} rows", flush=True)

    trained = train(TrainConfig(table=train_table, out=out / "sequence-model", epochs=cfg.epochs, seed=cfg.seed))
    print(f"sequence model {trained.version}: validation AP {trained.val_ap:.3f} in {trained.seconds:.0f} s", flush=True)

    topics = {"topic_transactions": "transactions", "topic_feedback": "feedback"}
    with EmbeddedBroker(log_path=out / "broker.log") as broker:
        engines = {name: _engine(name, broker.bootstrap_servers, out, ckpt, topics)
                   for name, ckpt in (("fusion", str(trained.path)), ("online", ""))}
        replay_settings = engines["online"][0].replace(app_id="experiment-replay")
        summary = run_replay(ReplayConfig(
            input=history, settings=replay_settings, quiet=True, restart=True,
            checkpoint=out / "replay-checkpoint.json",
            labels=LabelPolicy(delay_ms=int(cfg.label_delay_days * _DAY_MS)),
            pace=Pace(mode="rate", value=cfg.replay_rate)))
        print(summary.line(), flush=True)
        scores = {name: consume_scores(broker.bootstrap_servers, s.topic_scores, timeout_s=120, expected=cfg.rows)
                  for name, (s, _) in engines.items()}
        for _, proc in engines.values():
            proc.terminate()
            proc.wait(timeout=60)

    ids = table["transaction_id"].to_pylist()
    fraud = table["is_fraud"].to_pylist()
    scenario = table["scenario"].to_pylist()
    test_mask = np.asarray(pc.invert(is_train).to_numpy(zero_copy_only=False), dtype=bool)
    labels = {ids[i]: Label(int(fraud[i]), scenario[i]) for i in np.flatnonzero(test_mask)}
    fusion = evaluate(scores["fusion"], labels, k=cfg.k)
    online = evaluate(scores["online"], labels, k=cfg.k)

    x = feature_matrix(table)
    y = np.asarray(fraud, dtype=np.int64)
    p = fit_predict(x[~test_mask], y[~test_mask], x[test_mask])
    times = table["timestamp"].to_pylist()
    cards = table["card_id"].to_pylist()
    baseline_scores = [{"transaction_id": ids[i], "card_id": cards[i], "event_time": times[i], "score": float(s)}
                       for i, s in zip(np.flatnonzero(test_mask).tolist(), p.tolist(), strict=True)]
    baseline = evaluate(baseline_scores, labels, k=cfg.k)

    for name, result in (("fusion", fusion), ("online", online)):
        joined = result["coverage"]["joined"]
        if joined < 0.99 * len(labels):
            raise RuntimeError(f"engine {name} scored only {joined:,} of the {len(labels):,} test transactions; "
                               f"see {out}/worker-{name}.log")
    seq = fusion["components"]["sequence"]["overall"]
    rows = {
        "online learner alone": _metrics(online),
        "sequence model alone": {"roc_auc": seq["roc_auc"], "average_precision": seq["average_precision"],
                                 "card_precision_at_k": seq["card_precision_at_k"]},
        "fusion (engine score)": _metrics(fusion),
        "logistic regression baseline": _metrics(baseline),
    }
    results = {
        "config": asdict(cfg),
        "test_period": {"from_ms": cutoff, "rows": int(test_mask.sum()), "frauds": int(y[test_mask].sum())},
        "sequence_model": {"version": trained.version, "val_ap": trained.val_ap, "train_seconds": trained.seconds},
        "replay": summary.line(),
        "coverage": {"fusion": fusion["coverage"], "online": online["coverage"]},
        "models": rows,
        "fusion_beats_all_on_ap": all(
            (rows["fusion (engine score)"]["average_precision"] or 0) > (r["average_precision"] or 0)
            for name, r in rows.items() if name != "fusion (engine score)"),
        "seconds": round(time.monotonic() - began, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(_table(results))
    print(_table(results), flush=True)
    return results


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _table(results: dict[str, Any]) -> str:
    test = results["test_period"]
    lines = [(f"Test period: last {results['config']['test_days']} days, {test['rows']:,} transactions, "
             f"{test['frauds']:,} frauds; labels 7 days late."), "",
             "| model | ROC AUC | average precision | card precision@100 |", "|---|---|---|---|"]
    for name, m in results["models"].items():
        lines.append(f"| {name} | {_fmt(m['roc_auc'])} | {_fmt(m['average_precision'])} | "
                     f"{_fmt(m['card_precision_at_k'])} |")
    return "\n".join(lines) + "\n"


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fraudstream experiment", description=__doc__.split("\n\n")[0])
    defaults = ExperimentConfig()
    for name, value in asdict(defaults).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args(argv)
    results = run_experiment(ExperimentConfig(**vars(args)))
    return 0 if results["models"] else 1
