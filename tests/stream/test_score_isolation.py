"""A model that fails on a batch costs only the records it fails on: they are dead-lettered, the rest scored.

A unit test of the score agent's isolation step (``BatchScorer._score``) with
the engine's real fusion and online learner; what it queues is collected
instead of produced. The broker path of dead letters is covered in
``test_dead_letters.py``.
"""

from __future__ import annotations

import asyncio
import math
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from models.features import FEATURE_NAMES, engineered_batch
from models.fusion import Fusion
from models.history import new_history
from models.online import ONLINE_INPUTS, SEQUENCE_INPUT, OnlineLearner
from models.scoring import ScoringItem
from stream.agents.score import BatchScorer
from stream.records import Transaction
from stream.settings import Settings
from stream.stats import Stats
from stream.timing import StageClock


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


def scorer(in_thread: bool = True, sequence: Any = None) -> BatchScorer:
    engine = SimpleNamespace(settings=Settings(sequence_in_thread=in_thread), stats=Stats(),
                             fusion=Fusion(OnlineLearner(), sequence=sequence or FailsOnCard()))
    return BatchScorer(engine)  # type: ignore[arg-type]


@pytest.mark.parametrize("in_thread", [True, False])
def test_only_the_record_the_model_fails_on_is_dead_lettered(in_thread: bool) -> None:
    items, valid = batch(["c1", "bad", "c2"])
    outbox = Collected()
    scored = asyncio.run(scorer(in_thread)._score(items, valid, outbox, StageClock()))  # type: ignore[arg-type]
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


@pytest.mark.parametrize("in_thread", [True, False])
def test_a_batch_the_model_fails_on_entirely_is_dead_lettered_entirely(in_thread: bool) -> None:
    items, valid = batch(["bad", "bad"])
    outbox = Collected()
    assert asyncio.run(scorer(in_thread)._score(items, valid, outbox, StageClock())) is None  # type: ignore[arg-type]
    assert [headers["dlq.reason"] for _, _, _, headers in outbox.added] == [b"scoring_error"] * 2


def test_the_sequence_model_runs_in_its_own_thread_and_scores_as_inline() -> None:
    """FRAUDSTREAM_SEQUENCE_IN_THREAD: the forward pass leaves the event loop's thread; nothing else changes."""
    threads: list[str] = []

    class Recording(FailsOnCard):
        def score_batch(self, items: Any) -> np.ndarray:
            threads.append(threading.current_thread().name)
            return np.linspace(0.1, 0.9, len(items))

    items, valid = batch(["c1", "c2", "c3"])
    results = {}
    for in_thread in (True, False):
        clock = StageClock()
        results[in_thread] = asyncio.run(scorer(in_thread, Recording())._score(
            items, valid, Collected(), clock))  # type: ignore[arg-type]
        assert clock.seconds["sequence"] > 0 and "online" in clock.seconds
    assert threads[0].startswith("fraudstream-sequence") and threads[1] == threading.main_thread().name
    threaded, inline = results[True], results[False]
    assert threaded is not None and inline is not None
    assert threaded[0] == inline[0] and threaded[1] == inline[1] and np.array_equal(threaded[2], inline[2])
