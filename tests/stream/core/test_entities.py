"""The entity stage without a broker: features before counting, labels by labelled_at, redeliveries, bad state."""

from __future__ import annotations

import math

import pytest

from models.profile import HOUR_MS, EntityProfile, encode
from models.profile_features import entity_feature_names
from stream.core.entities import EntityEvent, EntityStage
from stream.core.routing import FEEDBACK_STAGE, parse_upstream, upstream
from stream.core.stored import StoredRecordError

DAY = 24 * HOUR_MS


def tx(i: int, card: str, at: int, amount: float = 10.0) -> EntityEvent:
    return EntityEvent.transaction(f"t{i}", card, at, amount)


def test_each_transaction_gets_what_its_entity_knew_before_it_from_every_card() -> None:
    stage = EntityStage("merchant_id")
    events = [(b"m1", tx(0, "a", 0), (0, 0)), (b"m1", tx(1, "b", 60_000), (0, 1)),
              (b"m2", tx(2, "c", 90_000), (0, 2)), (b"m1", tx(3, "c", 120_000), (1, 3))]
    batch = stage.process(events, {})
    n_1h = [f.features["merchant_n_1h"] for f in batch.features]
    assert n_1h == [0.0, math.log1p(1), 0.0, math.log1p(2)]  # m2's first transaction sees nothing of m1's
    assert [f.features["merchant_cards_1d"] for f in batch.features] == [0.0, math.log1p(1), 0.0, math.log1p(2)]
    assert [(f.transaction_id, f.card_id, f.entity) for f in batch.features] == [
        ("t0", "a", "m1"), ("t1", "b", "m1"), ("t2", "c", "m2"), ("t3", "c", "m1")]
    assert set(batch.profiles) == {b"m1", b"m2"} and batch.profiles[b"m1"].sources == {0: 1, 1: 3}


def test_a_fraud_label_raises_the_terminals_risk_only_from_its_labelled_at() -> None:
    stage = EntityStage("merchant_id")
    first = stage.process([(b"m1", tx(0, "a", 0), (0, 0))], {})
    stored = {k: encode(p) for k, p in first.profiles.items()}
    label = EntityEvent.label("t0", "a", 0, labelled_at_ms=7 * DAY, fraud=True)
    batch = stage.process([(b"m1", label, None), (b"m1", tx(1, "b", 7 * DAY - 1), (0, 2)),
                           (b"m1", tx(2, "c", 7 * DAY), (0, 3))], stored)
    assert [f.features["merchant_fraud_7d"] for f in batch.features] == [0.0, math.log1p(1)]
    assert batch.features[1].features["merchant_fraud_rate_30d"] == pytest.approx(1 / 2)


def test_a_redelivered_batch_counts_nothing_twice_and_is_listed() -> None:
    stage = EntityStage("device_id")
    events = [(b"d1", tx(0, "a", 0), (3, 10)), (b"d1", tx(1, "b", 1_000), (3, 11))]
    first = stage.process(events, {})
    stored = {k: encode(p) for k, p in first.profiles.items()}
    again = stage.process(events, stored)  # the worker crashed after its changelog write, before its commit
    assert again.redelivered == [0, 1]
    assert encode(again.profiles[b"d1"]) == stored[b"d1"]


def test_a_transaction_sent_again_by_a_restarted_stage_before_counts_once() -> None:
    """The route agent (or a hop) restarted from its committed offset: the same read positions, new entity records."""
    stage = EntityStage("merchant_id")
    first = stage.process([(b"m1", tx(0, "a", 0), (5, 100)), (b"m1", tx(1, "b", 1_000), (5, 101))], {})
    stored = {k: encode(p) for k, p in first.profiles.items()}
    resent = stage.process([(b"m1", tx(1, "b", 1_000), (5, 101)), (b"m1", tx(2, "c", 2_000), (5, 102))], stored)
    assert resent.redelivered == [0]
    assert [t for t, _ in resent.profiles[b"m1"].recent] == [0, 1_000, 2_000]
    label = EntityEvent.label("t0", "a", 0, labelled_at_ms=5_000, fraud=True)
    twice = stage.process([(b"m1", label, None), (b"m1", label, None)], stored)
    assert twice.redelivered == [1] and len(twice.profiles[b"m1"].labels) == 1


def test_a_label_resent_by_a_restarted_route_agent_counts_once_in_the_verdict_shares() -> None:
    """By its feedback position, even where the profile has let its label event go (past MAX_LABELS)."""
    feedback = upstream(FEEDBACK_STAGE, 2, 40)
    where = parse_upstream(feedback)
    stage = EntityStage("merchant_id")
    first = stage.process([(b"m1", tx(0, "a", 0), (0, 0)),
                           (b"m1", EntityEvent.label("t0", "a", 0, labelled_at_ms=DAY, fraud=True), where)], {})
    profile = first.profiles[b"m1"]
    profile.labels.clear()  # let go, as a busy terminal's legitimate labels are
    resent = stage.process([(b"m1", EntityEvent.label("t0", "a", 0, labelled_at_ms=DAY, fraud=True), where),
                            (b"m1", tx(1, "b", 2 * DAY), (0, 1))], {b"m1": profile})
    assert resent.redelivered == [0] and profile.label_hours == {DAY // HOUR_MS: [1.0, 1.0]}
    assert resent.features[0].features["merchant_label_fraud_share_7d"] == 1.0


def test_stored_profiles_are_updated_in_place_and_an_unreadable_one_starts_afresh() -> None:
    stage = EntityStage("ip")
    profile = EntityProfile()
    profile.observe(0, 1.0, card="a", source=0, offset=0)
    stored = {b"10.0.0.1": profile, b"10.0.0.2": b"\x02garbage"}
    batch = stage.process([(b"10.0.0.1", tx(1, "b", 1_000), (0, 1)), (b"10.0.0.2", tx(2, "c", 1_000), (0, 5))],
                          stored)
    assert batch.profiles[b"10.0.0.1"] is profile and profile.sources == {0: 1} and len(profile.recent) == 2
    again = stage.process([(b"10.0.0.1", tx(1, "b", 1_000), (0, 1))], stored)  # the same event redelivered
    assert again.redelivered == [0] and len(profile.recent) == 2
    assert batch.unreadable == [(1, "entity profile of 8 bytes: shorter than its 29-byte header")]
    assert batch.profiles[b"10.0.0.2"].sources == {0: 5} and len(batch.profiles[b"10.0.0.2"].recent) == 1
    unchecked = stage.process([(b"10.0.0.1", tx(1, "b", 1_000), None)], stored)  # no read position: counted
    assert unchecked.redelivered == [] and len(profile.recent) == 3


def test_feature_names_follow_the_entity_and_an_unknown_entity_is_refused() -> None:
    assert entity_feature_names("merchant_id")[0] == "merchant_n_1h" and entity_feature_names("ip")[0] == "ip_n_1h"
    assert len(set(entity_feature_names("account_id"))) == len(entity_feature_names("account_id"))
    with pytest.raises(ValueError, match="unknown entity field 'terminal': one of merchant_id, device_id, ip"):
        EntityStage("terminal")
    absent = EntityStage("device_id").absent("t9", "c9")
    assert absent.entity == "" and absent.features["device_is_new_card"] == 1.0
    assert absent.features["device_n_30d"] == 0.0


@pytest.mark.parametrize("raw,reason", [
    (b"not json", "entity event is not JSON"),
    (b"[1]", "entity event is list, not an object"),
    (b'{"v": 1, "k": "t", "x": "t1"}', "entity event lacks or mistypes 'c'"),
    (b'{"v": 1, "k": "z"}', "entity event of unknown kind 'z'"),
    (b'{"v": 2, "k": "t"}', "entity event version 2; this release reads version 1"),
])
def test_an_entity_event_that_cannot_be_read_says_why(raw: bytes, reason: str) -> None:
    with pytest.raises(StoredRecordError, match=reason.replace("(", r"\(")):
        EntityEvent.decode(raw)


def test_events_round_trip() -> None:
    for event in (tx(1, "c", 5, 0.0), EntityEvent.label("t1", "c", 5, 9, False)):
        assert EntityEvent.decode(event.encode()) == event
