"""A batch of histories as right-aligned arrays, against a second, plain-Python layout of the same entries."""

from __future__ import annotations

import random

import numpy as np
import pytest

from models.hashing import category_hash, stable_hash
from models.history import History, append, new_history
from models.history_windows import Columns, check_windows, gather, scored_windows
from stream.contracts.records import Transaction
from tests.models.test_history import T0, random_transactions, tx


def _entry_hashes(merchant: int, mcc: str, country: str, channel: str) -> list[int]:
    return [merchant, category_hash(mcc), category_hash(country), category_hash(channel)]


def reference_gather(histories: list[History], width: int | None, trailing: int = 0) -> dict[str, list]:
    """The definition: row r is history r's last ``width`` entries, right-aligned in ``width`` columns, then
    ``trailing`` empty columns; empty cells are zero and not valid."""
    if width is None:
        width = max((len(h) for h in histories), default=0)
    out: dict[str, list] = {"ts": [], "amount": [], "hashes": [], "valid": [], "lengths": []}
    for h in histories:
        entries = list(h)[len(h) - min(len(h), width):]
        pad, tail = width - len(entries), trailing
        out["ts"].append([0] * pad + [e.ts for e in entries] + [0] * tail)
        out["amount"].append([0.0] * pad + [e.amount for e in entries] + [0.0] * tail)
        out["hashes"].append([[0] * 4] * pad + [_entry_hashes(e.merchant, e.mcc, e.country, e.channel)
                                                for e in entries] + [[0] * 4] * tail)
        out["valid"].append([False] * pad + [True] * len(entries) + [False] * tail)
        out["lengths"].append(len(entries))
    return out


def as_lists(columns: Columns) -> dict[str, list]:
    return {name: getattr(columns, name).tolist() for name in Columns._fields}


def random_histories(rng: random.Random, count: int) -> list[History]:
    out = []
    for _ in range(count):
        h = new_history()
        for t in random_transactions(rng, rng.randrange(0, 8)):
            h = append(h, t, 6)
        out.append(h)
    return out


@pytest.mark.parametrize("width", [None, 0, 1, 3, 6, 9])
@pytest.mark.parametrize("trailing", [0, 1, 2])
def test_gather_is_the_right_aligned_layout(width: int | None, trailing: int) -> None:
    rng = random.Random(7 + (width or 0) + 10 * trailing)
    for _ in range(20):
        histories = random_histories(rng, rng.randrange(0, 6))
        columns = gather(histories, width, trailing)
        assert as_lists(columns) == reference_gather(histories, width, trailing)
        span = (max((len(h) for h in histories), default=0) if width is None else width) + trailing
        assert columns.ts.shape == columns.amount.shape == columns.valid.shape == (len(histories), span)
        assert columns.hashes.shape == (len(histories), span, 4)
        assert (columns.ts.dtype, columns.amount.dtype, columns.hashes.dtype, columns.valid.dtype,
                columns.lengths.dtype) == (np.int64, np.float64, np.uint32, np.bool_, np.int64)


def test_gather_by_hand() -> None:
    h = new_history()
    for i, (amount, country) in enumerate([(1.5, "FR"), (2.5, "DE"), (3.5, "BR")]):
        h = append(h, tx(i, T0 + i, amount=amount, country=country, merchant=f"m{i}"), 32)
    columns = gather([h, new_history(), h[:1]], width=2, trailing=1)
    assert columns.ts.tolist() == [[T0 + 1, T0 + 2, 0], [0, 0, 0], [0, T0, 0]]
    assert columns.amount.tolist() == [[2.5, 3.5, 0.0], [0.0, 0.0, 0.0], [0.0, 1.5, 0.0]]
    assert columns.valid.tolist() == [[True, True, False], [False, False, False], [False, True, False]]
    assert columns.lengths.tolist() == [2, 0, 1]
    assert columns.hashes[0, 0].tolist() == [stable_hash("m1"), category_hash("5411"), category_hash("DE"),
                                             category_hash("pos")]
    assert columns.hashes[1].tolist() == [[0] * 4] * 3


def test_scored_windows_add_each_transaction_as_the_last_column() -> None:
    rng = random.Random(11)
    for width in (None, 2):
        histories = random_histories(rng, 5)
        transactions = [Transaction(f"s{i}", "c", T0 + 10**6 + i, 3.25 + i, "EUR", f"shop{i}", "0742", "ÉÈ",
                                    "ecom") for i in range(5)]
        w = scored_windows(histories, transactions, width)
        expected = reference_gather(histories, width, trailing=1)
        for r, t in enumerate(transactions):
            expected["ts"][r][-1] = t.event_time_ms
            expected["amount"][r][-1] = t.amount
            expected["hashes"][r][-1] = _entry_hashes(stable_hash(t.merchant_id), t.mcc, t.country, t.channel)
            expected["valid"][r][-1] = True
        assert as_lists(w) == expected
        assert not any(column.flags.writeable for column in w)  # shared by the batch's models: read-only
        if width is None:  # every entry: the windows the score agent hands the features
            check_windows(w, histories, transactions)


def test_windows_of_another_batch_are_refused() -> None:
    a = [append(new_history(), tx(1, T0), 32), new_history(), append(new_history(), tx(2, T0 + 5), 32)]
    ta = [tx(10, T0 + 100), tx(11, T0 + 200), tx(12, T0 + 300)]
    w = scored_windows(a, ta)
    check_windows(w, a, ta)  # its own batch: accepted
    check_windows(w, a[1:], ta[1:], rows=[1, 2])  # some of its rows, named
    differ = "windows are not scored_windows\\(histories, transactions\\) of these items: their entry counts or " \
             "transaction times differ"
    with pytest.raises(ValueError, match=differ):
        check_windows(w, a[:2], ta[:2])  # a row too many
    with pytest.raises(ValueError, match=differ):
        check_windows(w, a[1:], ta[1:], rows=[0, 2])  # other rows of the same batch
    with pytest.raises(ValueError, match=differ):
        check_windows(w, a, [*ta[:2], tx(12, T0 + 301)])  # another transaction time
    with pytest.raises(ValueError, match=differ):
        check_windows(w, [a[0], a[0], a[2]], ta)  # another entry count
    with pytest.raises(ValueError, match="^2 histories for 3 transactions$"):
        scored_windows(a[:2], ta)


def test_gather_adds_no_trailing_column_unless_asked() -> None:
    h = append(append(new_history(), tx(1, T0), 32), tx(2, T0 + 7), 32)
    assert gather([h], None).ts.tolist() == [[T0, T0 + 7]]
    assert gather([h], 1).valid.tolist() == [[True]]
