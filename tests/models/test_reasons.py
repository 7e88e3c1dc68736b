"""Reasons of entity features: each names the entity and the figure the feature holds, read back from the text."""

from __future__ import annotations

import math
import re

import pytest

from models.profile import EntityProfile
from models.profile_features import entity_feature_names, profile_features
from models.reasons import describe_feature, top_reasons
from stream.contracts.records import Transaction

HOUR = 3_600_000
DAY = 24 * HOUR


def breached_terminal() -> tuple[Transaction, dict[str, float]]:
    """A terminal with 6 earlier transactions of 6 cards, 3 of them confirmed fraud before the scored one."""
    p = EntityProfile()
    for i in range(6):
        p.observe(i * HOUR, 20.0, card=f"c{i}")
    for i in range(3):
        p.label(f"t{i}", i * HOUR, labelled_at_ms=DAY, fraud=True)
    at = 2 * DAY
    values = profile_features(p, at, card="c-new")
    t = Transaction("t9", "c-new", at, 20.0, "EUR", "T-17", "5411", "FR", "pos")
    return t, dict(zip(entity_feature_names("merchant_id"), values.values(), strict=True))


@pytest.mark.parametrize(("feature", "figure"), [
    ("merchant_fraud_7d", 3), ("merchant_fraud_30d", 3), ("merchant_n_30d", 6)])
def test_an_entity_reason_names_the_terminal_and_the_count_its_feature_holds(feature: str, figure: int) -> None:
    t, x = breached_terminal()
    text = describe_feature(feature, t, x[feature], low=feature == "merchant_n_30d")
    assert "terminal T-17" in text
    assert int(re.search(r"(\d+) transactions", text).group(1)) == figure


def test_fraud_rate_and_days_since_fraud_say_the_figures_they_hold() -> None:
    t, x = breached_terminal()
    assert "50.0% of the transactions at terminal T-17" in describe_feature("merchant_fraud_rate_30d", t,
                                                                            x["merchant_fraud_rate_30d"])
    days = float(re.search(r"only ([\d.]+) days", describe_feature(
        "merchant_days_since_fraud", t, x["merchant_days_since_fraud"], low=True)).group(1))
    assert days == pytest.approx((2 * DAY - 2 * HOUR) / DAY, abs=0.05)  # the newest fraud, two hours in
    assert math.isclose(x["merchant_is_new_card"], 1.0)


def test_only_inputs_that_pushed_the_score_up_become_reasons() -> None:
    t, x = breached_terminal()
    reasons = top_reasons(t, x, {"merchant_fraud_7d": 1.2, "merchant_is_new_card": -0.4, "merchant_cards_1d": 0.0})
    assert [r["code"] for r in reasons] == ["merchant_fraud_7d"]
