"""Alert reasons in words an analyst understands.

A reason is an input whose contribution pushed the score up; the text is
written from the transaction and the feature's value, not the model's jargon.

Example:
    >>> from stream.contracts.records import Transaction
    >>> t = Transaction("t1", "c1", 1_740_830_400_000, 950.0, "EUR", "m", "5732", "BR", "ecom")
    >>> f = {"n_1h": 4.0, "is_new_country": 1.0, "amount_ratio_max": 2.3}
    >>> top_reasons(t, f, {"n_1h": 0.2, "is_new_country": 1.4, "amount_ratio_max": 0.9}, limit=2)
    [{'code': 'is_new_country', 'text': 'first transaction in BR for this card', 'weight': 1.4}, {'code': 'amount_ratio_max', 'text': 'amount 950.00 EUR is 10.0x the largest in the card history', 'weight': 0.9}]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from models.profile_features import PROFILE_FEATURES, entity_feature_names
from stream.contracts.records import Transaction
from stream.contracts.settings import ENTITY_FIELDS

__all__ = ["describe_feature", "top_reasons"]

_Text = Callable[[Transaction, float], str]


def _gap(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


_TEMPLATES: dict[str, _Text] = {
    "log_amount": lambda t, v: f"large amount: {t.amount:.2f} {t.currency}",
    "amount_z": lambda t, v: f"amount far above this card's usual ({v:+.1f} standard deviations)",
    "amount_ratio_max": lambda t, v: f"amount {t.amount:.2f} {t.currency} is {math.exp(v):.1f}x the largest in the card history",
    "n_1h": lambda t, v: f"{v:.0f} transactions on this card in the hour before",
    "n_24h": lambda t, v: f"{v:.0f} transactions on this card in the 24 h before",
    "n_7d": lambda t, v: f"{v:.0f} transactions on this card in the 7 days before",
    "log_sum_24h": lambda t, v: f"{math.expm1(v):.2f} spent on this card in the 24 h before",
    "log_gap_prev": lambda t, v: f"only {_gap(math.expm1(v))} since the previous transaction",
    "n_small_1h": lambda t, v: f"{v:.0f} tiny amount{'s' if v != 1 else ''} in the hour before (card-testing pattern)",
    "is_new_merchant": lambda t, v: f"first transaction at merchant {t.merchant_id or '(unknown)'}",
    "is_new_mcc": lambda t, v: f"first purchase in category MCC {t.mcc}",
    "is_new_country": lambda t, v: f"first transaction in {t.country} for this card",
    "is_new_channel": lambda t, v: f"first {t.channel} transaction for this card",
    "is_foreign": lambda t, v: f"outside the card's usual country ({t.country})",
    "log_history_len": lambda t, v: f"card has little history ({math.expm1(v):.0f} earlier transactions)",
    "hour_sin": lambda t, v: f"unusual time of day ({(t.event_time_ms // 3_600_000) % 24:02d}:00 UTC)",
    "hour_cos": lambda t, v: f"unusual time of day ({(t.event_time_ms // 3_600_000) % 24:02d}:00 UTC)",
    "is_ecom": lambda t, v: "card-not-present (e-commerce) transaction",
    "sequence_logit": lambda t, v: f"sequence model: this card's recent pattern resembles fraud (p={1 / (1 + math.exp(-v)):.2f})",
}


# When a feature raises the score by being *below* its usual level, the text
# says so ("a dormant card"), rather than "0 transactions before" as a reason.
_LOW_TEMPLATES: dict[str, _Text] = {
    "log_amount": lambda t, v: f"unusually small amount: {t.amount:.2f} {t.currency}",
    "amount_z": lambda t, v: f"amount well below this card's usual ({v:+.1f} standard deviations)",
    "amount_ratio_max": lambda t, v: "amount small compared with the card history",
    "n_1h": lambda t, v: "first transaction on this card for over an hour",
    "n_24h": lambda t, v: "first transaction on this card for over a day",
    "n_7d": lambda t, v: "card dormant for the week before",
    "log_sum_24h": lambda t, v: "nothing spent on this card in the 24 h before",
    "log_gap_prev": lambda t, v: f"first transaction for {_gap(math.expm1(v))}",
    "log_history_len": lambda t, v: f"card has little history ({math.expm1(v):.0f} earlier transactions)",
    "sequence_logit": lambda t, v: f"sequence model: this card's recent pattern (p={1 / (1 + math.exp(-v)):.2f})",
}


def _entity_templates() -> tuple[dict[str, _Text], dict[str, _Text]]:
    """Reasons for every entity kind's features (:mod:`models.profile_features`), naming the entity.

    Counts are ``log1p``-ed in the inputs, so the text shows ``expm1`` of the value.
    """
    high: dict[str, _Text] = {}
    low: dict[str, _Text] = {}
    for field in ENTITY_FIELDS:
        kind_high, kind_low = _kind_templates(field)
        high.update(kind_high)
        low.update(kind_low)
    return high, low


def _kind_templates(field: str) -> tuple[dict[str, _Text], dict[str, _Text]]:
    word = {"merchant_id": "terminal", "device_id": "device", "ip": "IP", "account_id": "account",
            "card_id": "card"}[field]

    def who(t: Transaction) -> str:
        return f"{word} {getattr(t, field) or '(none)'}"

    names = dict(zip(PROFILE_FEATURES, entity_feature_names(field), strict=True))
    high: dict[str, _Text] = {
        names["n_1h"]: lambda t, v: f"{math.expm1(v):.0f} transactions at {who(t)} in the hour before",
        names["n_1d"]: lambda t, v: f"{math.expm1(v):.0f} transactions at {who(t)} in the 24 h before",
        names["cards_1d"]: lambda t, v: f"{math.expm1(v):.0f} different cards at {who(t)} in the 24 h before",
        names["new_card_share_1d"]: lambda t, v: (
            f"{v:.0%} of the transactions at {who(t)} in the 24 h before came from cards new to it"),
        names["is_new_card"]: lambda t, v: f"first transaction of this card at {who(t)}",
        names["fraud_7d"]: lambda t, v: (
            f"{math.expm1(v):.0f} transactions at {who(t)} in the 7 days before already confirmed fraud"),
        names["fraud_30d"]: lambda t, v: (
            f"{math.expm1(v):.0f} transactions at {who(t)} in the 30 days before already confirmed fraud"),
        names["fraud_rate_30d"]: lambda t, v: (
            f"{v:.1%} of the transactions at {who(t)} in the 30 days before are confirmed fraud"),
    }
    low: dict[str, _Text] = {
        names["days_since_fraud"]: lambda t, v: f"confirmed fraud at {who(t)} only {math.expm1(v):.1f} days before",
        names["n_30d"]: lambda t, v: (
            f"{who(t)} had little traffic in the 30 days before ({math.expm1(v):.0f} transactions)"),
    }
    return high, low


_ENTITY_HIGH, _ENTITY_LOW = _entity_templates()
_TEMPLATES.update(_ENTITY_HIGH)
_LOW_TEMPLATES.update(_ENTITY_LOW)


def describe_feature(name: str, transaction: Transaction, value: float, low: bool = False) -> str:
    """One sentence for one input; ``low`` when the input is below its usual level.

    Binary flags only ever speak when set. Unknown names fall back to ``name = value``.
    """
    if low:
        template = _LOW_TEMPLATES.get(name)
        if template is None:
            return ""
        return template(transaction, value)
    template = _TEMPLATES.get(name)
    return template(transaction, value) if template else f"{name} = {value:.3g}"


def top_reasons(
    transaction: Transaction,
    features: Mapping[str, float],
    contributions: Mapping[str, float],
    limit: int = 3,
    below_usual: Mapping[str, bool] | None = None,
) -> list[dict[str, Any]]:
    """The ``limit`` inputs that pushed the score up most, as analyst text.

    ``below_usual[name]`` says the input raised the score by being lower than
    usual (its standardised value is negative).
    """
    below = below_usual or {}
    ranked = sorted(
        ((w, name) for name, w in contributions.items() if w > 0),
        reverse=True,
    )
    reasons: list[dict[str, Any]] = []
    seen: set[str] = set()
    for weight, name in ranked:
        text = describe_feature(name, transaction, features.get(name, 0.0), low=below.get(name, False))
        if not text or text in seen:  # hour_sin and hour_cos say the same thing
            continue
        seen.add(text)
        reasons.append({"code": name, "text": text, "weight": round(weight, 4)})
        if len(reasons) == limit:
            break
    return reasons
