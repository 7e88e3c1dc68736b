"""A card's packed history: the same semantics as a list of entries (its changelog record: test_history_codec)."""

from __future__ import annotations

import bisect
import random
import struct

import pytest

from models.hashing import category_hash, stable_hash, txid_hash
from models.history import History, advance, append, new_history, position_of, prior_history
from models.history_codec import decode, encode
from stream.contracts.records import Transaction

T0 = 1_740_830_400_000


def tx(i: int, at: int, amount: float = 20.0, country: str = "FR", channel: str = "pos", mcc: str = "5411",
       merchant: str = "m") -> Transaction:
    return Transaction(f"t{i}", "c", at, amount, "EUR", merchant, mcc, country, channel)


def reference_advance(entries: list[tuple], t: Transaction, limit: int) -> tuple[list[tuple], list[tuple]]:
    """The definition, on a plain list of entries (what earlier releases kept)."""
    entry = (t.event_time_ms, t.amount, stable_hash(t.merchant_id), t.mcc, t.country, t.channel,
             txid_hash(t.transaction_id))
    ids = [e[6] for e in entries]
    if entry[6] in ids:
        pos = len(ids) - 1 - ids[::-1].index(entry[6])
        return entries[:pos], entries
    cut = bisect.bisect_right([e[0] for e in entries], t.event_time_ms)
    return entries[:cut], [*entries[:cut], entry, *entries[cut:]][-limit:]


def random_transactions(rng: random.Random, count: int) -> list[Transaction]:
    out: list[Transaction] = []
    for i in range(count):
        if out and rng.random() < 0.1:
            out.append(rng.choice(out))  # a redelivery
            continue
        at = T0 + rng.choice([0, 0, 1, 60_000, 3_600_000]) * rng.randrange(-3, 40)  # ties and late arrivals
        out.append(tx(i, at, amount=rng.choice([0.5, 20.0, rng.lognormvariate(3, 1)]),
                      country=rng.choice(["FR", "DE", "BR", "ÉÈ\"\\,"]), channel=rng.choice(["pos", "ecom"]),
                      mcc=rng.choice(["5411", "0742", ""]), merchant=f"m{rng.randrange(5)}"))
    return out


@pytest.mark.parametrize("limit", [1, 3, 32])
def test_advance_equals_the_list_of_entries_definition(limit: int) -> None:
    rng = random.Random(limit)
    for case in range(200):
        history, reference = new_history(), []
        for t in random_transactions(rng, rng.randrange(1, 60)):
            before = history
            prior, history = advance(history, t, limit)
            ref_prior, reference = reference_advance(reference, t, limit)
            assert [tuple(e) for e in prior] == ref_prior, case
            assert [tuple(e) for e in history] == reference, case
            assert prior_history(before, t) == prior
            assert len(history.ts) == len(history.txid) == len(history.labels) == len(history.hashes) // 4
            assert list(history.hashed("mcc")) == [category_hash(e[3]) for e in reference]
            assert list(history.hashed("merchant")) == [e[2] for e in reference]
            assert decode(encode(history)) == history, case


def test_append_agrees_with_advance() -> None:
    rng = random.Random(3)
    history = new_history()
    for t in random_transactions(rng, 200):
        kept = advance(history, t, 8)[1]
        assert append(history, t, 8) == kept
        history = kept


def test_a_history_is_never_changed_in_place() -> None:
    h1 = append(new_history(), tx(1, T0), 2)
    snapshot = encode(h1)
    append(h1, tx(2, T0 + 1), 2)
    append(h1, tx(0, T0 - 1), 2)  # inserted before
    assert encode(h1) == snapshot
    assert len(new_history()) == 0


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one entry"):
        advance(new_history(), tx(1, T0), 0)


def test_columns_must_match_the_labels() -> None:
    assert History([1], [2.0], [3], [4, 5, 6, 7], [("5411", "FR", "pos")])[0] == (1, 2.0, 4, "5411", "FR", "pos", 3)
    with pytest.raises(ValueError, match="lengths"):
        History([1], [], [], [], [])
    with pytest.raises(ValueError, match="4 per entry"):
        History([1], [2.0], [3], [4], [("5411", "FR", "pos")])


def test_slices_are_consecutive_entries() -> None:
    h = new_history()
    for i in range(5):
        h = append(h, tx(i, T0 + i, country=f"C{i}"), 32)
    assert [e.country for e in h[1:3]] == ["C1", "C2"] and [e.country for e in h[-2:]] == ["C3", "C4"]
    assert len(h[4:2]) == 0 and h[-1].country == "C4" and h[-5].country == "C0"
    with pytest.raises(ValueError, match="consecutive"):
        h[::2]


def test_a_transaction_hash_straddling_two_entries_is_not_a_redelivery() -> None:
    """position_of searches the column's bytes first; a match across two entries' bytes is not a hit."""
    import sys

    t = tx(9, T0)
    raw = txid_hash(t.transaction_id).to_bytes(8, sys.byteorder)
    # Two entries whose bytes, side by side, contain t's hash at offset 4.
    first, second = (int.from_bytes(b, sys.byteorder) for b in (b"\0" * 4 + raw[:4], raw[4:] + b"\0" * 4))
    history = History(ts=[T0, T0], amount=[1.0, 1.0], txid=[first, second], hashes=[0] * 8,
                      labels=[("5411", "FR", "pos")] * 2)
    assert raw in history.txid.tobytes()
    assert position_of(history, t) is None
    prior, kept = advance(history, t, 32)
    assert prior == history and len(kept) == 3


def test_a_transaction_hash_in_another_field_is_not_a_redelivery() -> None:
    """The rows hold the hash's bytes in an event time and an amount too; only a row's hash field counts."""
    t = tx(9, T0)
    raw = txid_hash(t.transaction_id).to_bytes(8, "little")
    (as_int,), (as_float,) = struct.unpack("<q", raw), struct.unpack("<d", raw)
    history = History(ts=[as_int, T0], amount=[1.0, as_float], txid=[1, 2], hashes=[0] * 8,
                      labels=[("5411", "FR", "pos")] * 2)
    assert encode(history).count(raw) == 2
    assert position_of(history, t) is None
    twice = append(append(history, t, 32), t, 32)
    assert len(twice) == 3 and position_of(twice, t) == 2
