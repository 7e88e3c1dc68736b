"""Every figure of a ``fraudstream bench --repeat N`` run as its median and spread, and the README's table.

One run cannot tell the engine from the machine: on two shared cores the
same command has given an engine p99 from 0.8 to 2.6 times its floor's. So
each figure is taken from every repetition (ratios such as c/a within their
own repetition, then summarised) and reported as the median, the min-max and,
from four repetitions, the interquartile range.

The quartiles interpolate between the sorted values (:func:`statistics.quantiles`,
``method="inclusive"``, NumPy's default): with a handful of repetitions, a
nearest-rank quartile (as :func:`stream.tools.bench.bare.percentile` takes over
thousands of latencies) would just be one of the runs.

Run ``python -m stream.tools.bench.summary RESULTS.json`` to print the README's
table (:func:`markdown_table`) from a saved run.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["figures", "label", "main", "markdown_table", "median", "quartiles", "spread", "summarise", "summary_lines"]


def median(values: Sequence[float]) -> float:
    """The middle value; the mean of the two middle ones for an even count.

    >>> median([1, 2, 3, 10]), median([3, 1, 2]), median([7])
    (2.5, 2, 7)
    """
    if not values:
        raise ValueError("median of no values")
    return statistics.median(values)


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """The first and third quartiles, interpolated between the sorted values (needs two or more).

    >>> quartiles([1, 2, 3, 10])
    (1.75, 4.75)
    >>> quartiles([1, 2, 3, 4, 5])
    (2.0, 4.0)
    """
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def spread(values: Sequence[float]) -> dict[str, float]:
    """A figure over its repetitions: count, median, min, max and, from four values, the quartiles.

    >>> spread([10, 1, 3, 2])
    {'n': 4, 'median': 2.5, 'min': 1, 'max': 10, 'q1': 1.75, 'q3': 4.75}
    >>> spread([0.3, 0.2])
    {'n': 2, 'median': 0.25, 'min': 0.2, 'max': 0.3}
    """
    out: dict[str, float] = {"n": len(values), "median": median(values), "min": min(values), "max": max(values)}
    if len(values) >= 4:
        out["q1"], out["q3"] = quartiles(values)
    return out


def figures(run: dict[str, Any]) -> dict[str, float]:
    """One repetition's figures by name, in the order they are printed; figures the run lacks are left out.

    Ratios are this repetition's own (c/a: the engine's rate over the bare
    loop's measured beside it), so drift between repetitions cancels in them.

    >>> figures({"bare_aiokafka": {"events_per_s": 40000.0}, "ratio_engine_to_bare": 0.3,
    ...          "latency_floor": {"p99_ms": 50.0}, "latency": {"p99_ms": 60.0}})
    {'bare_per_s': 40000.0, 'c_over_a': 0.3, 'floor_p99_ms': 50.0, 'engine_p99_ms': 60.0, 'p99_engine_over_floor': 1.2}
    """
    out: dict[str, float | None] = {}

    def rate(key: str, part: dict[str, Any] | None) -> None:
        out[key] = part.get("events_per_s") if part else None

    rate("bare_per_s", run.get("bare_aiokafka"))
    rate("faust_per_s", run.get("faust_passthrough"))
    rate("plumbing_per_s", run.get("engine_plumbing"))
    for engine in run.get("engine", []):
        rate(f"engine_{engine['workers']}w_per_s", engine)
    rate("bare_after_per_s", run.get("bare_aiokafka_after"))
    for key, name in (("c_over_a", "ratio_engine_to_bare"), ("c_over_a_after", "ratio_engine_to_bare_after"),
                      ("c_over_b", "ratio_engine_to_faust"), ("c_over_b_prime", "ratio_engine_to_plumbing")):
        out[key] = run.get(name)
    us = run.get("us_per_event", {})
    for name in ("bare", "plumbing", "engine"):
        out[f"{name}_us"] = us.get(name)
    if "engine" in us and "plumbing" in us:
        out["engine_work_us"] = round(us["engine"] - us["plumbing"], 1)
    if run.get("engine"):
        one = min(run["engine"], key=lambda e: e["workers"])
        for stage, cost in one["stage_us_per_event"].items():
            out[f"stage_{stage}_us"] = cost
    floor, engine = run.get("latency_floor") or {}, run.get("latency") or {}
    for who, phase in (("floor", floor), ("engine", engine)):
        for q in ("p50", "p95", "p99"):
            out[f"{who}_{q}_ms"] = phase.get(f"{q}_ms")
    out["engine_in_batch_p99_ms"] = engine.get("in_batch_ms", {}).get("p99")
    if floor.get("p99_ms") and engine.get("p99_ms") is not None:
        out["p99_engine_over_floor"] = round(engine["p99_ms"] / floor["p99_ms"], 3)
    return {k: float(v) if isinstance(v, int) else v for k, v in out.items() if v is not None}


_LABELS = {
    "bare_per_s": "(a) bare aiokafka loop, events/s",
    "faust_per_s": "(b) Faust per-event pass-through, events/s",
    "plumbing_per_s": "(b′) the engine's plumbing, no work, events/s",
    "bare_after_per_s": "(a) again, after (c), events/s",
    "c_over_a": "c/a (1 worker)",
    "c_over_a_after": "c/a against (a) after (c)",
    "c_over_b": "c/b",
    "c_over_b_prime": "c/b′",
    "bare_us": "(a) µs per transaction",
    "plumbing_us": "(b′) µs per transaction",
    "engine_us": "(c) µs per transaction (1 worker)",
    "engine_work_us": "(c) − (b′): the engine's own work, µs per transaction",
    "engine_in_batch_p99_ms": "engine latency inside its micro-batch p99, ms",
    "p99_engine_over_floor": "engine p99 / floor p99",
}


def label(key: str) -> str:
    """What a figure is, as printed and in the table.

    >>> label("engine_2w_per_s"), label("stage_sequence_us"), label("floor_p99_ms")
    ('(c) engine, 2 workers, events/s', 'engine stage sequence, µs per transaction', 'latency floor p99, ms')
    """
    if key in _LABELS:
        return _LABELS[key]
    if key.startswith("engine_") and key.endswith("w_per_s"):
        count = int(key.removeprefix("engine_").removesuffix("w_per_s"))
        return f"(c) engine, {count} worker{'s' if count > 1 else ''}, events/s"
    if key.startswith("stage_"):
        return f"engine stage {key.removeprefix('stage_').removesuffix('_us')}, µs per transaction"
    who, q, _ = key.split("_")
    return f"{'latency floor' if who == 'floor' else 'engine latency'} {q}, ms"


def _fmt(key: str, value: float) -> str:
    """A figure's value as printed: events/s whole, ratios to 3 places, µs to 1, ms whole.

    >>> _fmt("bare_per_s", 46859.7), _fmt("c_over_a", 0.29), _fmt("stage_state_us", 16.04), _fmt("floor_p99_ms", 146.5)
    ('46,860', '0.290', '16.0', '146')
    """
    if key.endswith("_per_s"):
        return f"{value:,.0f}"
    if key.endswith("_us"):
        return f"{value:.1f}"
    if key.endswith("_ms"):
        return f"{value:.0f}"
    return f"{value:.3f}"


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Every figure any repetition has, as :func:`spread` over the repetitions that have it.

    >>> runs = [{"ratio_engine_to_bare": r} for r in (0.294, 0.276, 0.293, 0.321, 0.319)]
    >>> summarise(runs)["c_over_a"]["median"]
    0.294
    """
    values: dict[str, list[float]] = {}
    for run in runs:
        for key, value in figures(run).items():
            values.setdefault(key, []).append(value)
    return {key: spread(vals) for key, vals in values.items()}


def _row(key: str, s: dict[str, float], repetitions: int) -> tuple[str, str, str, str]:
    """A figure's label, median, min–max and IQR; a figure some repetitions lack says of how many it is.

    >>> _row("c_over_a", {"n": 2, "median": 0.3, "min": 0.2, "max": 0.4}, 3)
    ('c/a (1 worker) (2 of 3 repetitions)', '0.300', '0.200–0.400', '')
    """
    iqr = f"{_fmt(key, s['q1'])}–{_fmt(key, s['q3'])}" if "q1" in s else ""
    name = label(key) if s["n"] >= repetitions else f"{label(key)} ({s['n']:.0f} of {repetitions} repetitions)"
    return name, _fmt(key, s["median"]), f"{_fmt(key, s['min'])}–{_fmt(key, s['max'])}", iqr


def summary_lines(summary: dict[str, dict[str, float]]) -> list[str]:
    """Every figure's median, min-max and interquartile range, as ``fraudstream bench`` prints them at the end."""
    repetitions = int(max((s["n"] for s in summary.values()), default=0))
    rows = [("", "median", "min–max", "IQR"), *(_row(key, s, repetitions) for key, s in summary.items())]
    width = max(len(r[0]) for r in rows)
    return [f"{r[0]:<{width}}  {r[1]:>9}  {r[2]:>19}  {r[3]}".rstrip() for r in rows]


# The README's one table: throughputs, c/a, both latencies, their p99 ratio, and where the engine's time goes.
_README_SKIPS = ("bare_after_per_s", "c_over_a_after", "c_over_b", "bare_us", "plumbing_us", "engine_in_batch_p99_ms")


def markdown_table(results: dict[str, Any]) -> str:
    """The README's benchmark table: the command that produced it, then each figure's median and spread.

    >>> runs = [{"bare_aiokafka": {"events_per_s": v}, "ratio_engine_to_bare": r} for v, r in ((4e4, .3), (5e4, .2))]
    >>> print(markdown_table({"command": "fraudstream bench --repeat 2", "machine": {"cpus": 2}, "runs": runs}))
    `fraudstream bench --repeat 2`: median and min–max of 2 repetitions, 2 cores
    <BLANKLINE>
    | | median | min–max |
    |---|---|---|
    | (a) bare aiokafka loop, events/s | 45,000 | 40,000–50,000 |
    | c/a (1 worker) | 0.250 | 0.200–0.300 |
    """
    runs = results["runs"]
    summary = summarise(runs)
    quartered = len(runs) >= 4
    what = "median, min–max and interquartile range" if quartered else "median and min–max"
    lines = [f"`{results['command']}`: {what} of {len(runs)} repetitions, {results['machine']['cpus']} cores", "",
             "| | median | min–max | IQR |" if quartered else "| | median | min–max |",
             "|---|---|---|---|" if quartered else "|---|---|---|"]
    for key, s in summary.items():
        if key not in _README_SKIPS:
            cells = _row(key, s, len(runs)) if quartered else _row(key, s, len(runs))[:3]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Print the README's table from a saved run's JSON (``fraudstream bench --out``)."""
    print(markdown_table(json.loads(Path(argv[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
