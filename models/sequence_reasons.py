"""The sequence model's explanations in words: which past transactions and which features raised a score.

:meth:`models.sequence.SequenceScorer.explain` attributes the logit to the
window's steps and features by gradient x input; :func:`reasons` turns those
attributions into the reasons an alert carries, and :func:`feature_text` says
what each step feature means for the transaction at hand. Apart from the
model, so the wording can change without touching the network (and is tested
for every feature).

Example:
    >>> from models.history import new_history
    >>> from models.scoring import ScoringItem
    >>> from stream.contracts.records import Transaction
    >>> t = Transaction("t1", "c1", 1_740_830_400_000, 20.0, "EUR", "m1", "5411", "FR", "pos")
    >>> feature_text("country", ScoringItem(t, new_history(), None))
    "sequence: country FR and the card's recent countries"
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from models.scoring import ScoringItem
from models.steps import STEP_CATEGORICAL, STEP_NUMERIC

__all__ = ["feature_text", "reasons"]

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _ago(seconds: float) -> str:
    """``seconds`` as people say it (``"3 min"``, ``"1.5 h"``)."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def feature_text(name: str, item: ScoringItem) -> str:
    """What step feature ``name`` means for ``item``, in words an analyst reads."""
    t = item.transaction
    hour = (t.event_time_ms // 3_600_000) % 24
    texts = {
        "log_amount": f"amounts in the card's recent sequence (this one {t.amount:.2f} {t.currency})",
        "amount_vs_mean": f"amount {t.amount:.2f} {t.currency} against the card's usual amounts",
        "amount_vs_max": f"amount {t.amount:.2f} {t.currency} against the card's largest recent amount",
        "log_gap_prev": "timing between the card's recent transactions",
        "log_gap_to_scored": "how recently the card's earlier transactions happened",
        "hour_sin": f"time of day ({hour:02d}:00 UTC)",
        "hour_cos": f"time of day ({hour:02d}:00 UTC)",
        "weekday_sin": f"day of week ({_WEEKDAYS[(t.event_time_ms // 86_400_000 + 3) % 7]})",
        "weekday_cos": f"day of week ({_WEEKDAYS[(t.event_time_ms // 86_400_000 + 3) % 7]})",
        "is_new_merchant": "merchants new to the card in its recent sequence",
        "is_new_country": "countries new to the card in its recent sequence",
        "is_new_channel": "channels new to the card in its recent sequence",
        "country_share": f"how often the card was used in {t.country} recently",
        "channel_share": f"how often the card was used for {t.channel} recently",
        "log_n_1h": "number of transactions on the card in the hour before",
        "log_n_24h": "number of transactions on the card in the 24 h before",
        "merchant": f"merchant {t.merchant_id or '(unknown)'} and the card's recent merchants",
        "mcc": f"merchant category MCC {t.mcc} and the card's recent categories",
        "country": f"country {t.country} and the card's recent countries",
        "channel": f"channel {t.channel} and the card's recent channels",
    }
    return "sequence: " + texts[name]


def reasons(items: Sequence[ScoringItem], numeric: np.ndarray, categorical: np.ndarray, mask: np.ndarray,
            n: int, steps: int = 2, features: int = 3) -> list[list[dict[str, Any]]]:
    """Per item, the past transactions and the features that pushed the score up most.

    ``numeric`` ``[B,N,F]``, ``categorical`` ``[B,N,C]`` and ``mask`` ``[B,N]`` are
    :meth:`~models.sequence.SequenceScorer.attributions` of ``items`` over windows
    of ``n`` steps. Each reason is ``{"kind": "step"|"feature", "code", "text",
    "weight"}``; ``weight`` is the share of the logit, largest first; only
    shares that raised it are reasons.
    """
    out: list[list[dict[str, Any]]] = []
    for b, item in enumerate(items):
        found: list[dict[str, Any]] = []
        per_step = numeric[b].sum(-1) + categorical[b].sum(-1)
        window = item.history[-(n - 1):] if n > 1 else item.history[:0]
        first = n - 1 - len(window)
        now = item.transaction.event_time_ms
        past = sorted(((float(per_step[j]), j) for j in range(first, n - 1) if not mask[b, j]), reverse=True)
        for w, j in past[:steps]:
            if w <= 0:
                break
            e = window[j - first]
            text = (f"sequence: transaction {_ago(max(now - e.ts, 0) / 1000)} before, "
                    f"amount {e.amount:.2f}, {e.channel} in {e.country} (MCC {e.mcc})")
            found.append({"kind": "step", "code": f"sequence_step_{n - 1 - j}", "text": text, "weight": round(w, 4)})
        per_feature = dict(zip(STEP_NUMERIC, numeric[b].sum(0).tolist(), strict=True))
        per_feature.update(zip(STEP_CATEGORICAL, categorical[b].sum(0).tolist(), strict=True))
        seen: set[str] = set()
        ranked = sorted(((w, k) for k, w in per_feature.items() if w > 0), reverse=True)
        for w, k in ranked:
            text = feature_text(k, item)
            if len(seen) >= features or text in seen:  # sin and cos say the same thing
                continue
            seen.add(text)
            found.append({"kind": "feature", "code": f"sequence_{k}", "text": text, "weight": round(w, 4)})
        out.append(found)
    return out
