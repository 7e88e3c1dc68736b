"""Features of an entity (terminal, merchant, device, IP, card) at a transaction's time, from its profile.

Only what was known at the transaction's time counts: transactions of the entity strictly before it, and
labels whose ``labelled_at`` is at or before it (a correction from its own ``labelled_at``). Windows are
the current hour so far plus the previous 24, 168 or 720 whole hours (the profile keeps hourly buckets);
the last hour's count is exact. Counts are ``log1p``-ed, as the card's are.

====================  ===========================================================================
``n_1h``              transactions in the last hour
``n_1d/7d/30d``       transactions in the window
``log_mean_amount_7d``  ``log1p`` of the mean amount over 7 days (0 without transactions)
``cards_1d``          distinct cards last seen in the last 24 hours
``new_card_share_1d`` share of the previous 24 whole hours' transactions made by a card new to the entity
``is_new_card``       this transaction's card has not been seen at the entity before
``fraud_7d/30d``      transactions of the window known to be fraud at this time
``fraud_rate_30d``    those over the window's transactions
``days_since_fraud``  ``log1p`` of the days since the newest known-fraud transaction (365 without one)
``label_fraud_share_7d/30d``  share of the labels received in the window (by ``labelled_at``) that say
                      fraud (0 without labels): the entity's recent verdicts, undiluted by the
                      transactions not labelled yet (under 7-day chargebacks ``fraud_7d`` is 0)
====================  ===========================================================================

A label received counts in ``label_fraud_share_*`` from the next whole hour
after its ``labelled_at``: the windows are the previous 168 or 720 whole hours
of label buckets, which stay exact however many label events the profile has
let go.

Example:
    >>> from models.profile import EntityProfile
    >>> p = EntityProfile()
    >>> for i in range(3):
    ...     _ = p.observe(i * 60_000, 10.0, card=f"c{i}")
    >>> _ = p.label("t0", 0, labelled_at_ms=100_000, fraud=True)
    >>> f = profile_features(p, 200_000, card="c9")
    >>> round(f["n_1h"], 3) == round(math.log1p(3), 3), f["fraud_30d"] == math.log1p(1), f["is_new_card"]
    (True, True, 1.0)
    >>> profile_features(p, 50_000, card="c9")["fraud_30d"]  # before the label's labelled_at: not known
    0.0
    >>> _ = p.label("t1", 60_000, labelled_at_ms=110_000, fraud=False)
    >>> [profile_features(p, at, card="c9")["label_fraud_share_7d"] for at in (200_000, HOUR_MS)]  # from the next hour
    [0.0, 0.5]
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from models.hashing import stable_hash
from models.profile import HOUR_MS, EntityProfile, ProfileIndex
from stream.contracts.settings import ENTITY_FIELDS

__all__ = ["ENTITY_INPUTS", "PROFILE_FEATURES", "blank_entity_features", "entity_feature_names", "profile_features"]

PROFILE_FEATURES = ("n_1h", "n_1d", "n_7d", "n_30d", "log_mean_amount_7d", "cards_1d", "new_card_share_1d",
                    "is_new_card", "fraud_7d", "fraud_30d", "fraud_rate_30d", "days_since_fraud",
                    "label_fraud_share_7d", "label_fraud_share_30d")


def entity_feature_names(entity_field: str) -> tuple[str, ...]:
    """The names an entity kind's features take in the models' inputs and on score records.

    >>> entity_feature_names("device_id")[:2]
    ('device_n_1h', 'device_n_1d')
    """
    prefix = entity_field.removesuffix("_id")
    return tuple(f"{prefix}_{name}" for name in PROFILE_FEATURES)


#: Every entity feature the models can take, kind by kind in :data:`~stream.contracts.settings.ENTITY_FIELDS`
#: order. A deployment that does not profile a kind leaves its inputs at 0: a constant input the online
#: learner's scaler maps to 0, so it carries no weight, and a learner moves between deployments unchanged.
ENTITY_INPUTS: tuple[str, ...] = tuple(name for field in ENTITY_FIELDS for name in entity_feature_names(field))

_DAY_MS = 24 * HOUR_MS
_NO_FRAUD_DAYS = 365.0
_WINDOWS_H = (24, 168, 720)


def profile_features(profile: EntityProfile, at_ms: int, *, card: str) -> dict[str, float]:
    """The features of a transaction at ``at_ms`` by ``card``, from what ``profile`` knew before it."""
    index = profile.index()
    hour = at_ms // HOUR_MS
    # The previous whole hours from the buckets; the current hour so far from the exact list (its later
    # transactions, already counted in its bucket when the traffic is out of order, are not known yet).
    n_1d, _, new_1d = index.hours_between(hour - 24, hour - 1)
    n_7d, amount_7d, _ = index.hours_between(hour - 168, hour - 1)
    n_30d, _, _ = index.hours_between(hour - 720, hour - 1)
    recent = profile.recent
    end = bisect_left(recent, (at_ms, -math.inf))
    n_1h = end - bisect_left(recent, (at_ms - HOUR_MS, -math.inf))
    this_hour = recent[bisect_left(recent, (hour * HOUR_MS, -math.inf)):end]
    current = len(this_hour)
    amount_7d += sum(amount for _, amount in this_hour)
    whole_1d = n_1d
    n_1d, n_7d, n_30d = n_1d + current, n_7d + current, n_30d + current
    first_seen = profile.first_seen.get(stable_hash(card))
    fraud = _known_fraud_times(profile, index, at_ms)
    end = bisect_left(fraud, at_ms)
    fraud_7d = end - bisect_left(fraud, at_ms - 7 * _DAY_MS)
    fraud_30d = end - bisect_left(fraud, at_ms - 30 * _DAY_MS)
    days = _NO_FRAUD_DAYS if end == 0 else min((at_ms - fraud[end - 1]) / _DAY_MS, _NO_FRAUD_DAYS)
    labels_7d, fraud_labels_7d = index.labels_between(hour - 168, hour - 1)
    labels_30d, fraud_labels_30d = index.labels_between(hour - 720, hour - 1)
    return {
        "n_1h": math.log1p(n_1h),
        "n_1d": math.log1p(n_1d),
        "n_7d": math.log1p(n_7d),
        "n_30d": math.log1p(n_30d),
        "log_mean_amount_7d": math.log1p(amount_7d / 1000 / n_7d) if n_7d else 0.0,  # milli-units to units
        "cards_1d": math.log1p(index.cards_seen_between(at_ms - _DAY_MS, at_ms)),
        "new_card_share_1d": new_1d / whole_1d if whole_1d else 0.0,
        "is_new_card": 0.0 if first_seen is not None and first_seen < at_ms else 1.0,
        "fraud_7d": math.log1p(fraud_7d),
        "fraud_30d": math.log1p(fraud_30d),
        "fraud_rate_30d": fraud_30d / n_30d if n_30d else 0.0,
        "days_since_fraud": math.log1p(days),
        "label_fraud_share_7d": fraud_labels_7d / labels_7d if labels_7d else 0.0,
        "label_fraud_share_30d": fraud_labels_30d / labels_30d if labels_30d else 0.0,
    }


def _known_fraud_times(profile: EntityProfile, index: ProfileIndex, at_ms: int) -> list[int]:
    """Sorted times of the transactions whose latest label known at ``at_ms`` says fraud.

    What is known changes only at a label's ``labelled_at``: the index keeps
    the answer for every time from the newest ``labelled_at`` on (the usual
    question: labels arrive as they are made), and anything earlier is worked
    out afresh.
    """
    if index.fraud_times is not None and at_ms >= index.labels_known_from:
        return index.fraud_times
    latest: dict[int, tuple[int, bool, int]] = {}
    newest_label = 0
    for e in profile.labels:
        if e.labelled_at_ms <= at_ms:
            newest_label = max(newest_label, e.labelled_at_ms)
            seen = latest.get(e.transaction)
            if seen is None or e.labelled_at_ms >= seen[0]:
                latest[e.transaction] = (e.labelled_at_ms, e.fraud, e.transaction_time_ms)
    times = sorted(ts for _, fraud, ts in latest.values() if fraud)
    if all(e.labelled_at_ms <= at_ms for e in profile.labels):
        index.fraud_times, index.labels_known_from = times, newest_label
    return times


def blank_entity_features(names: Sequence[str]) -> npt.NDArray[np.float64]:
    """The features ``names`` (of :data:`ENTITY_INPUTS`) of an entity never seen, as a transaction naming none gets.

    >>> blank_entity_features(["merchant_n_1h", "merchant_is_new_card"]).tolist()
    [0.0, 1.0]
    """
    blank = profile_features(EntityProfile(), 0, card="")
    feature_of = {name: feature for entity_field in ENTITY_FIELDS
                  for name, feature in zip(entity_feature_names(entity_field), PROFILE_FEATURES, strict=True)}
    return np.asarray([blank[feature_of[name]] for name in names], dtype=np.float64)
