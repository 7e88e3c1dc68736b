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
====================  ===========================================================================

Example:
    >>> from models.profile import EntityProfile
    >>> p = EntityProfile()
    >>> for i in range(3):
    ...     _ = p.observe(i * 60_000, 10.0, card=f"c{i}", position=i)
    >>> _ = p.label("t0", 0, labelled_at_ms=100_000, fraud=True, position=3)
    >>> f = profile_features(p, 200_000, card="c9")
    >>> round(f["n_1h"], 3) == round(math.log1p(3), 3), f["fraud_30d"] == math.log1p(1), f["is_new_card"]
    (True, True, 1.0)
    >>> profile_features(p, 50_000, card="c9")["fraud_30d"]  # before the label's labelled_at: not known
    0.0
"""

from __future__ import annotations

import math

from models.hashing import stable_hash
from models.profile import HOUR_MS, EntityProfile

__all__ = ["PROFILE_FEATURES", "profile_features"]

PROFILE_FEATURES = ("n_1h", "n_1d", "n_7d", "n_30d", "log_mean_amount_7d", "cards_1d", "new_card_share_1d",
                    "is_new_card", "fraud_7d", "fraud_30d", "fraud_rate_30d", "days_since_fraud")

_DAY_MS = 24 * HOUR_MS
_NO_FRAUD_DAYS = 365.0
_WINDOWS_H = (24, 168, 720)


def profile_features(profile: EntityProfile, at_ms: int, *, card: str) -> dict[str, float]:
    """The features of a transaction at ``at_ms`` by ``card``, from what ``profile`` knew before it."""
    hour = at_ms // HOUR_MS
    counts = [0.0, 0.0, 0.0]
    amount_7d = 0.0
    new_1d = 0.0  # over the previous 24 whole hours: the buckets count new cards, the exact list does not
    for h, (n, amount, new) in profile.hours.items():
        age = hour - h
        if age <= 0 or age > _WINDOWS_H[-1]:
            continue  # the current hour comes from the exact list below; later hours are not known yet
        for w, width in enumerate(_WINDOWS_H):
            if age <= width:
                counts[w] += n
        if age <= 168:
            amount_7d += amount
        if age <= 24:
            new_1d += new
    n_1h = 0
    current = 0
    for ts, amount in profile.recent:
        if ts < at_ms:
            n_1h += ts >= at_ms - HOUR_MS
            if ts // HOUR_MS == hour:
                current += 1
                amount_7d += amount
    whole_1d = counts[0]
    # A transaction of the current hour is in the exact list while it is within the newest hour's reach.
    counts = [c + current for c in counts]
    card_hash = stable_hash(card)
    seen_at = profile.cards.get(card_hash)
    cards_1d = sum(1 for last in profile.cards.values() if at_ms - _DAY_MS <= last < at_ms)
    known = _known_fraud(profile, at_ms)
    fraud_7d = sum(1 for ts in known if at_ms - 7 * _DAY_MS <= ts < at_ms)
    fraud_30d = sum(1 for ts in known if at_ms - 30 * _DAY_MS <= ts < at_ms)
    newest_fraud = max((ts for ts in known if ts < at_ms), default=None)
    days = _NO_FRAUD_DAYS if newest_fraud is None else min((at_ms - newest_fraud) / _DAY_MS, _NO_FRAUD_DAYS)
    return {
        "n_1h": math.log1p(n_1h),
        "n_1d": math.log1p(counts[0]),
        "n_7d": math.log1p(counts[1]),
        "n_30d": math.log1p(counts[2]),
        "log_mean_amount_7d": math.log1p(amount_7d / counts[1]) if counts[1] else 0.0,
        "cards_1d": math.log1p(cards_1d),
        "new_card_share_1d": new_1d / whole_1d if whole_1d else 0.0,
        "is_new_card": 0.0 if seen_at is not None and seen_at < at_ms else 1.0,
        "fraud_7d": math.log1p(fraud_7d),
        "fraud_30d": math.log1p(fraud_30d),
        "fraud_rate_30d": fraud_30d / counts[2] if counts[2] else 0.0,
        "days_since_fraud": math.log1p(days),
    }


def _known_fraud(profile: EntityProfile, at_ms: int) -> list[int]:
    """Times of the transactions whose latest label known at ``at_ms`` says fraud."""
    latest: dict[int, tuple[int, bool, int]] = {}
    for e in profile.labels:
        if e.labelled_at_ms <= at_ms:
            seen = latest.get(e.transaction)
            if seen is None or e.labelled_at_ms >= seen[0]:
                latest[e.transaction] = (e.labelled_at_ms, e.fraud, e.transaction_time_ms)
    return [ts for _, fraud, ts in latest.values() if fraud]
