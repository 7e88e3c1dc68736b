"""The evaluation report: ``report.json`` with every figure, ``report.html`` to read.

The HTML page is self-contained (inline CSS and hand-drawn SVG, no scripts,
no network), so it can be mailed or archived as is. It shows the headline
figures, the precision-recall curve, the daily metrics, the score
distribution of each fraud scenario, and the scoring latency.

``result`` is what :func:`replay.evaluate.evaluate` returns; ``curves`` what
:func:`replay.curves.compute_curves` returns (keys ``pr``,
``components_pr``, ``score_hist``, ``latency_hist``; any may be missing, and
that plot is then left out).

Example:
    >>> result = {"params": {"k": 100, "alert_rate": 0.01}, "overall": {
    ...     "n": 2000, "n_fraud": 15, "roc_auc": 0.9123, "average_precision": 0.41,
    ...     "card_precision_at_k": 0.12, "recall_at_alert_rate": 0.6, "alerts": 30,
    ...     "precision_at_threshold": 0.3, "recall_at_threshold": 0.6, "threshold": 0.5,
    ...     "latency_ms": {"p50": 4.0, "p95": 9.5, "p99": None}}}
    >>> print(format_headline(result))
    transactions scored              2,000
    fraud                            15 (0.75 %)
    ROC AUC                          0.912
    average precision                0.410
    card precision@100 (daily mean)  0.120
    recall at 1.0 % alert rate       60.0 %
    alerts at threshold 0.5          30
    precision / recall at threshold  30.0 % / 60.0 %
    latency p50 / p95 / p99          4.0 / 9.5 / n/a ms
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["format_headline", "headline_rows", "write_report"]

_NA = "n/a"
_PALETTE = ("#1f5fa8", "#d9730d", "#2e8540", "#b3261e", "#6f42c1", "#8a6d3b", "#0b7285", "#5f6b7a")


# --------------------------------------------------------------------------
# Numbers as text
# --------------------------------------------------------------------------


def _num(value: float | None, digits: int = 3) -> str:
    return _NA if value is None else f"{value:.{digits}f}"


def _pct(value: float | None, digits: int = 1) -> str:
    return _NA if value is None else f"{100 * value:.{digits}f} %"


def _ms(latency: dict[str, float | None]) -> str:
    return " / ".join(_num(latency.get(p), 1) for p in ("p50", "p95", "p99")) + " ms"


def headline_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The figures a fraud analyst looks at first, as (label, text) pairs."""
    params = result.get("params", {})
    o = result["overall"]
    n, n_fraud = o["n"], o["n_fraud"]
    threshold = o.get("threshold")
    return [
        ("transactions scored", f"{n:,}"),
        ("fraud", f"{n_fraud:,} ({_pct(n_fraud / n if n else None, 2)})"),
        ("ROC AUC", _num(o["roc_auc"])),
        ("average precision", _num(o["average_precision"])),
        (f"card precision@{params.get('k', '?')} (daily mean)", _num(o["card_precision_at_k"])),
        (f"recall at {_pct(params.get('alert_rate'))} alert rate", _pct(o["recall_at_alert_rate"])),
        (f"alerts at threshold {_NA if threshold is None else f'{threshold:g}'}", f"{o.get('alerts', 0):,}"),
        ("precision / recall at threshold",
         f"{_pct(o.get('precision_at_threshold'))} / {_pct(o.get('recall_at_threshold'))}"),
        ("latency p50 / p95 / p99", _ms(o.get("latency_ms", {}))),
    ]


def format_headline(result: dict[str, Any]) -> str:
    """:func:`headline_rows` as an aligned plain-text table."""
    rows = headline_rows(result)
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(f"{label:<{width}}{text}" for label, text in rows)


# --------------------------------------------------------------------------
# SVG drawing
# --------------------------------------------------------------------------


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _tick_text(value: float) -> str:
    return f"{value:g}"


class _Chart:
    """A plot area mapping data coordinates to SVG pixels."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float],
                 width: int = 640, height: int = 280) -> None:
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = 56, width - 16, 14, height - 42
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.parts: list[str] = []

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (value - self.x0) / span * (self.right - self.left)

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.bottom - (value - self.y0) / span * (self.bottom - self.top)

    def axes(self, x_label: str, y_label: str, x_ticks: Sequence[tuple[float, str]] | None = None) -> None:
        ticks = x_ticks if x_ticks is not None else [(v, _tick_text(v)) for v in _nice_ticks(self.x0, self.x1)]
        for value in _nice_ticks(self.y0, self.y1):
            y = self.y(value)
            self.parts.append(f'<line x1="{self.left}" x2="{self.right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
            self.parts.append(f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end">{_tick_text(value)}</text>')
        for value, text in ticks:
            x = self.x(value)
            self.parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.bottom}" y2="{self.bottom + 4}" '
                              'class="axis"/>')
            self.parts.append(f'<text x="{x:.1f}" y="{self.bottom + 17}" text-anchor="middle">'
                              f'{html.escape(text)}</text>')
        self.parts.append(f'<line x1="{self.left}" x2="{self.right}" y1="{self.bottom}" y2="{self.bottom}" '
                          'class="axis"/>')
        self.parts.append(f'<line x1="{self.left}" x2="{self.left}" y1="{self.top}" y2="{self.bottom}" class="axis"/>')
        self.parts.append(f'<text x="{(self.left + self.right) / 2:.1f}" y="{self.height - 6}" '
                          f'text-anchor="middle" class="label">{html.escape(x_label)}</text>')
        self.parts.append(f'<text transform="translate(14 {(self.top + self.bottom) / 2:.1f}) rotate(-90)" '
                          f'text-anchor="middle" class="label">{html.escape(y_label)}</text>')

    def line(self, xs: Sequence[float], ys: Sequence[float | None], color: str, dashed: bool = False) -> None:
        """A polyline, broken where ``ys`` is ``None``; lone points get a dot."""
        segment: list[str] = []
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        for x, y in [*zip(xs, ys, strict=True), (math.nan, None)]:
            if y is not None:
                segment.append(f"{self.x(x):.1f},{self.y(y):.1f}")
                continue
            if len(segment) == 1:
                cx, cy = segment[0].split(",")
                self.parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{color}"/>')
            elif segment:
                self.parts.append(f'<polyline points="{" ".join(segment)}" fill="none" stroke="{color}" '
                                  f'stroke-width="2"{dash}/>')
            segment = []

    def bar(self, x_from: float, x_to: float, value: float, color: str, tip: str) -> None:
        x, y = self.x(x_from), self.y(value)
        width = max(self.x(x_to) - x - 1, 1)
        self.parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{self.bottom - y:.1f}" '
                          f'fill="{color}"><title>{html.escape(tip)}</title></rect>')

    def marker(self, x_value: float, color: str, text: str, row: int = 0) -> None:
        """A dashed vertical line; ``row`` staggers labels of nearby markers."""
        x = self.x(x_value)
        self.parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.top}" y2="{self.bottom}" stroke="{color}" '
                          f'stroke-dasharray="3 3"/>')
        self.parts.append(f'<text x="{x + 3:.1f}" y="{self.top + 10 + 13 * row}" fill="{color}">'
                          f'{html.escape(text)}</text>')

    def point(self, x_value: float, y_value: float, color: str, tip: str) -> None:
        self.parts.append(f'<circle cx="{self.x(x_value):.1f}" cy="{self.y(y_value):.1f}" r="5" fill="none" '
                          f'stroke="{color}" stroke-width="2"><title>{html.escape(tip)}</title></circle>')

    def svg(self, title: str) -> str:
        return (f'<svg viewBox="0 0 {self.width} {self.height}" width="{self.width}" height="{self.height}" '
                f'role="img" aria-label="{html.escape(title)}" xmlns="http://www.w3.org/2000/svg">'
                + "".join(self.parts) + "</svg>")


def _legend(items: Sequence[tuple[str, str]]) -> str:
    return '<p class="legend">' + "".join(
        f'<span><i style="background:{color}"></i>{html.escape(name)}</span>' for name, color in items
    ) + "</p>"


# --------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _headline_section(result: dict[str, Any]) -> str:
    cov = result.get("coverage", {})
    note = ""
    if cov:
        note = (f'<p class="note">{cov.get("joined", 0):,} transactions with both a score and a label; '
                f'{cov.get("unscored_labels", 0):,} labelled transactions were never scored, '
                f'{cov.get("unlabelled_scores", 0):,} scores had no label')
        if cov.get("excluded_known_compromised"):
            note += f'; {cov["excluded_known_compromised"]:,} rows of already-known compromised cards excluded'
        note += ".</p>"
    return "<h2>Headline</h2>" + _table(("figure", "value"), headline_rows(result)) + note


def _pr_section(curves: dict[str, Any], result: dict[str, Any]) -> str:
    pr = curves.get("pr")
    if not pr or not pr.get("recall"):
        return ""
    chart = _Chart((0.0, 1.0), (0.0, 1.0))
    chart.axes("recall (share of fraud caught)", "precision (share of alerts that are fraud)")
    legend = [(f"fused score (AP {_num(result['overall']['average_precision'])})", _PALETTE[0])]
    chart.line(pr["recall"], pr["precision"], _PALETTE[0])
    comp_ap = {name: c["overall"]["average_precision"] for name, c in result.get("components", {}).items()}
    for i, (name, curve) in enumerate(sorted(curves.get("components_pr", {}).items()), start=1):
        color = _PALETTE[i % len(_PALETTE)]
        chart.line(curve["recall"], curve["precision"], color, dashed=True)
        legend.append((f"{name} (AP {_num(comp_ap.get(name))})", color))
    o = result["overall"]
    if o.get("precision_at_threshold") is not None and o.get("recall_at_threshold") is not None:
        chart.point(o["recall_at_threshold"], o["precision_at_threshold"], "#333",
                    f"engine threshold {o.get('threshold')}: precision {_pct(o['precision_at_threshold'])}, "
                    f"recall {_pct(o['recall_at_threshold'])}")
        legend.append(("engine's threshold (circle)", "#333"))
    return ("<h2>Precision-recall curve</h2><p>Each point is an alert threshold: how much fraud is caught and "
            "how many alerts are worth an analyst's time.</p>" + chart.svg("precision-recall curve") + _legend(legend))


def _day_ticks(days: Sequence[str]) -> list[tuple[float, str]]:
    step = max(1, math.ceil(len(days) / 8))
    return [(float(i), d[5:]) for i, d in enumerate(days) if i % step == 0]


def _daily_section(result: dict[str, Any]) -> str:
    per_day = result.get("per_day", [])
    if not per_day:
        return ""
    days = [d["day"] for d in per_day]
    xs = [float(i) for i in range(len(days))]
    x_range = (-0.5, len(days) - 0.5)
    k = result.get("params", {}).get("k", "k")
    metrics = (("roc_auc", "ROC AUC"), ("average_precision", "average precision"),
               ("card_precision_at_k", f"card precision@{k}"))
    quality = _Chart(x_range, (0.0, 1.0))
    quality.axes("day (UTC)", "metric", _day_ticks(days))
    for (key, _), color in zip(metrics, _PALETTE, strict=False):
        quality.line(xs, [d[key] for d in per_day], color)
    volume = _Chart(x_range, (0.0, max(max(d["alerts"], d["n_fraud"]) for d in per_day) * 1.1 or 1.0))
    volume.axes("day (UTC)", "transactions", _day_ticks(days))
    for x, d in zip(xs, per_day, strict=True):
        volume.bar(x - 0.4, x, d["n_fraud"], _PALETTE[3], f"{d['day']}: {d['n_fraud']:,} fraud")
        volume.bar(x, x + 0.4, d["alerts"], _PALETTE[0], f"{d['day']}: {d['alerts']:,} alerts")
    rows = [(d["day"], f"{d['n']:,}", f"{d['n_fraud']:,}", f"{d['alerts']:,}", _num(d["roc_auc"]),
             _num(d["average_precision"]), _num(d["card_precision_at_k"]), _pct(d["recall_at_alert_rate"]))
            for d in per_day]
    header = ("day", "transactions", "fraud", "alerts", "ROC AUC", "avg precision", f"card prec@{k}",
              "recall@rate")
    return ("<h2>Daily metrics</h2>" + quality.svg("daily metrics") + _legend([(name, color) for (_, name), color
                                                                              in zip(metrics, _PALETTE,
                                                                                     strict=False)])
            + "<h3>Fraud and alerts per day</h3>" + volume.svg("fraud and alerts per day")
            + _legend([("fraud", _PALETTE[3]), ("alerts", _PALETTE[0])])
            + "<details><summary>Daily table</summary>" + _table(header, rows) + "</details>")


def _scenario_section(result: dict[str, Any], curves: dict[str, Any]) -> str:
    per_scenario = result.get("per_scenario", {})
    rows = [(name, f"{s['n']:,}", _pct(s["detected_share_at_threshold"]), _num(s["mean_score"]))
            for name, s in per_scenario.items()]
    out = ("<h2>Fraud scenarios</h2><p>Share alerted at the engine's threshold (for legit rows: the "
           "false-positive rate) and the score distribution of each scenario. Each histogram shows "
           "shares of its own rows, so small scenarios stay visible.</p>"
           + _table(("scenario", "transactions", "alerted", "mean score"), rows))
    hist = curves.get("score_hist")
    if not hist or not hist.get("counts"):
        return out
    edges = hist["edges"]
    threshold = result.get("overall", {}).get("threshold")
    panels = []
    for i, (name, counts) in enumerate(hist["counts"].items()):
        total = sum(counts) or 1
        shares = [c / total for c in counts]
        chart = _Chart((edges[0], edges[-1]), (0.0, max(max(shares) * 1.1, 0.05)), width=320, height=200)
        chart.axes("score", "share of rows")
        color = _PALETTE[0] if name == "legit" else _PALETTE[3 + i % 4]
        for lo, hi, share, count in zip(edges[:-1], edges[1:], shares, counts, strict=True):
            chart.bar(lo, hi, share, color, f"{lo:.2f}-{hi:.2f}: {count:,} rows")
        if threshold is not None:
            chart.marker(threshold, "#333", "threshold")
        panels.append(f'<figure><figcaption>{html.escape(name)} ({sum(counts):,})</figcaption>'
                      f'{chart.svg(f"score distribution: {name}")}</figure>')
    return out + '<div class="panels">' + "".join(panels) + "</div>"


def _latency_section(result: dict[str, Any], curves: dict[str, Any]) -> str:
    hist = curves.get("latency_hist")
    if not hist or not hist.get("counts"):
        return ""
    edges, counts = hist["edges"], hist["counts"]
    chart = _Chart((edges[0], edges[-1]), (0.0, max(counts) * 1.1 or 1.0))
    chart.axes("latency, ms (Kafka timestamp of the transaction to score produced)", "score records")
    for lo, hi, count in zip(edges[:-1], edges[1:], counts, strict=True):
        chart.bar(lo, hi, count, _PALETTE[0], f"{lo:.1f}-{hi:.1f} ms: {count:,}")
    latency = result.get("overall", {}).get("latency_ms", {})
    colors = (_PALETTE[2], _PALETTE[1], _PALETTE[3])
    for row, ((name, value), color) in enumerate(zip(latency.items(), colors, strict=False)):
        if value is not None:
            chart.marker(value, color, f"{name} {value:.1f}", row)
    return ("<h2>Scoring latency</h2><p>p50 / p95 / p99: " + html.escape(_ms(latency))
            + ". The last bar also holds the slowest 0.1 %.</p>" + chart.svg("latency histogram"))


def _components_section(result: dict[str, Any]) -> str:
    components = result.get("components", {})
    if not components:
        return ""
    k = result.get("params", {}).get("k", "k")
    rows = [(name, f"{c['overall']['n']:,}", _num(c["overall"]["roc_auc"]), _num(c["overall"]["average_precision"]),
             _num(c["overall"]["card_precision_at_k"]), _pct(c["overall"]["recall_at_alert_rate"]))
            for name, c in components.items()]
    overall = result["overall"]
    rows.insert(0, ("fused score", f"{overall['n']:,}", _num(overall["roc_auc"]), _num(overall["average_precision"]),
                    _num(overall["card_precision_at_k"]), _pct(overall["recall_at_alert_rate"])))
    return ("<h2>Score components</h2><p>How each model ranks the same transactions on its own.</p>"
            + _table(("score", "transactions", "ROC AUC", "avg precision", f"card prec@{k}", "recall@rate"), rows))


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d2330;max-width:1000px;margin:24px auto;
padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #dde1e8}
h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 12px;border-bottom:1px solid #eef0f4;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f4f6f9}
svg{max-width:100%;height:auto}svg text{font-size:11px;fill:#444}svg text.label{font-size:12px;fill:#222}
.grid{stroke:#e6e9ef}.axis{stroke:#888}.note,.legend{color:#555}
.legend span{margin-right:16px}.legend i{display:inline-block;width:12px;height:12px;margin-right:5px;
vertical-align:-1px}
.panels{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0}figcaption{font-weight:600}
"""


def _html(result: dict[str, Any], curves: dict[str, Any]) -> str:
    params = result.get("params", {})
    protocol = ("cards are dropped on the days after their first fraud (known compromised)"
                if params.get("exclude_known_compromised") else "all scored transactions are counted")
    sections = (
        _headline_section(result),
        _pr_section(curves, result),
        _daily_section(result),
        _scenario_section(result, curves),
        _latency_section(result, curves),
        _components_section(result),
    )
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>fraudstream detection report"
            f"</title><style>{_STYLE}</style></head><body><h1>fraudstream detection report</h1>"
            f'<p class="note">Protocol: {html.escape(protocol)}. Every figure is also in report.json.</p>'
            + "".join(sections) + "</body></html>\n")


def _jsonable(value: Any) -> Any:
    # NaN and infinity are not JSON; an undefined figure is null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_report(result: dict[str, Any], curves: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` (``result``) and ``report.html`` into ``out_dir``.

    Returns the two paths, JSON first.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "report.json", out / "report.html"
    json_path.write_text(json.dumps(_jsonable(result), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    html_path.write_text(_html(result, curves), encoding="utf-8")
    return json_path, html_path
