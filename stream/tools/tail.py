"""``fraudstream alerts``: watch the alerts topic live, as a table or as JSON lines.

The tail reads with *no consumer group*: it assigns itself every partition of
the topic and seeks to the end (or to the beginning with ``--from-beginning``).
It therefore commits nothing and never takes part in a rebalance, so running
it next to the workers or another team's alert subscriber disturbs neither.

Settings come from the environment like the worker's (``FRAUDSTREAM_*``, see
:mod:`stream.contracts.settings`); the flags override them::

    fraudstream alerts                                   # live table from now on
    fraudstream alerts --from-beginning --max 20         # the first 20 alerts kept
    fraudstream alerts --json | jq .score                # one alert object a line
    fraudstream alerts --bootstrap-servers localhost:9092 --timeout 60

Exit status: 0 when stopped by Ctrl-C, by ``--max`` or by ``--timeout``; 1 when
``--max N`` was asked for and fewer than N alerts came within ``--timeout``; 2
when the broker or the topic cannot be reached or a setting is invalid; 130
when a second Ctrl-C cuts short a wait that the first could not end.

Example (the row, without a broker):
    >>> alert = {"card_id": "card-42", "event_time": 1740830400000, "score": 0.9731,
    ...          "transaction": {"amount": 1249.5, "currency": "EUR", "country": "BR", "channel": "ecom"},
    ...          "reasons": [{"code": "is_new_country", "text": "first transaction in BR for this card",
    ...                       "weight": 1.4}]}
    >>> print(format_alert_row(alert))
    2025-03-01 12:00:00  card-42              1249.50 EUR  BR/ecom     0.973  first transaction in BR for this card
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from stream.contracts.settings import Settings, SettingsError
from stream.kafka import clients

__all__ = ["cli", "format_alert_row", "header_row", "tail"]

# Column widths of the table. Fixed, so that rows line up in a terminal that
# scrolls; long values are cut with an ellipsis rather than pushing the
# columns to the right.
_TIME_W = 19
_CARD_W = 16
_AMOUNT_W = 14
_WHERE_W = 10
_SCORE_W = 5
REASON_WIDTH = 60

# How long one poll may block: the loop checks --max, --timeout and the stop
# flag (Ctrl-C, SIGTERM) between polls, so this bounds the reaction time.
_POLL_MS = 200


def _fit(text: str, width: int, *, right: bool = False) -> str:
    """``text`` cut to ``width`` characters (ellipsis when cut), then padded.

    >>> _fit("abcdef", 4), _fit("ab", 4), _fit("ab", 4, right=True)
    ('abc…', 'ab  ', '  ab')
    """
    text = " ".join(str(text).split())  # newlines or tabs in a value would break the row
    if len(text) > width:
        text = text[: max(width - 1, 0)] + "…"
    return text.rjust(width) if right else text.ljust(width)


def _when(alert: Mapping[str, Any]) -> str:
    """Event time of the alerted transaction, UTC, to the second."""
    ms = alert.get("event_time")
    if isinstance(ms, (int, float)) and not isinstance(ms, bool):
        try:
            return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        except (OverflowError, OSError, ValueError):
            pass
    # Fall back on the transaction's own RFC 3339 stamp, shown as it is.
    stamp = _transaction(alert).get("timestamp")
    return str(stamp).replace("T", " ")[:_TIME_W] if stamp else "?"


def _transaction(alert: Mapping[str, Any]) -> Mapping[str, Any]:
    tx = alert.get("transaction")
    return tx if isinstance(tx, Mapping) else {}


def _amount(tx: Mapping[str, Any]) -> str:
    amount = tx.get("amount")
    currency = tx.get("currency") or ""
    try:
        shown = f"{float(amount):.2f}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        shown = "?" if amount is None else str(amount)
    return f"{shown} {currency}".strip()


def _score(alert: Mapping[str, Any]) -> str:
    try:
        return f"{float(alert['score']):.3f}"
    except (KeyError, TypeError, ValueError):
        return "?"


def _top_reason(alert: Mapping[str, Any]) -> str:
    """Text of the heaviest reason (the engine lists them heaviest first; ties keep that order)."""
    reasons = [r for r in alert.get("reasons") or [] if isinstance(r, Mapping)]
    if not reasons:
        return "-"

    def weight(r: Mapping[str, Any]) -> float:
        try:
            return float(r.get("weight", 0.0))
        except (TypeError, ValueError):
            return 0.0

    best = max(reasons, key=weight)  # max keeps the first of equals
    return str(best.get("text") or best.get("code") or "-")


def header_row(reason_width: int = REASON_WIDTH) -> str:
    """Column titles matching :func:`format_alert_row`.

    >>> header_row(reason_width=6)
    'TIME (UTC)           CARD                      AMOUNT  WHERE       SCORE  REASON'
    """
    return "  ".join([
        _fit("TIME (UTC)", _TIME_W),
        _fit("CARD", _CARD_W),
        _fit("AMOUNT", _AMOUNT_W, right=True),
        _fit("WHERE", _WHERE_W),
        _fit("SCORE", _SCORE_W, right=True),
        _fit("REASON", reason_width),
    ]).rstrip()


def format_alert_row(alert: Mapping[str, Any], reason_width: int = REASON_WIDTH) -> str:
    """One fixed-width table line for an alert record (``schemas/alerts.json``).

    Columns: event time (UTC), card, amount and currency, country/channel,
    score, and the top reason's text cut to ``reason_width``. Missing or
    malformed fields show as ``?`` so one odd record never stops the tail.

    >>> row = format_alert_row({"card_id": "a-card-id-much-longer-than-the-column", "score": 0.5,
    ...                         "transaction": {"timestamp": "2025-03-01T12:00:00.000Z", "amount": "12.5"},
    ...                         "reasons": [{"text": "small", "weight": 0.1},
    ...                                     {"text": "a very long reason", "weight": 2}]},
    ...                        reason_width=10)
    >>> row
    '2025-03-01 12:00:00  a-card-id-much-…           12.50  ?/?         0.500  a very lo…'
    >>> format_alert_row({}).split()
    ['?', '?', '?', '?/?', '?', '-']
    """
    tx = _transaction(alert)
    where = f"{tx.get('country') or '?'}/{tx.get('channel') or '?'}"
    return "  ".join([
        _fit(_when(alert), _TIME_W),
        _fit(str(alert.get("card_id", "?")), _CARD_W),
        _fit(_amount(tx), _AMOUNT_W, right=True),
        _fit(where, _WHERE_W),
        _fit(_score(alert), _SCORE_W, right=True),
        _fit(_top_reason(alert), reason_width),
    ]).rstrip()


def _decode(value: bytes | None) -> dict[str, Any] | None:
    """The alert object in a record value, or ``None`` when it is not one."""
    if value is None:
        return None
    try:
        obj = json.loads(value)
    except (UnicodeDecodeError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def tail(
    bootstrap_servers: str,
    topic: str,
    *,
    from_beginning: bool = False,
    as_json: bool = False,
    max_alerts: int | None = None,
    timeout_s: float | None = None,
    reason_width: int = REASON_WIDTH,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stop: threading.Event | None = None,
    settings: Settings | None = None,
) -> int:
    """Print alerts from ``topic`` until ``max_alerts``, ``timeout_s`` or ``stop``; return the exit status.

    ``stop`` lets a caller (the signal handlers in :func:`cli`, or a test)
    end the tail from elsewhere; it is checked between polls. The consumer
    uses the TLS / SASL options of ``settings`` (default: none), with
    ``bootstrap_servers`` in place of the settings' own.
    """
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    stop = threading.Event() if stop is None else stop
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    config: dict[str, Any] = {
        "group_id": None,  # no group: no commits, no rebalance with anyone
        "enable_auto_commit": False,
        "client_id": "fraudstream-alerts",
    }
    # An unreachable broker would otherwise hold the tail for the client's own
    # 30 s bootstrap wait, past --timeout (the option exists from kafka-python 2.1).
    if timeout_s is not None and clients.consumer_supports("bootstrap_timeout_ms"):
        config["bootstrap_timeout_ms"] = int(max(min(timeout_s, 30.0), 0.1) * 1000)
    try:
        settings = (settings or Settings()).replace(bootstrap_servers=bootstrap_servers)
        consumer = clients.consumer(settings, **config)
    except SettingsError as exc:
        print(f"fraudstream alerts: {exc}", file=err)
        return 2
    except KafkaError as exc:
        print(f"fraudstream alerts: cannot reach Kafka at {bootstrap_servers}: {exc}", file=err)
        return 2
    shown = 0
    try:
        def tell() -> None:
            print(f"waiting for topic {topic!r} to exist (is a worker running?)", file=err, flush=True)

        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        partitions = clients.wait_for_partitions(consumer, topic, remaining, stop=stop, on_wait=tell)
        if not partitions:
            if stop.is_set():
                return 0
            print(f"fraudstream alerts: topic {topic!r} not found on {bootstrap_servers}", file=err)
            return 2
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if from_beginning:
            consumer.seek_to_beginning(*tps)
        else:
            consumer.seek_to_end(*tps)
        print(f"tailing {topic!r} on {bootstrap_servers} ({len(tps)} partitions, "
              f"{'from the beginning' if from_beginning else 'new alerts only'}); Ctrl-C to stop",
              file=err, flush=True)
        if not as_json:
            print(header_row(reason_width), file=out, flush=True)
        while not stop.is_set():
            if max_alerts is not None and shown >= max_alerts:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            batch = consumer.poll(timeout_ms=_POLL_MS)
            # Partitions are read independently; ordering the batch by record
            # time keeps the table roughly chronological across them.
            records = sorted((r for rs in batch.values() for r in rs),
                             key=lambda r: (r.timestamp, r.partition, r.offset))
            for record in records:
                if max_alerts is not None and shown >= max_alerts:
                    break
                alert = _decode(record.value)
                if alert is None:
                    # Not an alert object: say where it is, keep stdout clean for --json.
                    print(f"skipped a record that is not a JSON object at {record.topic}[{record.partition}]"
                          f"@{record.offset}", file=err, flush=True)
                    continue
                if as_json:
                    line = json.dumps(alert, ensure_ascii=False, separators=(",", ":"))
                else:
                    line = format_alert_row(alert, reason_width)
                print(line, file=out, flush=True)
                shown += 1
    finally:
        consumer.close(autocommit=False)
    if max_alerts is not None and shown < max_alerts and not stop.is_set():
        return 1
    return 0


def _parser(defaults: Any) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraudstream alerts",
        description="Tail the alerts topic without joining a consumer group.",
    )
    parser.add_argument("--bootstrap-servers", default=defaults.bootstrap_servers,
                        help="Kafka bootstrap servers (default: FRAUDSTREAM_BOOTSTRAP_SERVERS, now %(default)s)")
    parser.add_argument("--topic", default=defaults.topic_alerts,
                        help="alerts topic (default: FRAUDSTREAM_TOPIC_ALERTS, now %(default)s)")
    parser.add_argument("--from-beginning", action="store_true",
                        help="start at the oldest alert kept instead of new alerts only")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of the table")
    parser.add_argument("--max", type=int, default=None, metavar="N", help="stop after N alerts")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="stop after S seconds (default: run until Ctrl-C)")
    parser.add_argument("--reason-width", type=int, default=REASON_WIDTH, metavar="W",
                        help="characters of the reason column (default: %(default)s)")
    return parser


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fraudstream alerts``; returns the exit status."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"fraudstream alerts: {exc}", file=sys.stderr)
        return 2
    args = _parser(settings).parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.max is not None and args.max < 1:
        print("fraudstream alerts: --max must be at least 1", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        # The first Ctrl-C (or SIGTERM) sets the flag the poll loop checks, so
        # the consumer is closed in an orderly way. A second one interrupts a
        # call that does not return to the loop (the client's wait for an
        # unreachable broker) and is answered below without a traceback.
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    # Signal handlers can only be installed from the main thread (not, e.g.,
    # in a test's thread); there the caller's own handling applies.
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        return tail(
            args.bootstrap_servers,
            args.topic,
            from_beginning=args.from_beginning,
            as_json=args.json,
            max_alerts=args.max,
            timeout_s=args.timeout,
            reason_width=max(args.reason_width, 1),
            stop=stop,
            settings=settings,
        )
    except BrokenPipeError:
        # `fraudstream alerts | head`: the reader left. Point stdout at
        # /dev/null so the interpreter's final flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("fraudstream alerts: interrupted", file=sys.stderr)
        return 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(cli())
