"""The label join over in-memory records: join, park, refuse, duplicate; no broker."""

from __future__ import annotations

import orjson

from stream.contracts.records import Limits
from stream.core.labels import DUPLICATE, Joined, LabelJoin, Park, Rejected
from stream.core.packing import pack_inputs, unpack_inputs
from stream.core.source import InMemoryRecord
from stream.core.stored import FeatureEntry, ParkedLabel, SourceMessage

LIMITS = Limits(max_bytes=100_000, min_time_ms=0, max_future_skew_ms=10 * 365 * 86_400_000)
DAY = 86_400_000
T0 = 1_772_359_200_000


def label(tid: str = "t1", card: str = "c1", value: str = "fraud", labelled_at: int | None = None,
          offset: int = 3) -> InMemoryRecord:
    body: dict = {"transaction_id": tid, "card_id": card, "label": value, "source": "analyst"}
    if labelled_at is not None:
        body["labelled_at"] = labelled_at
    return InMemoryRecord(card.encode(), orjson.dumps(body), partition=1, offset=offset, topic="feedback")


def table(entry: FeatureEntry | None = None) -> dict[bytes, dict]:
    return {} if entry is None else {b"t1": entry.to_json()}


JOIN = LabelJoin(LIMITS, feature_retention_ms=30 * DAY)
STORED = FeatureEntry("c1", T0, 1, pack_inputs([0.25, -1.0, 3.5]))


def test_a_label_joins_the_inputs_its_transaction_was_scored_with() -> None:
    outcome = JOIN.receive(label(), table(STORED).get, watermark_ms=None)
    assert isinstance(outcome, Joined) and outcome.key == b"t1"
    assert outcome.example.inputs == [0.25, -1.0, 3.5] and outcome.example.label == 1
    assert outcome.example.event_time_ms == T0 and outcome.example.source == "analyst"
    assert outcome.example.origin.offset == 3 and outcome.example.origin.topic == "feedback"
    assert outcome.entry == STORED._replace(label=1, source="analyst")


def test_the_same_label_twice_is_learned_once_and_a_changed_label_is_learned_again() -> None:
    t = table(STORED)
    first = JOIN.receive(label(), t.get, None)
    assert isinstance(first, Joined)
    t[b"t1"] = first.entry.to_json()
    assert JOIN.receive(label(), t.get, None) is DUPLICATE
    corrected = JOIN.receive(label(value="legit"), t.get, None)
    assert isinstance(corrected, Joined) and corrected.example.label == 0


def test_a_label_before_its_transaction_is_parked_until_due() -> None:
    parked = JOIN.receive(label(labelled_at=T0 + DAY), {}.get, watermark_ms=T0 - DAY)
    assert isinstance(parked, Park) and parked.key == b"t1"
    assert parked.parked.due_ms == T0 + DAY  # labelled_at: its transaction happened before
    assert parked.parked.message.value == label(labelled_at=T0 + DAY).value  # the record, for the DLQ later
    no_time = JOIN.receive(label(), {}.get, watermark_ms=T0 - DAY)
    assert isinstance(no_time, Park) and no_time.parked.due_ms == T0 - DAY  # from where the stream stands
    # ... and joined when the transaction is scored, from the parked record alone.
    completed = JOIN.complete(parked.parked.to_json(), STORED.to_json())
    assert isinstance(completed, Joined) and unpack_inputs(completed.example.inputs) == [0.25, -1.0, 3.5]


def test_refusals_name_their_reason() -> None:
    wrong_card = JOIN.receive(label(card="c2"), table(STORED).get, None)
    assert isinstance(wrong_card, Rejected) and wrong_card.reason == "card_mismatch"
    assert "'c1'" in wrong_card.detail and "'c2'" in wrong_card.detail
    late = JOIN.receive(label(labelled_at=T0 + 30 * DAY + 1), table(STORED).get, None)
    assert isinstance(late, Rejected) and late.reason == "expired_transaction"
    in_time = JOIN.receive(label(labelled_at=T0 + 30 * DAY), table(STORED).get, None)
    assert isinstance(in_time, Joined)  # exactly at the retention: still learned
    broken = JOIN.receive(label(), table(STORED._replace(inputs="not-base64!")).get, None)
    assert isinstance(broken, Rejected) and broken.reason == "corrupt_inputs"
    missing = JOIN.receive(label(), {b"t1": {"c": "c1"}}.get, None)
    assert isinstance(missing, Rejected) and missing.reason == "corrupt_inputs"
    bad = JOIN.receive(InMemoryRecord(b"c1", b'{"transaction_id": "t1"}', topic="feedback"), table(STORED).get, None)
    assert isinstance(bad, Rejected) and bad.reason == "missing_field" and bad.origin.value == b'{"transaction_id": "t1"}'


def test_a_damaged_parked_label_is_reported_not_raised() -> None:
    outcome = JOIN.complete({"due": 1, "tp": "feedback"}, STORED.to_json())
    assert isinstance(outcome, Rejected) and outcome.reason == "corrupt_pending" and outcome.origin is None


def test_every_refusal_carries_the_label_record_and_a_detail_an_operator_can_act_on() -> None:
    """The DLQ gets the label as it came (``origin``) and a detail naming the transaction, the cards, the delay."""
    join = LabelJoin(LIMITS, feature_retention_ms=30 * DAY)  # built here: a join built at import would hide __init__
    record = label(card="c2")
    wrong_card = join.receive(record, table(STORED).get, None)
    assert wrong_card == Rejected("card_mismatch", "transaction 't1' was scored for card 'c1', label says 'c2'",
                                  SourceMessage.of(record))
    record = label(labelled_at=T0 + 31 * DAY + 1_499)
    late = join.receive(record, table(STORED).get, None)
    # 31 days and 1.499 s after the transaction = 2,678,401 s; the retention, 30 days = 2,592,000 s.
    assert late == Rejected("expired_transaction", "label for 't1' came 2678401 s after the transaction, beyond the "
                            "2592000 s retention", SourceMessage.of(record))
    record = label()
    broken = join.receive(record, table(STORED._replace(inputs="not-base64!")).get, None)
    assert isinstance(broken, Rejected) and broken.origin == SourceMessage.of(record)
    assert broken.detail.startswith("scoring-time inputs of 't1' unreadable: ")
    missing = join.receive(record, {b"t1": {"c": "c1"}}.get, None)
    assert isinstance(missing, Rejected) and missing.origin == SourceMessage.of(record)
    assert missing.detail.startswith("scoring-time inputs of 't1' unreadable: ")
    bad = InMemoryRecord(b"c1", b'{"transaction_id": "t1", "card_id": "c1"}', topic="feedback")
    assert join.receive(bad, table(STORED).get, None) == Rejected("missing_field", "label is required",
                                                                  SourceMessage.of(bad))


def test_a_parked_label_completes_with_its_own_record_or_is_refused_with_it() -> None:
    kept = SourceMessage("feedback", 1, 3, b"c1", label().value)
    completed = JOIN.complete(ParkedLabel(kept, 0).to_json(), STORED.to_json())
    assert isinstance(completed, Joined) and completed.example.origin == kept  # the DLQ/commit still find it
    unreadable = SourceMessage("feedback", 2, 8, b"c1", b'{"transaction_id": "t1", "card_id": "c1"}')
    assert JOIN.complete(ParkedLabel(unreadable, 0).to_json(), STORED.to_json()) == Rejected(
        "missing_field", "label is required", unreadable)
    damaged = JOIN.complete({"due": 1, "tp": "feedback"}, STORED.to_json())
    assert isinstance(damaged, Rejected) and damaged.detail.startswith("parked label unreadable: ")


def test_duplicate_reads_as_its_name() -> None:
    assert repr(DUPLICATE) == "DUPLICATE"  # how it appears in logs and test failures
