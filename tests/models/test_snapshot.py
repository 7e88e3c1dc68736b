"""Snapshots: only what we signed is ever unpickled."""

from __future__ import annotations

import pickle
import struct

import pytest

from models.online import OnlineLearner
from models.snapshot import MAGIC, SnapshotError, peek_header, seal, unseal, verify

KEY = b"k" * 32


def trained() -> OnlineLearner:
    learner = OnlineLearner(feature_names=("a",))
    for i in range(50):
        learner.learn({"a": float(i % 2)}, i % 2)
    return learner


def test_round_trip_keeps_predictions_and_meta():
    learner = trained()
    back, meta = unseal(seal(learner, KEY, {"seq": 7, "offset": 41}), KEY)
    assert (meta["seq"], meta["offset"], meta["n_labels"]) == (7, 41, 50)
    assert back.predict_many([{"a": 1.0}])[0] == learner.predict_many([{"a": 1.0}])[0]


def _payload_span(blob: bytes) -> tuple[int, int]:
    """Where the pickled payload sits: after MAGIC, the u32 header length and the header; before the 32-byte HMAC."""
    (n,) = struct.unpack(">I", blob[len(MAGIC):len(MAGIC) + 4])
    return len(MAGIC) + 4 + n, len(blob) - 32


def _flip_in_payload(blob: bytes) -> bytes:
    start, end = _payload_span(blob)
    i = (start + end) // 2
    return blob[:i] + bytes([blob[i] ^ 0xFF]) + blob[i + 1:]


def _swap_payload(blob: bytes) -> bytes:
    """Keep the signed header and the HMAC, put another (valid) learner's pickle in between."""
    start, end = _payload_span(blob)
    return blob[:start] + pickle.dumps(OnlineLearner(prior=0.99), protocol=pickle.HIGHEST_PROTOCOL) + blob[end:]


NOT_VERIFIED = "signature does not verify"


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda b: b[:-40], NOT_VERIFIED),                                     # truncated inside the payload
    (lambda b: b[:len(MAGIC) + 10], "not a fraudstream snapshot"),         # cut inside the header: too short
    (lambda b: b[:len(MAGIC) + 40] + b"\0" * 32, "snapshot truncated"),    # header runs past the end
    (lambda b: b"X" + b[1:], "not a fraudstream snapshot"),                # wrong magic
    (lambda b: b.replace(b'"seq": 7', b'"seq": 9'), NOT_VERIFIED),         # header edited
    (_flip_in_payload, NOT_VERIFIED),                                      # payload edited (past the header)
    (_swap_payload, NOT_VERIFIED),                                         # payload replaced by another pickle
    (lambda b: pickle.dumps(OnlineLearner()), "not a fraudstream snapshot"),  # a bare pickle
], ids=["truncated", "too-short", "header-past-end", "magic", "header-edited", "payload-edited", "payload-swapped",
        "bare-pickle"])
def test_any_tampering_is_refused(mutate, match):
    blob = seal(trained(), KEY, {"seq": 7})
    with pytest.raises(SnapshotError, match=match):
        unseal(mutate(blob), KEY)


def test_payload_edits_land_in_the_payload():
    """The helpers above edit the pickle, not the header (the header alone is covered by "header-edited")."""
    blob = seal(trained(), KEY, {"seq": 7})
    start, end = _payload_span(blob)
    head = blob[:start]
    for mutated in (_flip_in_payload(blob), _swap_payload(blob)):
        assert mutated[:start] == head and mutated[-32:] == blob[-32:] and mutated[start:-32] != blob[start:end]
    assert pickle.loads(blob[start:end]).n_labels == 50  # the span is exactly the pickled learner


def test_a_swapped_payload_is_refused_before_it_is_unpickled(monkeypatch):
    """The HMAC covers the pickle: a foreign payload behind a genuine header is refused and never unpickled."""
    import models.snapshot

    loaded: list[bytes] = []
    monkeypatch.setattr(models.snapshot.pickle, "loads", lambda data, *a, **k: loaded.append(data))
    blob = seal(trained(), KEY, {"seq": 7})
    with pytest.raises(SnapshotError, match=NOT_VERIFIED):
        verify(_swap_payload(blob), KEY)
    with pytest.raises(SnapshotError, match=NOT_VERIFIED):
        unseal(_swap_payload(blob), KEY)
    assert loaded == []


def test_other_key_refused_and_short_keys_rejected():
    blob = seal(trained(), KEY, {"seq": 1})
    with pytest.raises(SnapshotError, match="does not verify"):
        unseal(blob, b"x" * 32)
    with pytest.raises(SnapshotError, match="at least 16 bytes"):
        seal(trained(), b"short", {})
    assert peek_header(blob)["seq"] == 1


# Hand-built blobs: the layout is MAGIC | u32 big-endian header length | header JSON | payload | HMAC-SHA256.
def _signed(head: bytes, payload: bytes, length: int | None = None, key: bytes = KEY) -> bytes:
    """A blob laid out by hand and signed with ``key`` (``length``: what the length field says, if not the truth)."""
    import hashlib
    import hmac

    body = MAGIC + struct.pack(">I", len(head) if length is None else length) + head + payload
    return body + hmac.new(key, body, hashlib.sha256).digest()


def test_each_refusal_says_exactly_why():
    """The whole message, not a part of it: an operator reads it, and a refusal for another reason must fail."""
    import re

    def refused(blob: bytes, message: str) -> None:
        with pytest.raises(SnapshotError, match=f"^{re.escape(message)}$"):
            unseal(blob, KEY)

    not_ours = "not a fraudstream snapshot (unsigned or another format)"
    refused(MAGIC + b"\0" * 35, not_ours)                   # 41 bytes: one short of magic, length and HMAC
    refused(MAGIC + b"\0\0\0\0" + b"\0" * 32, "snapshot header is not JSON")  # 42 bytes: the shortest that is read
    refused(_signed(b"{not json", b"payload"), "snapshot header is not JSON")
    refused(_signed(b"{}", b"payload", length=0xFFFFFFFF), "snapshot truncated")  # the length is unsigned
    blob = seal(trained(), KEY, {"seq": 7})
    (n,) = struct.unpack(">I", blob[len(MAGIC):len(MAGIC) + 4])
    into_hmac = len(blob) - 32 - (len(MAGIC) + 4) + 1       # a header that would run one byte into the HMAC
    refused(blob[:len(MAGIC)] + struct.pack(">I", into_hmac) + blob[len(MAGIC) + 4:], "snapshot truncated")
    refused(seal(trained(), KEY, {})[:-1] + b"\0", "snapshot signature does not verify (tampered, or signed with "
                                                  "another key)")
    with pytest.raises(SnapshotError, match=r"^signing key must be at least 16 bytes$"):
        seal(trained(), b"k" * 15, {})
    assert n < into_hmac


def test_a_header_with_no_payload_is_read_and_its_signature_checked():
    """The header may end exactly where the HMAC starts (an empty payload): read, verified, not called truncated."""
    header, payload = verify(_signed(b'{"seq": 3}', b""), KEY)
    assert (header, payload) == ({"seq": 3}, b"")


def test_a_16_byte_key_is_long_enough():
    key = b"0123456789abcdef"
    assert len(key) == 16
    learner, meta = unseal(seal(trained(), key, {"seq": 2}), key)
    assert (meta["seq"], learner.n_labels) == (2, 50)


def test_a_signed_payload_that_is_not_a_learner_is_refused_by_type():
    """Even a correctly signed pickle must hold an OnlineLearner (a key reused elsewhere signs other things)."""
    blob = _signed(b'{"seq": 1}', pickle.dumps({"not": "a learner"}))
    assert verify(blob, KEY)[0] == {"seq": 1}
    with pytest.raises(SnapshotError, match=r"^signed snapshot holds a dict$"):
        unseal(blob, KEY)


def test_the_header_records_counts_time_and_the_payload_digest(monkeypatch):
    import hashlib
    import json

    import models.snapshot

    monkeypatch.setattr(models.snapshot.time, "time", lambda: 1_750_000_000.25)
    blob = seal(trained(), KEY, {"seq": 4, "offset": 9})
    start, end = _payload_span(blob)
    head = blob[len(MAGIC) + 4:start]
    header = json.loads(head)
    assert header == {"seq": 4, "offset": 9, "kind": "online", "trees": None, "n_labels": 50, "n_fraud": 25, "created_at": 1_750_000_000_250,
                      "payload_sha256": hashlib.sha256(blob[start:end]).hexdigest()}
    assert list(header) == sorted(header)  # written with sorted keys: the same learner and meta, the same bytes
    assert peek_header(blob) == header == unseal(blob, KEY)[1]
