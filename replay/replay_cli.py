"""``fraudstream replay``, the command line: arguments in, a :class:`~replay.replay.ReplayConfig` out, a summary printed.

The replay itself (:func:`replay.replay.run_replay`) takes a config object and
knows nothing of ``argparse``, so the demo, the experiment and the tests drive
it directly; this module only parses the arguments, installs the Ctrl-C /
SIGTERM handler that stops the replay between chunks, and turns errors into
exit codes (0 done, 1 error, 2 bad usage, 130 interrupted).

Example:
    >>> import contextlib, io
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     cli(["data.csv", "--speed", "60x", "--rate", "100"])
    Traceback (most recent call last):
    ...
    SystemExit: 2
    >>> "not allowed with argument" in err.getvalue()
    True
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from replay.mapping import MappingError, load_mapping, parse_pairs
from replay.plan import LabelPolicy
from replay.progress import Pace, parse_duration_ms
from replay.replay import ReplayConfig, run_replay
from replay.source import Reject, SourceError
from stream.contracts.settings import Settings, SettingsError

__all__ = ["cli"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fraudstream replay", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Send a labelled CSV, Parquet or JSON Lines file to Kafka in event-time order: "
                    "transactions to the transactions topic, delayed labels to the feedback topic.",
        epilog="Rows that do not map are reported with their row number and reason, and the rest are sent. "
               "Interrupted (Ctrl-C, SIGTERM, crash), the same command continues where it stopped "
               "with no gap and no duplicate.")
    p.add_argument("input", type=Path, help="input file: .csv, .parquet or .jsonl (also .csv.gz, .jsonl.gz)")
    g = p.add_argument_group("columns")
    g.add_argument("--format", choices=("csv", "parquet", "jsonl"), help="input format (default: from the suffix)")
    g.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                   help="take FIELD from COLUMN (repeatable); fields: transaction_id card_id timestamp amount "
                        "currency merchant_id mcc country channel label scenario; COLUMN empty = leave out")
    g.add_argument("--mapping", type=Path, metavar="FILE", help="mapping file: JSON object or FIELD=COLUMN lines")
    g.add_argument("--timestamp-unit", choices=("ms", "s"), default="ms",
                   help="unit of numeric timestamps (RFC 3339 strings are also accepted); default ms")
    g.add_argument("--no-labels", action="store_true", help="send transactions only, even if there is a label column")
    g = p.add_argument_group("labels")
    g.add_argument("--label-delay", default="7d", metavar="DURATION", help="label time after the transaction: 30s, 15m, 2h, 7d (default 7d)")
    g.add_argument("--label-source", default="chargeback", metavar="NAME", help="source of delayed labels (default chargeback)")
    g.add_argument("--immediate-share", type=float, default=0.0, metavar="SHARE",
                   help="share of fraud rows labelled soon by an analyst instead (default 0)")
    g.add_argument("--immediate-delay", default="10m", metavar="DURATION", help="delay of those analyst labels (default 10m)")
    g.add_argument("--seed", type=int, default=0, metavar="N", help="picks the analyst-labelled rows (default 0)")
    g.add_argument("--labels-only-fraud", action="store_true", help="emit fraud labels only")
    g.add_argument("--drop-late-labels", action="store_true",
                   help="drop labels due after the last transaction (default: send them at the end, in order)")
    g = p.add_argument_group("pace")
    pace = g.add_mutually_exclusive_group()
    pace.add_argument("--speed", default=None, metavar="max|Nx", help="max (default) or N times real time, e.g. 60x")
    pace.add_argument("--rate", type=float, default=None, metavar="N", help="fixed events per second")
    g.add_argument("--wait-for-refits", action="store_true",
                   help="hold where the engine's trees fall due for a refit (every FRAUDSTREAM_TREES_REFIT_S of "
                        "event time) until its trainer reports it on FRAUDSTREAM_TOPIC_OPS, as a day of live "
                        "traffic would have waited; for a replay that judges the engine")
    g.add_argument("--refit-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="longest hold for one refit, then replay on with a warning (default 120)")
    g = p.add_argument_group("kafka (defaults from FRAUDSTREAM_* variables)")
    g.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="override FRAUDSTREAM_BOOTSTRAP_SERVERS")
    g.add_argument("--topic", metavar="NAME", help="transactions topic (FRAUDSTREAM_TOPIC_TRANSACTIONS)")
    g.add_argument("--feedback-topic", metavar="NAME", help="labels topic (FRAUDSTREAM_TOPIC_FEEDBACK)")
    g = p.add_argument_group("resume and reporting")
    g.add_argument("--checkpoint", type=Path, metavar="PATH", help="checkpoint file (default <input>.replay-checkpoint.json)")
    g.add_argument("--restart", action="store_true", help="ignore the checkpoint and replay from the start")
    g.add_argument("--checkpoint-every", type=int, default=20_000, metavar="N",
                   help="events per acknowledged chunk (also at least once a second); default 20000")
    g.add_argument("--stop-after", type=int, metavar="N", help="stop cleanly after N events (resume later)")
    g.add_argument("--rejects", type=Path, metavar="FILE", help="write rejected rows as CSV: row,field,reason,detail")
    g.add_argument("--strict", action="store_true", help="abort, sending nothing, if any row does not map")
    g.add_argument("--verify", action="store_true",
                   help="check every record with the engine's own parser before sending (~13 us each)")
    g.add_argument("--quiet", action="store_true", help="no progress bar (the summary line still prints)")
    return p


def _config(args: argparse.Namespace) -> ReplayConfig:
    mapping = load_mapping(args.mapping) if args.mapping else {}
    mapping.update(parse_pairs(args.map))
    if args.no_labels:
        mapping["label"] = ""
    overrides = {k: v for k, v in (("bootstrap_servers", args.bootstrap_servers),
                                   ("topic_transactions", args.topic), ("topic_feedback", args.feedback_topic)) if v}
    labels = LabelPolicy(
        delay_ms=parse_duration_ms(args.label_delay), source=args.label_source,
        immediate_share=args.immediate_share, immediate_delay_ms=parse_duration_ms(args.immediate_delay),
        only_fraud=args.labels_only_fraud, drop_late=args.drop_late_labels, seed=args.seed)
    if args.checkpoint_every < 1 or (args.stop_after is not None and args.stop_after < 0):
        raise ValueError("--checkpoint-every must be >= 1 and --stop-after >= 0")
    if args.refit_timeout <= 0:
        raise ValueError("--refit-timeout must be > 0")
    settings = Settings.from_env(**overrides)
    if args.wait_for_refits and settings.trees_refit_s <= 0:
        raise ValueError("--wait-for-refits: FRAUDSTREAM_TREES_REFIT_S is 0, the engine fits no trees")
    return ReplayConfig(
        input=args.input, mapping=mapping, input_format=args.format, timestamp_unit=args.timestamp_unit,
        labels=labels, pace=Pace.parse(args.speed, args.rate), settings=settings,
        checkpoint=args.checkpoint, restart=args.restart, rejects_path=args.rejects, strict=args.strict,
        quiet=args.quiet, verify=args.verify, stop_after=args.stop_after, chunk_events=args.checkpoint_every,
        wait_for_refits=((settings.topic_ops, settings.app_id),) if args.wait_for_refits else (),
        refit_timeout_s=args.refit_timeout)


def _report_rejects(rejects: Sequence[Reject], rows: int, rejects_path: Path | None, shown: int = 10) -> None:
    if not rejects:
        return
    counts: dict[str, int] = {}
    for r in rejects:
        counts[r.reason] = counts.get(r.reason, 0) + 1
    reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    print(f"replay: {len(rejects):,} of {rows:,} rows rejected ({reasons}):", file=sys.stderr)
    for r in rejects[:shown]:
        print(f"  {r}", file=sys.stderr)
    if len(rejects) > shown:
        where = f"all in {rejects_path}" if rejects_path else "--rejects FILE lists all"
        print(f"  ... and {len(rejects) - shown:,} more ({where})", file=sys.stderr)


def cli(argv: Sequence[str] | None = None) -> int:
    """``fraudstream replay``; returns 0 done or stopped by --stop-after, 1 error, 2 bad usage, 130 interrupted.

    >>> import contextlib, io
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     cli(["/nonexistent.csv", "--quiet"])
    2
    >>> err.getvalue()
    'fraudstream replay: /nonexistent.csv: no such file\\n'
    """
    from aiokafka.errors import KafkaError as AIOKafkaError
    from kafka.errors import KafkaError

    args = _parser().parse_args(argv)
    try:
        config = _config(args)
    except (ValueError, OSError) as exc:  # MappingError, SettingsError and bad durations are ValueErrors
        print(f"fraudstream replay: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signals: dict[Any, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            # A flag, not an exception: the loop stops between chunks, waits
            # for the acknowledgements and saves the checkpoint.
            signals[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        summary = run_replay(config, stop=stop)
    except (SourceError, MappingError, SettingsError) as exc:
        print(f"fraudstream replay: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError, KafkaError, AIOKafkaError) as exc:  # ReplayError, topic mismatch, Kafka down
        print(f"fraudstream replay: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in signals.items():
            signal.signal(sig, handler)
    _report_rejects(summary.rejects, summary.rows, config.rejects_path)
    if summary.already_complete:
        print(f"replay: already complete ({summary.total_events:,} events, checkpoint "
              f"{config.checkpoint_path}); --restart replays again", file=sys.stderr)
    print(summary.line(), file=sys.stderr)
    return 130 if summary.stopped == "interrupted" else 0


if __name__ == "__main__":
    sys.exit(cli())
