"""A card's packed history: the same semantics as a list of entries (its changelog record: test_history_codec)."""

from __future__ import annotations

import bisect
import random
import struct
from array import array

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


def test_a_transaction_hash_straddling_two_rows_is_not_a_redelivery() -> None:
    """position_of searches the rows' bytes; a match across one row's merchant hash and the next row's event time
    (the hash at no row's hash offset) is not a hit."""
    t = tx(9, T0)
    raw = txid_hash(t.transaction_id).to_bytes(8, "little")
    merchant, next_ts = int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:] + b"\0" * 4, "little")
    history = History(ts=[T0, next_ts], amount=[1.0, 1.0], txid=[1, 2], hashes=[merchant, 0, 0, 0, 0, 0, 0, 0],
                      labels=[("5411", "FR", "pos")] * 2)
    assert raw in history.rows, "the hash's bytes must be there, across the two rows"
    assert position_of(history, t) is None


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


def test_entries_with_the_same_categories_share_one_tuple_of_strings() -> None:
    """Memory per card: every entry points at one shared (mcc, country, channel), its hashes computed once.

    Categories no other test uses (the module keeps a cache across histories; these miss it).
    """
    import uuid

    mcc, country, other = (uuid.uuid4().hex for _ in range(3))
    h = new_history()
    for i, c in enumerate([country, other, country]):
        h = append(h, tx(i, T0 + i, mcc=mcc, country=c, channel=f"ch-{mcc}"), 32)
    assert h.labels == ((mcc, country, f"ch-{mcc}"), (mcc, other, f"ch-{mcc}"), (mcc, country, f"ch-{mcc}"))
    assert h.labels[0] is h.labels[2]  # the same tuple, not an equal one
    assert [h.hashed(f) for f in ("mcc", "country", "channel")] == [
        array("I", [category_hash(mcc)] * 3), array("I", [category_hash(c) for c in (country, other, country)]),
        array("I", [category_hash(f"ch-{mcc}")] * 3)]


def test_the_last_of_two_entries_with_the_hash_is_the_redelivery_found() -> None:
    """Entries 0 and 2 carry t's hash, and its bytes also sit unaligned in entry 3's event time: entry 2 is found."""
    t = tx(9, T0)
    h = txid_hash(t.transaction_id)
    (as_int,) = struct.unpack("<q", h.to_bytes(8, "little"))
    history = History(ts=[T0, T0, T0, as_int], amount=[1.0] * 4, txid=[h, 5, h, 6], hashes=[0] * 16,
                      labels=[("5411", "FR", "pos")] * 4)
    assert position_of(history, t) == 2
    assert [i for i, e in enumerate(history) if e.txid == h] == [0, 2]


def test_equality_needs_the_same_rows_hashes_and_labels() -> None:
    def one(ts: int = 1, hashes: tuple = (4, 5, 6, 7), labels: tuple = ("5411", "FR", "pos")) -> History:
        return History([ts], [2.0], [3], list(hashes), [labels])

    assert one() == one()
    assert one(ts=2) != one()  # rows differ
    assert one(hashes=(4, 5, 6, 8)) != one()  # only the category hashes differ
    assert one(labels=("5411", "DE", "pos")) != one()  # only the labels differ
    assert one().__eq__([tuple(one()[0])]) is NotImplemented


def test_the_columns_are_kept_as_given() -> None:
    """Full-range hashes (uint32), event times before 1970, float amounts: read back unchanged, sliced too."""
    big = [2**32 - 1, 2**31, 0, 1, 7, 8, 9, 10]
    h = History([-1, 2], [0.5, -0.0], [2**64 - 1, 0], big, [("5411", "FR", "pos"), ("0742", "DE", "ecom")])
    assert (list(h.ts), list(h.amount), list(h.txid), list(h.hashes)) == ([-1, 2], [0.5, -0.0], [2**64 - 1, 0], big)
    assert list(h[1:2].hashes) == big[4:] and list(h[0:1].ts) == [-1]
    assert repr(h[0:1]) == "History([(-1, 0.5, 4294967295, '5411', 'FR', 'pos', 18446744073709551615)])"


def test_a_strided_slice_is_refused_word_for_word() -> None:
    h = append(append(new_history(), tx(1, T0), 32), tx(2, T0 + 1), 32)
    with pytest.raises(ValueError, match="^a history slices into consecutive entries only$"):
        h[::2]
