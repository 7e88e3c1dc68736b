"""A card's history as its changelog record: the current format, what earlier releases wrote, and damaged records."""

from __future__ import annotations

import random
import struct

import numpy as np
import orjson
import pytest

from models.hashing import stable_hash, txid_hash
from models.history import History, append, new_history
from models.history_codec import decode, encode
from stream.kafka.state import HistoryCodec
from tests.models.test_history import T0, random_transactions, tx


def test_old_json_changelog_records_decode_to_the_same_history() -> None:
    txs = [tx(i, T0 + i * 60_000, amount=10.5 + i, country="BR" if i % 2 else "FR") for i in range(5)]
    history = new_history()
    for t in txs:
        history = append(history, t, 32)
    # What earlier releases wrote to the changelog: a JSON list of 7-field entries.
    legacy = orjson.dumps([list(e) for e in history])
    assert decode(legacy) == history
    assert decode(b"[]") == new_history()


def format_1(history: History) -> bytes:
    """What the previous release's encode wrote: the same values column after column."""
    return b"".join((struct.pack("<BH", 1, len(history)),
                     np.asarray(history.ts, dtype="<i8").tobytes(), np.asarray(history.amount, dtype="<f8").tobytes(),
                     np.asarray(history.txid, dtype="<u8").tobytes(),
                     np.asarray(history.hashed("merchant"), dtype="<u4").tobytes(), orjson.dumps(history.labels)))


def test_the_previous_releases_records_decode_to_the_same_history() -> None:
    rng = random.Random(11)
    history = new_history()
    for t in random_transactions(rng, 300):
        history = append(history, t, 32)
        assert decode(format_1(history)) == history
    assert decode(format_1(new_history())) == new_history()


def test_a_record_is_its_rows_then_its_labels() -> None:
    history = append(append(new_history(), tx(1, T0, amount=2.5, merchant="m1"), 32), tx(2, T0 + 1), 32)
    raw = encode(history)
    assert raw[:3] == struct.pack("<BH", 2, 2)
    assert struct.unpack_from("<qdQI", raw, 3) == (T0, 2.5, txid_hash("t1"), stable_hash("m1"))
    assert orjson.loads(raw[3 + 2 * 28:]) == [["5411", "FR", "pos"]] * 2


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "not a history record"),
    (b"\x03\x00\x00[]", "not a history record"),
    (b"\x01\x02\x00" + bytes(50), "shorter than its 2 entries need"),
    (b"\x02\x02\x00" + bytes(50), "shorter than its 2 entries need"),
    (b"\x02\x01\x00" + bytes(28) + b'[["a","b"]]', "labels are not 1"),
    (b"\x02\x00\x00" + b'[["a","b","c"]]', "labels are not 0"),
    (b"\x01\x00\x00{}", "labels are not 0"),
    (b"\x01\x01\x00" + bytes(28) + b'[["a","b"]]', "labels are not 1"),
    (b"\x01\x01\x00" + bytes(28) + b'[["a","b",3]]', "labels are not 1"),
    (b'[[1, 2.0, 3, "m", "c"]]', "not a list of 7-field entries"),
    (b'[[1, 2.0, null, "m", "c", "h", 4]]', "wrong types"),
    (b"[1, 2", "unexpected"),
])
def test_a_damaged_record_is_a_precise_error(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode(raw)


def test_the_table_codec_round_trips_and_refuses_other_values() -> None:
    codec = HistoryCodec()
    history = append(new_history(), tx(1, T0, country="日本"), 32)
    assert codec.loads(codec.dumps(history)) == history
    assert codec.loads(codec.dumps(history))[0].country == "日本"
    with pytest.raises(TypeError, match="History values"):
        codec.dumps([[1, 2.0, 3, "m", "c", "h", 4]])


def test_a_record_holds_at_most_65535_entries() -> None:
    long = History(*(([0] * 70_000,) * 3), [0] * 280_000, [("5411", "FR", "pos")] * 70_000)
    with pytest.raises(ValueError, match="at most 65535 entries"):
        encode(long)


@pytest.mark.parametrize(("raw", "message"), [
    (b"\x07abc", "not a history record: starts with b'\\x07ab'"),
    (b"\x02\x01\x00" + bytes(28), "history record of 31 bytes is shorter than its 1 entries need (33 bytes)"),
    (b"\x02\x01\x00" + bytes(29), "history record of 32 bytes is shorter than its 1 entries need (33 bytes)"),
    (b'[[1, 2.0, 3, "m", "c"]]', "history JSON is not a list of 7-field entries"),
])
def test_a_damaged_record_is_refused_word_for_word(raw: bytes, message: str) -> None:
    """The whole message: what an operator reads when a changelog record will not load."""
    import re

    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        decode(raw)


def test_a_record_of_exactly_65535_entries_is_written() -> None:
    full = History(*(([0] * 65_535,) * 3), [0] * 262_140, [("5411", "FR", "pos")] * 65_535)
    raw = encode(full)
    assert raw[:3] == b"\x02\xff\xff" and len(decode(raw)) == 65_535
