"""The reasons of each fraud scenario's alerts are the ones an analyst would expect of that scenario.

Trees (:class:`models.trees.TreeModel`, as the engine refits them) are fitted
on the first 20 of 30 generated days, on the labels known by then (fraud
known two days after the transaction), and score the last 10 days; reasons
come from their TreeSHAP shares and the card's history, as in the scoring
core. Per scenario of :data:`replay.generate.SCENARIOS`, its ten
highest-scored transactions (the first an analyst would see of it) are read.
A compromised card's inflated amounts score lowest of the five (its ten are
not all above the 0.5 threshold), so it is held to a majority, not to all ten.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from models.reasons import top_reasons
from models.trees import ExampleWindow, TreeModel
from replay.generate import SCENARIOS
from tests.models.reasons_data import DAY_MS, LABEL_DELAY_MS, NAMES, traffic

#: What each scenario looks like to a person (replay.scenarios), as reason codes.
TESTING = {"small_amounts_1h", "amount_below_usual", "count_1h", "short_gap"}  # many tiny attempts, seconds apart
BURST_OR_ABROAD = {"spend_24h", "count_1h", "count_24h", "short_gap", "foreign_country", "new_country", "new_merchant"}
INFLATED = {"amount_above_usual", "spend_24h"}


@pytest.fixture(scope="module")
def alerts() -> dict[str, list[list[dict[str, Any]]]]:
    """Per scenario, the reasons of its ten highest-scored transactions of the test period, highest first."""
    d = traffic(40_000, seed=3)
    cutoff = int(d.ts[0]) + 20 * DAY_MS
    window = ExampleWindow(NAMES, window_ms=10**12, max_examples=10**6)
    for i in np.flatnonzero(d.ts + LABEL_DELAY_MS <= cutoff):
        window.add(d.inputs[i], int(d.fraud[i]), int(d.ts[i]))
    trees = TreeModel.fit(window, rounds=100)
    test = np.flatnonzero(d.ts >= cutoff)
    scores = trees.predict_matrix(d.inputs[test])
    out: dict[str, list[list[dict[str, Any]]]] = {}
    for scenario in SCENARIOS:
        mine = d.scenario[test] == scenario
        top = test[mine][np.argsort(-scores[mine], kind="stable")[:10]]
        shares = trees.contributions(d.inputs[top])
        out[scenario] = [top_reasons(d.transactions[i], d.features(i), dict(zip(NAMES, s.tolist(), strict=True)),
                                     d.priors[i]) for i, s in zip(top, shares, strict=True)]
    return out


def firsts(reasons: list[list[dict[str, Any]]]) -> list[str | None]:
    return [r[0]["code"] if r else None for r in reasons]


def test_every_scenario_has_ten_alerts_with_reasons_that_pushed_their_scores_up(alerts) -> None:
    assert set(alerts) == set(SCENARIOS)
    for reasons in alerts.values():
        assert len(reasons) == 10 and all(r and all(x["weight"] > 0 for x in r) for r in reasons)


def test_a_large_amount_is_explained_by_the_amount_against_the_card_s_median(alerts) -> None:
    assert firsts(alerts["large_amount"]) == ["amount_above_usual"] * 10
    assert all(r[0]["values"]["ratio"] >= 8 for r in alerts["large_amount"])  # the scenario's 8-40x the median


def test_a_breached_terminal_is_explained_by_the_terminal_s_confirmed_fraud(alerts) -> None:
    """First the terminal's confirmed fraud: its frauds of the last 30 days, or the share of its recent verdicts."""
    terminal = {"merchant_confirmed_fraud", "merchant_fraud_verdicts"}
    assert set(firsts(alerts["compromised_terminal"])) <= terminal
    assert all(x["values"]["fraud_share_7d"] >= 0.5 for r in alerts["compromised_terminal"] for x in r
               if x["code"] == "merchant_fraud_verdicts")


def test_card_testing_is_explained_by_the_tiny_attempts(alerts) -> None:
    """The probes by their tiny amounts and pace; the large purchase after them by its amount, then the probes."""
    assert set(firsts(alerts["card_testing"])) <= TESTING | {"amount_above_usual"}
    assert all(TESTING & {x["code"] for x in r} for r in alerts["card_testing"])


def test_an_account_takeover_is_explained_by_its_burst_abroad_and_its_amounts(alerts) -> None:
    assert set(firsts(alerts["account_takeover"])) <= BURST_OR_ABROAD | {"amount_above_usual", "card_not_present"}
    assert sum(bool(BURST_OR_ABROAD & {x["code"] for x in r}) for r in alerts["account_takeover"]) >= 8


def test_a_compromised_card_is_explained_by_its_inflated_amounts(alerts) -> None:
    assert sum(code in INFLATED for code in firsts(alerts["compromised_card"])) >= 7
    assert all(INFLATED & {x["code"] for x in r} for r in alerts["compromised_card"])
