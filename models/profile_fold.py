"""Entity features of a whole history at once, as the engine's entity stage gives them one by one.

Training must see what serving sees. This folds a history (transactions, and
labels arriving at their ``labelled_at``) through the same
:class:`~models.profile.EntityProfile` and :func:`~models.profile_features.profile_features`
the entity stage uses, in the order a replay would deliver it: event time,
and a label at the same instant as a transaction before it (a label counts
from its ``labelled_at``, so one stamped at the transaction's time is known to
it). ``tests/models/test_profile_fold.py`` holds the result equal to
:class:`stream.core.entities.EntityStage` fed the same events.

Example:
    >>> x = fold_entity_features(["m1", "m1", ""], ["a", "b", "c"], [0, 60_000, 90_000], [5.0, 7.0, 1.0],
    ...                          labels=[(0, 30_000, True)])
    >>> x.shape, round(float(x[1, PROFILE_FEATURES.index("fraud_7d")]), 3)  # t0's label known at t1
    ((3, 14), 0.693)
    >>> float(x[2, PROFILE_FEATURES.index("is_new_card")])  # no entity: a first transaction's features
    1.0
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from models.profile import EntityProfile
from models.profile_features import PROFILE_FEATURES, profile_features

__all__ = ["PROFILE_FEATURES", "fold_entity_features"]


def fold_entity_features(entities: Sequence[str], cards: Sequence[str], times_ms: Sequence[int],
                         amounts: Sequence[float], labels: Sequence[tuple[int, int, bool]] = (),
                         ) -> npt.NDArray[np.float64]:
    """Features of every row's entity before the row, ``[len(entities), len(PROFILE_FEATURES)]``.

    ``labels``: (row, labelled_at_ms, fraud), applied to the row's entity from
    ``labelled_at_ms`` on. A row whose entity is ``""`` names none and gets the
    features of an entity never seen.
    """
    n = len(entities)
    if not len(cards) == len(times_ms) == len(amounts) == n:
        raise ValueError(f"columns of different lengths: {n}, {len(cards)}, {len(times_ms)}, {len(amounts)}")
    out = np.empty((n, len(PROFILE_FEATURES)))
    blank = profile_features(EntityProfile(), 0, card="")
    absent = [blank[name] for name in PROFILE_FEATURES]
    order = sorted(range(n), key=lambda i: (times_ms[i], i))
    pending = sorted((at, seq, row, fraud) for seq, (row, at, fraud) in enumerate(labels))
    heapq.heapify(pending)
    profiles: dict[str, EntityProfile] = {}
    for i in order:
        at = times_ms[i]
        while pending and pending[0][0] <= at:
            labelled_at, _, row, fraud = heapq.heappop(pending)
            if entities[row]:
                profiles.setdefault(entities[row], EntityProfile()).label(
                    f"row-{row}", times_ms[row], labelled_at_ms=labelled_at, fraud=fraud)
        entity = entities[i]
        if not entity:
            out[i] = absent
            continue
        profile = profiles.setdefault(entity, EntityProfile())
        values = profile_features(profile, at, card=cards[i])
        out[i] = [values[name] for name in PROFILE_FEATURES]
        profile.observe(at, amounts[i], card=cards[i])
    return out
