"""The experiment's scoreboard: each model's ranking figures on the test period, overall and per fraud scenario.

A scenario's figures are those of its frauds against *all* legitimate rows
(the other scenarios' frauds left out), so each line answers "how well would
this model find this kind of fraud among normal traffic". The figures are
ROC AUC, average precision and card precision@k as the Fraud-Detection-Handbook
reports it (the ``k`` best-scored cards of each day, averaged over the days;
:func:`replay.metrics.daily_card_precision_at_k`). A model's rows without a
score (NaN) are left out of its figures and counted in ``missing``.

Example:
    >>> import numpy as np
    >>> rows = Rows(y=np.array([0, 1, 0, 1]), scenario=np.array(["", "a", "", "b"]),
    ...             card=np.array(["c1", "c2", "c3", "c4"]), day=np.array([0, 0, 0, 0]))
    >>> board = scoreboard(rows, {"m": np.array([0.1, 0.9, 0.3, 0.2])}, k=1)
    >>> board["overall"]["m"]["roc_auc"], board["a"]["m"]["roc_auc"], board["b"]["m"]["roc_auc"]
    (0.75, 1.0, 0.5)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from replay.metrics import BoolArray, FloatArray, average_precision, daily_card_precision_at_k, roc_auc

__all__ = ["MODELS", "OVERALL", "Rows", "bars", "format_scoreboard", "scoreboard"]

#: The models the experiment compares, in the order it prints them.
MODELS: tuple[str, ...] = ("fused", "sequence", "online", "baseline_lr", "baseline_gbt")
OVERALL = "overall"
_FIGURES = (("roc_auc", "ROC AUC"), ("average_precision", "average precision"),
            ("card_precision_at_k", "card precision@{k}"))


@dataclass(frozen=True)
class Rows:
    """The scored period as parallel arrays: truth, scenario (``""`` when legitimate), card, day number."""

    y: npt.ArrayLike
    scenario: npt.ArrayLike
    card: npt.ArrayLike
    day: npt.ArrayLike


def _figures(y: BoolArray, s: FloatArray, card: npt.NDArray[Any], day: npt.NDArray[Any], k: int) -> dict[str, Any]:
    return {"n": int(y.size), "n_fraud": int(y.sum()), "roc_auc": roc_auc(y, s),
            "average_precision": average_precision(y, s),
            "card_precision_at_k": daily_card_precision_at_k(card, day, y, s, k)}


def scoreboard(rows: Rows, scores: Mapping[str, npt.ArrayLike], k: int = 100) -> dict[str, dict[str, Any]]:
    """``{group: {model: figures}}`` for ``overall`` and every fraud scenario present in ``rows``."""
    y = np.asarray(rows.y).astype(bool)
    scenario, card, day = np.asarray(rows.scenario), np.asarray(rows.card), np.asarray(rows.day)
    if not scenario.shape == card.shape == day.shape == y.shape:
        raise ValueError("rows: y, scenario, card and day must be equally long")
    legit = ~y
    groups = {OVERALL: np.ones(y.size, dtype=bool)}
    groups.update({name: legit | (scenario == name) for name in sorted(set(scenario[y].tolist()))})
    board: dict[str, dict[str, Any]] = {}
    for group, in_group in groups.items():
        board[group] = {}
        for model, values in scores.items():
            s = np.asarray(values, dtype=np.float64)
            if s.shape != y.shape:
                raise ValueError(f"scores of {model}: {s.shape[0] if s.ndim else 0} values for {y.size} rows")
            present = in_group & np.isfinite(s)
            board[group][model] = {**_figures(y[present], s[present], card[present], day[present], k),
                                   "missing": int((in_group & ~present).sum())}
    return board


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_scoreboard(board: Mapping[str, Mapping[str, Mapping[str, Any]]], k: int = 100) -> str:
    """The scoreboard as a Markdown table, one line per (group, model).

    >>> print(format_scoreboard({"overall": {"m": {"n": 4, "n_fraud": 2, "roc_auc": 0.75,
    ...                                          "average_precision": None, "card_precision_at_k": 0.5}}}))
    | fraud | model | frauds | ROC AUC | average precision | card precision@100 |
    |---|---|---|---|---|---|
    | overall | m | 2 | 0.750 | n/a | 0.500 |
    """
    header = ["fraud", "model", "frauds"] + [label.format(k=k) for _, label in _FIGURES]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group, models in board.items():
        for model, fig in models.items():
            cells = [group, model, str(fig["n_fraud"])] + [_fmt(fig[key]) for key, _ in _FIGURES]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bars(board: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, bool | None]:
    """Issue 32's bars on this board; ``None`` where a model or figure needed for one is missing.

    * ``compromised_terminal_auc``: the fused score's ROC AUC on breached terminals is at least 0.85;
    * ``fused_ap_vs_baseline``: its average precision is at least the gradient-boosted baseline's;
    * ``fused_ap_vs_components``: and at least that of each of its components (sequence, online).

    >>> bars({"overall": {"fused": {"average_precision": 0.5}, "baseline_gbt": {"average_precision": 0.4},
    ...                   "sequence": {"average_precision": 0.6}}})
    {'compromised_terminal_auc': None, 'fused_ap_vs_baseline': True, 'fused_ap_vs_components': False}
    """
    overall = board.get(OVERALL, {})

    def ap(model: str) -> float | None:
        value = overall.get(model, {}).get("average_precision")
        return None if value is None else float(value)

    fused = ap("fused")
    terminal = board.get("compromised_terminal", {}).get("fused", {}).get("roc_auc")
    gbt = ap("baseline_gbt")
    components = [v for v in (ap("sequence"), ap("online")) if v is not None]
    return {
        "compromised_terminal_auc": None if terminal is None else terminal >= 0.85,
        "fused_ap_vs_baseline": None if fused is None or gbt is None else fused >= gbt,
        "fused_ap_vs_components": None if fused is None or not components else fused >= max(components),
    }
