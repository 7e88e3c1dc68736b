"""Reasons from an entity's profile (terminal, device, IP, account, card): each names the entity and its figures.

The inputs (:mod:`models.profile_features`) are ``log1p``-ed counts, shares
and flags; a reason shows the counts as whole numbers and compares a recent
count with the entity's own 30-day rate. Codes are the entity's prefix and
what the reason says (``merchant_confirmed_fraud``); the text calls a
merchant a terminal, as analysts do. A transaction that names no such
entity gets none of its reasons. ``log_mean_amount_7d`` gives none: an
entity's mean amount says nothing of this transaction by itself (:data:`SILENT`).

Example:
    >>> from models.history import new_history
    >>> from stream.contracts.records import Transaction
    >>> t = Transaction("t9", "c1", 0, 20.0, "EUR", "T-17", "5411", "FR", "pos")
    >>> f = Facts(t, {"merchant_fraud_30d": math.log1p(3), "merchant_n_30d": math.log1p(120),
    ...               "merchant_days_since_fraud": math.log1p(1.5)}, new_history())
    >>> dict(ENTITY_EXPLAINERS)[FRAUD_INPUTS["merchant_id"]](f)[1]
    '3 of the 120 transactions at terminal T-17 in the 30 days before confirmed as fraud, the latest 1.5 days before'
"""

from __future__ import annotations

import math

from models.profile_features import PROFILE_FEATURES, entity_feature_names
from models.reason_text import DAY_MS, HOUR_MS, RATE, Explain, Facts, Found, duration, number, ordinal, plural
from stream.contracts.settings import ENTITY_FIELDS

__all__ = ["ENTITY_EXPLAINERS", "FRAUD_INPUTS", "SILENT", "WORDS"]

#: What the text calls each entity kind.
WORDS = {"merchant_id": "terminal", "device_id": "device", "ip": "IP", "account_id": "account", "card_id": "card"}
_FEW_30D = 30  # fewer than one a day over 30 days is little traffic


def _percent(share: float) -> str:
    """A share as a percentage, to a tenth under 10 %: a terminal with 0.4 % fraud verdicts is not one with none.

    >>> _percent(0.004), _percent(0.25)
    ('0.4%', '25%')
    """
    return f"{share:.1%}" if share < 0.1 else f"{share:.0%}"


def _kind(field: str) -> tuple[tuple[tuple[str, ...], Explain], ...]:
    names = dict(zip(PROFILE_FEATURES, entity_feature_names(field), strict=True))
    prefix = field.removesuffix("_id")

    def who(f: Facts) -> str | None:
        value = getattr(f.transaction, field)
        return f"{WORDS[field]} {value}" if value else None

    def fraud(f: Facts) -> Found | None:
        at, frauds, n30 = who(f), f.count(names["fraud_30d"]), f.count(names["n_30d"])
        if at is None or frauds < 1:
            return None
        since = math.expm1(f.features.get(names["days_since_fraud"], 0.0)) * 86_400
        return (f"{prefix}_confirmed_fraud",
                (f"{frauds} of the {plural(n30, 'transaction')} at {at} in the 30 days before confirmed as fraud, "
                f"the latest {duration(since)} before"),
                {"fraud_30d": frauds, "transactions_30d": n30, "since_fraud_s": round(since, 1)})

    def verdicts(f: Facts) -> Found | None:
        at = who(f)
        share_7d = f.features.get(names["label_fraud_share_7d"], 0.0)
        share_30d = f.features.get(names["label_fraud_share_30d"], 0.0)
        if at is None or max(share_7d, share_30d) <= 0:
            return None
        return (f"{prefix}_fraud_verdicts",
                (f"{_percent(share_7d)} of the labels received on transactions at {at} in the 7 days before said "
                 f"fraud ({_percent(share_30d)} over 30 days)"),
                {"fraud_share_7d": round(share_7d, 4), "fraud_share_30d": round(share_30d, 4)})

    def velocity(feature: str, window_ms: int, words: str) -> Explain:
        def explain(f: Facts) -> Found | None:
            at, before = who(f), f.count(names[feature])
            rate = f.count(names["n_30d"]) / 30
            if at is None or before < 1 or before + 1 <= RATE * rate * window_ms / DAY_MS:
                return None
            return (f"{prefix}_count_{feature.removeprefix('n_')}",
                    f"{ordinal(before + 1)} transaction at {at} in {words} (usually {number(rate)} a day over 30 days)",
                    {"count": before + 1, "usual_per_day": round(rate, 4)})
        return explain

    def many_cards(f: Facts) -> Found | None:
        at, cards, n1d = who(f), f.count(names["cards_1d"]), f.count(names["n_1d"])
        if at is None or cards < 2:
            return None
        return (f"{prefix}_many_cards", (f"{cards} different cards at {at} in the 24 hours before "
                                        f"({plural(n1d, 'transaction')})"),
                {"cards_24h": cards, "transactions_24h": n1d})

    def new_cards(f: Facts) -> Found | None:
        at, share = who(f), f.features.get(names["new_card_share_1d"], 0.0)
        if at is None or share <= 0:
            return None
        return (f"{prefix}_new_cards",
                f"{share:.0%} of the transactions at {at} in the 24 hours before came from cards new to it",
                {"new_card_share": round(share, 4)})

    def new_card(f: Facts) -> Found | None:
        at, n30 = who(f), f.count(names["n_30d"])
        if at is None or f.features.get(names["is_new_card"], 0.0) < 1:
            return None
        return (f"{prefix}_new_card", (f"first transaction of the card at {at} "
                                      f"({plural(n30, 'transaction')} there in the 30 days before)"),
                {"transactions_30d": n30})

    def little_traffic(f: Facts) -> Found | None:
        at, n30 = who(f), f.count(names["n_30d"])
        if at is None or n30 >= _FEW_30D:
            return None
        return (f"{prefix}_little_traffic", (f"{at} had {plural(n30, 'transaction')} in the 30 days before, "
                                            "fewer than one a day"),
                {"transactions_30d": n30})

    return (
        (FRAUD_INPUTS[field], fraud),
        ((names["label_fraud_share_7d"], names["label_fraud_share_30d"]), verdicts),
        ((names["n_1h"],), velocity("n_1h", HOUR_MS, "an hour")),
        ((names["n_1d"],), velocity("n_1d", DAY_MS, "24 hours")),
        ((names["n_7d"],), velocity("n_7d", 7 * DAY_MS, "7 days")),
        ((names["cards_1d"],), many_cards),
        ((names["new_card_share_1d"],), new_cards),
        ((names["is_new_card"],), new_card),
        ((names["n_30d"],), little_traffic),
    )


#: Per entity field, its four inputs of confirmed fraud, read together as one reason.
FRAUD_INPUTS: dict[str, tuple[str, ...]] = {
    field: tuple(dict(zip(PROFILE_FEATURES, entity_feature_names(field), strict=True))[name]
                 for name in ("fraud_7d", "fraud_30d", "fraud_rate_30d", "days_since_fraud"))
    for field in ENTITY_FIELDS}

#: Every entity kind's groups of inputs and what each says.
ENTITY_EXPLAINERS: tuple[tuple[tuple[str, ...], Explain], ...] = tuple(
    group for field in ENTITY_FIELDS for group in _kind(field))

#: Entity inputs that never give a reason.
SILENT: tuple[str, ...] = tuple(
    dict(zip(PROFILE_FEATURES, entity_feature_names(field), strict=True))["log_mean_amount_7d"]
    for field in ENTITY_FIELDS)
