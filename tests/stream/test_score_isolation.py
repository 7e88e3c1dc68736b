"""A model that fails on a batch costs only the records it fails on: they are dead-lettered, the rest scored.

A unit test of the score agent's isolation step (``BatchScorer._score``) with
the engine's real fusion and online learner; what it queues is collected
instead of produced. The broker path of dead letters is covered in
``test_dead_letters.py``.
"""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace
from typing import Any

import numpy as np

from models.features import FEATURE_NAMES, engineered_batch
from models.fusion import Fusion
from models.history import new_history
from models.online import ONLINE_INPUTS, SEQUENCE_INPUT, OnlineLearner
from models.scoring import ScoringItem
from stream.agents.score import BatchScorer
from stream.records import Transaction
from stream.settings import Settings
from stream.stats import Stats


class FailsOnCard:
    """A sequence scorer that raises for any batch holding card ``bad``."""

    name, version = "sequence", "fails-1"

    def score_batch(self, items: list[ScoringItem]) -> np.ndarray:
        if any(item.transaction.card_id == "bad" for item in items):
            raise RuntimeError("the model cannot score card bad")
        return np.full(len(items), 0.25)


class Collected:
    """What the scorer queues on its outbox."""

    def __init__(self) -> None:
        self.added: list[tuple[str, bytes | None, bytes | None, dict[str, bytes]]] = []

    def add(self, topic: str, partition: int | None, key: bytes | None, value: bytes | None,
            headers: Any = ()) -> None:
        self.added.append((topic, key, value, dict(headers)))


def batch(cards: list[str]) -> tuple[list[ScoringItem], list[tuple[Any, Transaction]]]:
    transactions = [Transaction(f"t{i}", card, 1_740_830_400_000 + i, 20.0 + i, "EUR", "m1", "5411", "FR", "pos")
                    for i, card in enumerate(cards)]
    priors = [new_history()] * len(transactions)
    features = engineered_batch(priors, transactions)
    items = [ScoringItem(t, h, x) for t, h, x in zip(transactions, priors, features, strict=True)]
    events = [SimpleNamespace(message=SimpleNamespace(topic="transactions", partition=0, offset=i, key=t.card_id.encode(),
                                                      value=f'{{"transaction_id": "{t.transaction_id}"}}'.encode(),
                                                      headers=[]))
              for i, t in enumerate(transactions)]
    return items, list(zip(events, transactions, strict=True))


def scorer() -> BatchScorer:
    engine = SimpleNamespace(settings=Settings(), stats=Stats(), fusion=Fusion(OnlineLearner(), sequence=FailsOnCard()))
    return BatchScorer(engine)  # type: ignore[arg-type]


def test_only_the_record_the_model_fails_on_is_dead_lettered() -> None:
    items, valid = batch(["c1", "bad", "c2"])
    outbox = Collected()
    scored = asyncio.run(scorer()._score(items, valid, outbox))  # type: ignore[arg-type]
    assert scored is not None
    scores, components, inputs, keep = scored
    assert [t.card_id for _, t in keep] == ["c1", "c2"]
    assert scores == components["sequence"] == [0.25, 0.25]  # fewer labels than needed: the sequence score
    assert inputs.shape == (2, len(ONLINE_INPUTS))
    assert np.array_equal(inputs[:, :len(FEATURE_NAMES)], np.stack([items[0].features, items[2].features]))
    assert inputs[:, ONLINE_INPUTS.index(SEQUENCE_INPUT)].tolist() == [math.log(0.25 / 0.75)] * 2
    [(topic, key, value, headers)] = outbox.added
    assert (topic, key, value) == (Settings().topic_transactions_dlq, b"bad", b'{"transaction_id": "t1"}')
    assert headers["dlq.reason"] == b"scoring_error" and b"cannot score card bad" in headers["dlq.detail"]


def test_a_batch_the_model_fails_on_entirely_is_dead_lettered_entirely() -> None:
    items, valid = batch(["bad", "bad"])
    outbox = Collected()
    assert asyncio.run(scorer()._score(items, valid, outbox)) is None  # type: ignore[arg-type]
    assert [headers["dlq.reason"] for _, _, _, headers in outbox.added] == [b"scoring_error"] * 2
