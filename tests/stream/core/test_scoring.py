"""The scoring core over in-memory records: what the broker tests check for one batch, in milliseconds."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from models.features import engineered
from models.fusion import Fusion
from models.history import History, append, new_history
from models.online import SEQUENCE_INPUT, OnlineLearner, online_inputs
from stream.contracts.records import Limits, Transaction
from stream.core.outputs import alert_id
from stream.core.packing import unpack_inputs
from stream.core.scoring import BatchScoring
from stream.core.source import InMemoryRecord
from stream.core.stored import FeatureEntry

LIMITS = Limits(max_bytes=100_000, min_time_ms=0, max_future_skew_ms=10 * 365 * 86_400_000)
HOUR = 3_600_000
T0 = 1_772_359_200_000  # 2026-03-01T10:00:00Z


def tx(tid: str, card: str, at: int, amount: float, **extra: str) -> InMemoryRecord:
    body = {"transaction_id": tid, "card_id": card, "timestamp": at, "amount": amount, "currency": "EUR",
            "merchant_id": extra.get("merchant_id", "m1"), "mcc": "5411", "country": extra.get("country", "FR"),
            "channel": extra.get("channel", "pos")}
    return InMemoryRecord(card.encode(), orjson.dumps(body), partition=1, offset=at % 1000, timestamp=at / 1000)


class Fixed:
    """A sequence scorer that gives each transaction a score from a table (the Scorer protocol)."""

    name, version = "sequence", "fixed-1"

    def __init__(self, scores: dict[str, float], fail_on: str | None = None) -> None:
        self.scores, self.fail_on = scores, fail_on

    def score_batch(self, items):
        if any(item.transaction.transaction_id == self.fail_on for item in items):
            raise RuntimeError(f"model cannot score {self.fail_on}")
        return np.array([self.scores.get(item.transaction.transaction_id, 0.01) for item in items])


def scoring(sequence: Fixed | None = None, threshold: float = 0.5) -> BatchScoring:
    fusion = Fusion(OnlineLearner(), sequence=sequence, min_labels_for_online=200)
    return BatchScoring(fusion, LIMITS, history_length=8, threshold=threshold, clock_ms=lambda: T0 + 5_000)


def scores_of(batch) -> dict[str, dict]:
    return {r["transaction_id"]: r for r in (orjson.loads(v) for _, v in batch.scores)}


def test_valid_records_are_scored_once_each_and_keep_a_history_per_card() -> None:
    records = [tx("a1", "A", T0, 10.0), tx("b1", "B", T0 + 1, 20.0), tx("a2", "A", T0 + HOUR, 30.0)]
    batch = scoring().score(records, {})
    assert [t.transaction_id for _, t in batch.scored] == ["a1", "b1", "a2"]
    assert sorted(scores_of(batch)) == ["a1", "a2", "b1"]
    by_card = {key: (i, h) for i, key, h in batch.histories}
    assert by_card[b"A"][0] == 2 and [e.amount for e in by_card[b"A"][1]] == [10.0, 30.0]  # written with its last record
    assert by_card[b"B"][0] == 1 and len(by_card[b"B"][1]) == 1
    assert batch.dead_letters == [] and batch.alerts == []
    assert batch.history_entries == 1  # a2 was scored with a1 before it


def test_bad_records_become_dead_letters_with_their_reason_and_the_rest_is_scored() -> None:
    good = tx("g1", "G", T0, 10.0)
    bad = [InMemoryRecord(b"X", b"{oops", offset=5), InMemoryRecord(b"X", orjson.dumps({"transaction_id": "n"})),
           InMemoryRecord(b"someone-else", good.value, offset=9),
           tx("neg", "N", T0, -3.0)]
    batch = scoring().score([bad[0], good, *bad[1:]], {})
    assert [d.reason for d in batch.dead_letters] == ["malformed_json", "missing_field", "key_mismatch",
                                                      "invalid_amount"]
    assert batch.dead_letters[0].value == b"{oops" and batch.dead_letters[0].offset == 5  # the record as it came
    assert [i for i, _ in batch.scored] == [1]


def test_a_batch_of_only_bad_records_scores_nothing_and_writes_no_state() -> None:
    batch = scoring().score([InMemoryRecord(b"x", b"[]")], {})
    assert [d.reason for d in batch.dead_letters] == ["not_an_object"]
    assert batch.scored == [] and batch.histories == [] and batch.features == [] and batch.scores == []


def test_a_redelivered_transaction_sees_the_history_it_saw_the_first_time() -> None:
    first = [tx("c1", "C", T0, 10.0), tx("c2", "C", T0 + HOUR, 900.0, country="BR")]
    core = scoring()
    once = core.score(first, {})
    stored = {key: h for _, key, h in once.histories}
    again = core.score([first[1]], stored)  # c2 comes again after a crash
    assert scores_of(again)["c2"]["score"] == scores_of(once)["c2"]["score"]
    assert again.features[0][2]["x"] == once.features[1][2]["x"]  # the very same inputs
    assert again.histories[0][2] == stored[b"C"]  # nothing appended twice


def test_an_out_of_order_transaction_is_scored_against_what_came_before_it_in_event_time() -> None:
    later = tx("d2", "D", T0 + 2 * HOUR, 50.0)
    early = tx("d1", "D", T0, 20.0)
    core = scoring()
    first = core.score([later], {})
    batch = core.score([early], {key: h for _, key, h in first.histories})
    (_, _, history), = batch.histories
    assert [e.amount for e in history] == [20.0, 50.0]  # inserted in event-time order
    x = unpack_inputs(batch.features[0][2]["x"])
    alone = engineered(new_history(), Transaction("d1", "D", T0, 20.0, "EUR", "m1", "5411", "FR", "pos"))
    assert x[0] == pytest.approx(alone["log_amount"])  # scored as the card's first transaction


def test_features_entries_are_what_the_learner_saw_and_read_back_as_feature_entries() -> None:
    batch = scoring().score([tx("e1", "E", T0, 42.0)], {})
    (i, key, entry), = batch.features
    parsed = FeatureEntry.from_json(entry)
    assert (i, key, parsed.card_id, parsed.event_time_ms, parsed.partition) == (0, b"e1", "E", T0, 1)
    assert unpack_inputs(parsed.inputs)[0] == pytest.approx(np.log1p(42.0))


def test_alerts_at_and_above_the_threshold_only_with_deterministic_ids() -> None:
    seq = Fixed({"f1": 0.5, "f2": 0.4999, "f3": 0.97})
    records = [tx("f1", "F", T0, 10.0), tx("f2", "F", T0 + 1, 10.0), tx("f3", "F", T0 + 2, 10.0)]
    batch = scoring(seq, threshold=0.5).score(records, {})
    decisions = {tid: r["decision"] for tid, r in scores_of(batch).items()}
    assert decisions == {"f1": "alert", "f2": "pass", "f3": "alert"}
    alerts = [orjson.loads(v) for _, v in batch.alerts]
    assert [a["alert_id"] for a in alerts] == [alert_id("f1"), alert_id("f3")]
    assert [a["score"] for a in alerts] == [0.5, 0.97] and all(len(a["reasons"]) <= 5 for a in alerts)


def test_a_model_failing_on_one_record_dead_letters_only_that_record() -> None:
    seq = Fixed({}, fail_on="h2")
    records = [tx("h1", "H", T0, 10.0), tx("h2", "H", T0 + 1, 10.0), tx("h3", "I", T0, 10.0)]
    batch = scoring(seq).score(records, {})
    assert [(d.reason, d.offset) for d in batch.dead_letters] == [("scoring_error", records[1].offset)]
    assert "model cannot score h2" in batch.dead_letters[0].detail
    assert [t.transaction_id for _, t in batch.scored] == ["h1", "h3"]
    assert [key for _, key, _ in batch.features] == [b"h1", b"h3"]


def test_stored_histories_are_read_not_changed() -> None:
    history: History = append(new_history(), Transaction("j0", "J", T0 - HOUR, 5.0), 8)
    stored = {b"J": history}
    scoring().score([tx("j1", "J", T0, 10.0)], stored)
    assert stored == {b"J": history} and len(history) == 1


def test_the_learner_keeps_what_it_saw_including_the_sequence_models_logit() -> None:
    seq = Fixed({"k1": 0.25, "k2": 0.25}, fail_on="k-bad")
    records = [tx("k1", "K", T0, 10.0), tx("k-bad", "L", T0, 10.0), tx("k2", "M", T0, 10.0)]
    batch = scoring(seq).score(records, {})
    scores = scores_of(batch)
    assert [scores[t]["score"] for t in ("k1", "k2")] == [0.25, 0.25]  # fewer labels than needed: the sequence's
    assert [scores[t]["components"]["sequence"] for t in ("k1", "k2")] == [0.25, 0.25]
    logit = np.log(0.25 / 0.75)
    for _, _, entry in batch.features:
        x = dict(zip(online_inputs(), unpack_inputs(entry["x"]), strict=True))  # the learner's inputs, in its order
        assert x[SEQUENCE_INPUT] == pytest.approx(logit)
        assert x["log_amount"] == pytest.approx(np.log1p(10.0))


def test_a_batch_the_model_fails_on_entirely_is_dead_lettered_entirely_and_keeps_no_state() -> None:
    records = [tx("n1", "N", T0, 10.0), tx("n2", "N", T0 + 1, 10.0)]
    batch = scoring(Fixed({}, fail_on="n1")).score(records[:1], {})
    assert [d.reason for d in batch.dead_letters] == ["scoring_error"]
    assert batch.scored == [] and batch.histories == [] and batch.features == [] and batch.scores == []


def test_entity_features_from_the_enriched_header_are_inputs_of_the_learner_and_shown_on_the_score() -> None:
    """With entity profiles the learner reads the features the hops carried: scored, stored for the label join, shown."""
    from stream.core.routing import FEATURES_HEADER, EntityRouting

    routing = EntityRouting(["merchant_id"])
    names = routing.names
    learner = OnlineLearner(feature_names=online_inputs(["merchant_id"]))
    base = engineered(new_history(), Transaction("x", "X", T0, 10.0, merchant_id="m1", mcc="5411", country="FR",
                                                 channel="pos"))
    for i in range(200):  # labels teach it that fraud known at the terminal means fraud
        x = dict(base, **dict(zip(names, routing.blank.tolist(), strict=True)))
        x["merchant_fraud_7d"] = float(i % 2) * 3.0
        learner.learn(x, i % 2)
    core = BatchScoring(Fusion(learner), LIMITS, history_length=8, threshold=0.5, clock_ms=lambda: T0 + 5_000,
                        routing=routing)
    breached = routing.blank.copy()
    breached[names.index("merchant_fraud_7d")] = 3.0
    with_header = tx("e1", "E", T0, 10.0)._replace(headers=[(FEATURES_HEADER, breached.tobytes())])
    without = tx("e2", "F", T0, 10.0)  # reached the enriched topic without the hops' header
    batch = core.score([with_header, without], {})
    scores = scores_of(batch)
    assert scores["e1"]["entity_features"]["merchant_fraud_7d"] == 3.0
    assert scores["e2"]["entity_features"] == dict(zip(names, routing.blank.round(6).tolist(), strict=True))
    stored = {tid.decode(): dict(zip(learner.feature_names, unpack_inputs(entry["x"]), strict=True))
              for _, tid, entry in batch.features}
    assert [stored["e1"][n] for n in names] == breached.tolist()
    assert [stored["e2"][n] for n in names] == routing.blank.tolist()
    # Same card features, same amount: only the terminal's known fraud tells them apart.
    assert scores["e1"]["score"] == pytest.approx(float(learner.predict_many([stored["e1"]])[0]), abs=1e-6)
    assert scores["e1"]["score"] > 0.5 > scores["e2"]["score"]


def test_a_redelivered_transaction_keeps_the_entity_features_it_was_first_scored_with() -> None:
    """After a crash the hop gives a redelivery features from a profile that has moved on; the score does not move."""
    from stream.core.routing import FEATURES_HEADER, EntityRouting

    routing = EntityRouting(["merchant_id"])
    names = routing.names
    learner = OnlineLearner(feature_names=online_inputs(["merchant_id"]))
    base = engineered(new_history(), Transaction("x", "X", T0, 10.0, merchant_id="m1", mcc="5411", country="FR",
                                                 channel="pos"))
    for i in range(200):
        x = dict(base, **dict(zip(names, routing.blank.tolist(), strict=True)))
        x["merchant_n_1h"] = float(i % 2) * 4.0
        learner.learn(x, i % 2)
    core = BatchScoring(Fusion(learner), LIMITS, history_length=8, threshold=0.5, clock_ms=lambda: T0 + 5_000,
                        routing=routing)

    def carrying(record, n_1h):
        values = routing.blank.copy()
        values[names.index("merchant_n_1h")] = n_1h
        return record._replace(headers=[(FEATURES_HEADER, values.tobytes())])

    first = core.score([carrying(tx("r1", "R", T0, 10.0), 0.0)], {})
    histories = {key: h for _, key, h in first.histories}
    table = {key: entry for _, key, entry in first.features}
    moved_on = [carrying(tx("r1", "R", T0, 10.0), 4.0), carrying(tx("r2", "R", T0 + HOUR, 10.0), 4.0)]
    again = core.score(moved_on, histories, table)
    assert scores_of(again)["r1"]["entity_features"]["merchant_n_1h"] == 0.0  # the first features, not the hop's
    assert scores_of(again)["r1"]["score"] == scores_of(first)["r1"]["score"]
    assert scores_of(again)["r2"]["entity_features"]["merchant_n_1h"] == 4.0  # a new transaction: the hop's
    assert scores_of(again)["r2"]["score"] > 0.5 > scores_of(again)["r1"]["score"]
    # Without the stored entry (expired, never written) the hop's features are all there is.
    assert scores_of(core.score(moved_on[:1], histories, {}))["r1"]["entity_features"]["merchant_n_1h"] == 4.0
    assert scores_of(core.score(moved_on[:1], {}, table))["r1"]["entity_features"]["merchant_n_1h"] == 4.0  # not seen


def test_with_trees_an_alert_gives_the_reasons_that_pushed_the_trees_score_up() -> None:
    """The trees alone decide (the learner never saw a label): their TreeSHAP shares, not its weights, give the reasons."""
    from models.trees import ExampleWindow, TreeModel

    learner = OnlineLearner()
    window = ExampleWindow(learner.feature_names, window_ms=10**9, max_examples=10_000)
    rng = np.random.default_rng(2)
    at = learner.feature_names.index("is_new_country")
    for i in range(3_000):  # the labels say: a new country is fraud
        x = rng.normal(size=len(learner.feature_names)) * 0.1
        x[at] = float(i % 3 == 0)
        window.add(x, int(i % 3 == 0), event_time_ms=i)
    learner.trees = TreeModel.fit(window, rounds=40)
    core = BatchScoring(Fusion(learner), LIMITS, history_length=8, threshold=0.5, clock_ms=lambda: T0 + 5_000)
    history = {b"G": append(new_history(), Transaction("g0", "G", T0 - HOUR, 10.0, merchant_id="m1", mcc="5411",
                                                       country="FR", channel="pos"), 8)}
    batch = core.score([tx("g1", "G", T0, 10.0, country="BR")], history)
    alert = orjson.loads(batch.alerts[0][1])
    assert alert["score"] > 0.5 and alert["reasons"][0]["code"] == "new_country"
    # The text compares with the card's history, which the core passes along: its one earlier transaction, in FR.
    assert alert["reasons"][0]["text"] == "country BR, not seen in the card's 1 earlier transaction (usually FR)"
    assert alert["reasons"][0]["values"] == {"country": "BR", "usual_countries": ["FR"], "history_length": 1}
    assert all(r["weight"] > 0 for r in alert["reasons"])
