"""The ``fraudstream`` command.

Subcommands: ``worker`` (run the Faust worker), ``broker`` (run the embedded
broker and print its address), ``demo`` (broker + worker + generated traffic),
``rules`` (the dynamic rules), and the historical-data tools ``generate`` and ``evaluate``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence

__all__ = ["main"]


def _worker(args: argparse.Namespace) -> int:
    from stream.contracts.settings import Settings
    from stream.runtime.worker import create_engine, run_worker

    settings = Settings.from_env()
    if args.bootstrap_servers:
        settings = settings.replace(bootstrap_servers=args.bootstrap_servers)
    run_worker(settings, lambda s: create_engine(s).app)
    return 0


def _broker(args: argparse.Namespace) -> int:
    from stream.tools.broker import EmbeddedBroker

    broker = EmbeddedBroker(port=args.port)
    broker.start()
    print(f"FRAUDSTREAM_BOOTSTRAP_SERVERS={broker.bootstrap_servers}", flush=True)
    print("FRAUDSTREAM_EMBEDDED_BROKER_COMPAT=1", flush=True)
    print("FRAUDSTREAM_FETCH_MAX_WAIT_MS=10", flush=True)
    print(f"broker log: {broker.log_path}; Ctrl-C to stop", file=sys.stderr, flush=True)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop and broker.running():
            time.sleep(0.2)
    finally:
        broker.stop()
    return 0


def _topics(args: argparse.Namespace) -> int:
    from stream.contracts.settings import Settings
    from stream.kafka.topics import ensure_topics

    settings = Settings.from_env()
    if args.bootstrap_servers:
        settings = settings.replace(bootstrap_servers=args.bootstrap_servers)
    for name, partitions in ensure_topics(settings).items():
        print(f"{name}\t{partitions} partitions")
    return 0


_SETTINGS_PAGE_HEAD = """\
# Settings

Every setting of the engine, its environment variable and its default, generated from
[`stream/contracts/settings.py`](../stream/contracts/settings.py) by `fraudstream settings --out docs/settings.md`
(a test fails when this page and the code disagree). `fraudstream settings` prints the same table.
A worker reads nothing else from the environment for its configuration.

Short group timeouts matter on the embedded broker: with Faust's defaults a worker took ~30 s to join
its group there; the tests and the demo use 6 s / 1 s / 6 s / 6 s (session timeout / heartbeat /
rebalance timeout / max poll interval) and are ready in ~4 s.

"""


def _settings(args: argparse.Namespace) -> int:
    from stream.contracts.settings import describe

    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{name}` | `{default}` | {doc} |" for name, default, doc in describe()]
    table = "\n".join(rows) + "\n"
    if args.out:
        # The docs page is generated, never edited by hand, so it cannot drift from the code.
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(_SETTINGS_PAGE_HEAD + table)
    else:
        print(table, end="")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from stream.tools.bench.run import BenchConfig, run_bench
    from stream.tools.bench.summary import markdown_table, summary_lines

    if args.summary_of:  # a saved run's figures: nothing is run
        saved = json.loads(Path(args.summary_of).read_text())
        print(markdown_table(saved) if args.markdown else "\n".join(summary_lines(saved["summary"])))
        return 0
    if args.smoke:
        cfg = BenchConfig.smoke(args.out)
        cfg.checkpoint = args.checkpoint
        cfg.sequence_precision = args.sequence_precision
        cfg.entities = args.entities
        cfg.bootstrap_servers = args.bootstrap_servers
        cfg.repeat = args.repeat
        cfg.rules = args.rules
    else:
        cfg = BenchConfig(events=args.events, cards=args.cards, partitions=args.partitions,
                          workers=tuple(int(w) for w in args.workers.split(",")), latency_workers=args.latency_workers,
                          latency_rate=args.latency_rate,
                          latency_seconds=args.latency_seconds, soak_seconds=args.soak_seconds, soak_rate=args.soak_rate,
                          batch_size=args.batch_size, checkpoint=args.checkpoint,
                          sequence_precision=args.sequence_precision, entities=args.entities, out=args.out,
                          bootstrap_servers=args.bootstrap_servers, repeat=args.repeat, rules=args.rules)
    try:
        cfg.validate()
    except ValueError as exc:
        print(f"fraudstream bench: {exc}", file=sys.stderr)
        return 2
    results = run_bench(cfg)
    print(f"figures written to {args.out}")
    if args.markdown:
        print(markdown_table(results))
    return 0 if all(run.get("engine") for run in results["runs"]) else 1


def _demo(args: argparse.Namespace) -> int:
    from stream.tools.demo import run_demo

    return run_demo(rows=args.rows, cards=args.cards, days=args.days, train_days=args.train_days, rate=args.rate,
                    out_dir=args.out_dir)


def _generate(argv: list[str]) -> int:
    from replay.generate import cli

    return cli(argv)


def _replay(argv: list[str]) -> int:
    from replay.replay_cli import cli

    return cli(argv)


def _alerts(argv: list[str]) -> int:
    from stream.tools.tail import cli

    return cli(argv)


def _train(argv: list[str]) -> int:
    from models.train import cli

    return cli(argv)


def _experiment(argv: list[str]) -> int:
    from replay.experiment import cli

    return cli(argv)


def _rules(argv: list[str]) -> int:
    from stream.tools.rules import cli

    return cli(argv)


def _evaluate(argv: list[str]) -> int:
    from replay.evaluate import cli

    return cli(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fraudstream`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Tools with their own argparse get the rest of the line untouched.
    passthrough = {"generate": _generate, "replay": _replay, "evaluate": _evaluate, "alerts": _alerts,
                   "train": _train, "experiment": _experiment, "rules": _rules}
    if argv and argv[0] in passthrough:
        return passthrough[argv[0]](argv[1:])
    parser = argparse.ArgumentParser(prog="fraudstream", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("worker", help="run the Faust worker (settings from FRAUDSTREAM_* variables)")
    p.add_argument("--bootstrap-servers", help="override FRAUDSTREAM_BOOTSTRAP_SERVERS")
    p.set_defaults(func=_worker)
    p = sub.add_parser("broker", help="run the embedded Kafka-compatible broker")
    p.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    p.set_defaults(func=_broker)
    p = sub.add_parser("topics", help="create the engine's topics with matching partition counts")
    p.add_argument("--bootstrap-servers", help="override FRAUDSTREAM_BOOTSTRAP_SERVERS")
    p.set_defaults(func=_topics)
    p = sub.add_parser("settings", help="print every setting, its variable and default (Markdown)")
    p.add_argument("--out", default="", help="write the settings docs page here (docs/settings.md) instead")
    p.set_defaults(func=_settings)
    p = sub.add_parser("bench", help="throughput, latency and memory against the bare-aiokafka and Faust limits")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--cards", type=int, default=4_000,
                   help="cards in the generated data: 200,000 over 4,000 is 50 a card, so most are scored "
                        "with a full history window, as in production")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--workers", default="1,2", help="engine runs with these worker counts")
    p.add_argument("--latency-workers", type=int, default=1, help="workers in the engine's latency and soak phases")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--latency-rate", type=float, default=2000.0, help="offered load for the latency test, per s")
    p.add_argument("--latency-seconds", type=float, default=30.0)
    p.add_argument("--soak-seconds", type=float, default=0.0,
                   help="after the latency run, offer --soak-rate this long for the memory check")
    p.add_argument("--soak-rate", type=float, default=0.0, help="offered load of the soak, per s (0: --latency-rate)")
    p.add_argument("--checkpoint", default="auto",
                   help="sequence model checkpoint dir; 'auto' (default) trains a small one first, '' runs the "
                        "online learner only")
    p.add_argument("--sequence-precision", default="float32", choices=("float32", "bfloat16"),
                   help="the workers' FRAUDSTREAM_SEQUENCE_PRECISION")
    p.add_argument("--entities", default=None,
                   help="the workers' FRAUDSTREAM_ENTITIES (default: the setting's default; '' for per-card state only)")
    p.add_argument("--rules", type=int, default=0,
                   help="load this many generated dynamic rules (half in shadow mode) into the engine's workers and "
                        "print their cost per transaction")
    p.add_argument("--smoke", action="store_true", help="a few seconds, to check the benchmark works")
    p.add_argument("--repeat", type=int, default=1,
                   help="run every phase this many times, interleaved, each on a fresh broker; print each figure's "
                        "median and spread")
    p.add_argument("--markdown", action="store_true",
                   help="also print the README's table: each figure's median and spread, with this command")
    p.add_argument("--summary-of", metavar="RESULTS_JSON", default="",
                   help="run nothing: print the summary (with --markdown, the README's table) of a saved run")
    p.add_argument("--out", default="bench-results.json")
    p.add_argument("--bootstrap-servers", default="",
                   help="run on this broker (Apache Kafka, say) instead of starting the embedded one; every topic "
                        "the run creates is named bench-<run id>-*")
    p.set_defaults(func=_bench)
    p = sub.add_parser("demo", help="generate, train, replay with delayed labels through broker + worker, evaluate")
    p.add_argument("--rows", type=int, default=30_000, help="transactions in the generated history")
    p.add_argument("--cards", type=int, default=1500, help="cards in the generated history")
    p.add_argument("--days", type=int, default=12, help="days the history spans")
    p.add_argument("--train-days", type=int, default=9, help="first days used to train the sequence model")
    p.add_argument("--rate", type=float, default=1000.0, help="replay pace, events (transactions + labels) per second")
    p.add_argument("--out-dir", default="demo-output", help="where the evaluation report goes")
    p.set_defaults(func=_demo)
    sub.add_parser("generate", help="generate labelled historical transactions (see generate --help)")
    sub.add_parser("replay", help="replay a CSV/Parquet/JSONL history into Kafka with delayed labels (see replay --help)")
    sub.add_parser("train", help="train the sequence model on a history file (see train --help)")
    sub.add_parser("experiment", help="online vs sequence vs fusion vs baseline, streamed with delayed labels")
    sub.add_parser("alerts", help="tail the alerts topic as a live table or JSON lines (see alerts --help)")
    sub.add_parser("rules", help="add, list, enable, disable, delete and backtest dynamic rules (docs/rules.md)")
    sub.add_parser("evaluate", help="detection-quality report from scores and labels (see evaluate --help)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python narrates every connection at INFO
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
