"""Training's entity features are serving's: the fold equals the entity stage fed the same events in micro-batches."""

from __future__ import annotations

import random

import numpy as np
import pytest

from models.profile import HOUR_MS, encode
from models.profile_fold import PROFILE_FEATURES, fold_entity_features
from stream.core.entities import EntityEvent, EntityStage

DAY = 24 * HOUR_MS


def history(seed: int, n: int = 600) -> tuple[list[str], list[str], list[int], list[float], list[tuple[int, int, bool]]]:
    rng = random.Random(seed)
    entities = [rng.choice(["m1", "m2", "m3", ""]) for _ in range(n)]
    cards = [f"c{rng.randrange(40)}" for _ in range(n)]
    times = sorted(rng.randrange(0, 45 * DAY) for _ in range(n))
    amounts = [rng.choice([0.0, round(rng.uniform(1, 500), 2)]) for _ in range(n)]
    labels = [(i, times[i] + rng.choice([0, HOUR_MS, 7 * DAY]), rng.random() < 0.3)
              for i in range(n) if rng.random() < 0.5]
    return entities, cards, times, amounts, labels


@pytest.mark.parametrize("seed", [1, 2])
def test_the_fold_is_the_entity_stage(seed: int) -> None:
    entities, cards, times, amounts, labels = history(seed)
    folded = fold_entity_features(entities, cards, times, amounts, labels)

    # What the entity topic carries, in the order a replay delivers it: event time, a label before a
    # transaction of the same instant.
    stream: list[tuple[int, int, int, EntityEvent]] = []
    for i in range(len(times)):
        if entities[i]:
            stream.append((times[i], 1, i, EntityEvent.transaction(f"row-{i}", cards[i], times[i], amounts[i])))
    for seq, (row, at, fraud) in enumerate(labels):
        if entities[row]:
            stream.append((at, 0, seq, EntityEvent.label(f"row-{row}", cards[row], times[row], at, fraud)))
    stream.sort(key=lambda e: e[:3])
    events = [(entities[int(e.transaction_id.removeprefix("row-"))].encode(), e,
               (position % 3, position) if e.kind == "transaction" else None)
              for position, (_, _, _, e) in enumerate(stream)]

    stage = EntityStage("merchant_id")
    stored: dict[bytes, bytes] = {}
    served: dict[int, list[float]] = {}
    rng = random.Random(seed)
    at = 0
    while at < len(events):  # micro-batches of any size, state through its encoding as the changelog keeps it
        size = rng.randint(1, 50)
        batch = stage.process(events[at:at + size], stored)
        stored.update({key: encode(profile) for key, profile in batch.profiles.items()})
        for f in batch.features:
            served[int(f.transaction_id.removeprefix("row-"))] = [f.features[n] for n in stage.names]
        at += size
    for i in range(len(times)):
        expected = served[i] if entities[i] else [stage.absent(f"row-{i}", cards[i]).features[n] for n in stage.names]
        np.testing.assert_array_equal(folded[i], expected, err_msg=f"row {i}")
    assert folded[:, PROFILE_FEATURES.index("fraud_30d")].max() > 0, "no label was ever known: nothing compared"


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="columns of different lengths: 2, 1, 2, 2"):
        fold_entity_features(["a", "b"], ["c"], [1, 2], [1.0, 2.0])


def test_a_label_stamped_at_a_transactions_instant_is_known_to_it() -> None:
    x = fold_entity_features(["m", "m"], ["a", "b"], [0, 1_000], [1.0, 1.0], labels=[(0, 1_000, True)])
    assert x[1, PROFILE_FEATURES.index("fraud_7d")] == np.log1p(1)
    x = fold_entity_features(["m", "m"], ["a", "b"], [0, 1_000], [1.0, 1.0], labels=[(0, 1_001, True)])
    assert x[1, PROFILE_FEATURES.index("fraud_7d")] == 0.0
