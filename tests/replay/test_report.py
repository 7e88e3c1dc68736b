"""The report files: complete JSON, self-contained HTML with plots."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from replay.curves import compute_curves
from replay.evaluate import evaluate
from replay.report import format_headline, write_report

T0 = 1_735_689_600_000


@pytest.fixture
def scored() -> tuple[dict[str, Any], dict[str, Any]]:
    scores, labels = [], {}
    for i in range(60):
        fraud = i % 10 == 0
        s = 0.55 + i / 400 if fraud else (i % 7) / 14
        scores.append({
            "transaction_id": f"t{i}", "card_id": f"c{i % 13}", "event_time": T0 + (i % 3) * 86_400_000,
            "score": s, "components": {"online": s / 2, "sequence": 1 - s},
            "decision": "alert" if s >= 0.5 else "pass", "threshold": 0.5, "latency_ms": 2.0 + i % 9,
        })
        labels[f"t{i}"] = (1, "card_testing") if fraud else (0, "")
    return evaluate(scores, labels, k=3), compute_curves(scores, labels)


def test_writes_json_equal_to_the_result(tmp_path: Path, scored: tuple[dict[str, Any], dict[str, Any]]) -> None:
    result, curves = scored
    json_path, html_path = write_report(result, curves, tmp_path / "new" / "dir")
    assert json_path.name == "report.json" and html_path.name == "report.html"
    assert json.loads(json_path.read_text()) == result


def test_html_is_self_contained_with_plots(tmp_path: Path, scored: tuple[dict[str, Any], dict[str, Any]]) -> None:
    result, curves = scored
    _, html_path = write_report(result, curves, tmp_path)
    page = html_path.read_text()
    assert page.count("<svg") >= 5  # PR curve, 2 daily charts, score histograms, latency
    for heading in ("Precision-recall curve", "Daily metrics", "Fraud scenarios", "Scoring latency",
                    "Score components"):
        assert heading in page
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"(src|href)=", page)
    assert set(re.findall(r"https?://[^\s\"']+", page)) <= {"http://www.w3.org/2000/svg"}


def test_missing_curves_and_undefined_figures_still_render(tmp_path: Path) -> None:
    scores = [{"transaction_id": "t1", "card_id": "a", "event_time": T0, "score": 0.2, "decision": "pass"}]
    result = evaluate(scores, {"t1": 0})
    json_path, html_path = write_report(result, {}, tmp_path)
    assert json.loads(json_path.read_text())["overall"]["roc_auc"] is None
    assert "n/a" in html_path.read_text()


def test_headline_lists_the_key_figures(scored: tuple[dict[str, Any], dict[str, Any]]) -> None:
    result, _ = scored
    text = format_headline(result)
    assert "ROC AUC" in text
    assert "card precision@3 (daily mean)" in text
    assert "6 (10.00 %)" in text
