"""Step features: the serving and training paths agree bit for bit; padding and flags."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
import torch

from models.dataset import StepDataset, normalise
from models.features import FEATURE_NAMES
from models.history import History, append, new_history, prior_history
from models.history_windows import scored_windows
from models.scoring import ScoringItem
from models.steps import STEP_NUMERIC, StepSpec, step_tensors, window_features
from stream.contracts.records import Transaction
from tests.models.test_train import synthetic_table

NO_FEATURES = np.zeros(len(FEATURE_NAMES))  # the sequence model reads none of them
BASE = 1_740_830_400_000  # 2025-03-01T12:00:00Z, a Saturday


def labelled_table(seed: int = 5) -> pa.Table:
    """The replay generator's data when it is available, else the local synthetic data."""
    try:
        from replay.generate import GeneratorConfig, generate
    except ImportError:
        return synthetic_table(n_cards=40, per_card=15, seed=seed)
    return generate(GeneratorConfig(seed=seed, n_transactions=600, n_cards=30, n_merchants=60))


def as_transaction(row: dict) -> Transaction:
    return Transaction(row["transaction_id"], row["card_id"], row["timestamp"], row["amount"], row["currency"],
                       row["merchant_id"], row["mcc"], row["country"], row["channel"])


def serve(transactions: list[Transaction], limit: int) -> list[ScoringItem]:
    """What the scoring agent does: prior history, then append, in arrival order."""
    histories: dict[str, History] = {}
    items = []
    for t in transactions:
        history = histories.get(t.card_id, new_history())
        items.append(ScoringItem(t, prior_history(history, t), NO_FEATURES))
        histories[t.card_id] = append(history, t, limit)
    return items


@pytest.mark.parametrize(("n", "limit"), [(8, 7), (8, 32), (33, 32)])
def test_serving_equals_training_path(n: int, limit: int) -> None:
    table = labelled_table()
    rows = table.to_pylist()
    # Redeliver every 25th transaction right after itself: both paths must skip it.
    delivered = [r for i, r in enumerate(rows) for r in ([r, r] if i % 25 == 0 else [r])]
    items = serve([as_transaction(r) for r in delivered], limit)
    first: dict[str, int] = {}
    for i, r in enumerate(delivered):
        first.setdefault(r["transaction_id"], i)
    served = step_tensors(items, n)

    ds = StepDataset(normalise(pa.Table.from_pylist(delivered, schema=table.schema)), StepSpec(n=n))
    trained = ds.tensors(np.arange(len(ds)))
    ids = [delivered[i]["transaction_id"] for i in ds.source_rows]
    pick = torch.tensor([first[t] for t in ids])
    assert len(ds) == len(rows)
    for key in ("numeric", "categorical", "mask"):
        assert torch.equal(served[key][pick], trained[key]), key
    # A redelivery sees the window the first delivery saw, if the stored history
    # still holds n - 1 entries before it (n <= history_length, as by default).
    dupes = [i for i in range(1, len(delivered)) if delivered[i] is delivered[i - 1]]
    if n <= limit:
        assert dupes and torch.equal(served["numeric"][dupes], served["numeric"][[i - 1 for i in dupes]])
    # The data covers empty, short and longer-than-window histories.
    lengths = (~trained["mask"]).sum(1)
    assert lengths.min() == 1 and (lengths < n).any() and (n > 8 or (lengths == n).any())


def test_windows_shared_with_the_features_give_the_same_tensors() -> None:
    """Items pointing into the batch's scored_windows (the score agent's) get the tensors a fresh gather gives.

    A short window slices the shared columns, one of their exact width takes them whole, a longer one
    pads them on the left (histories shorter than the window); a reordered subset (the alerted items'
    explanations) picks rows.
    """
    items = serve([as_transaction(r) for r in labelled_table().to_pylist()[:300]], limit=32)
    windows = scored_windows([i.history for i in items], [i.transaction for i in items])
    longest = windows.ts.shape[1] - 1
    assert 4 < longest < 40
    shared = [ScoringItem(i.transaction, i.history, i.features, windows, row) for row, i in enumerate(items)]
    subsets = ([7, 3, 250, 3], [123])  # the alerted items' explanations; one item scored alone
    for n in (1, 4, longest + 1, 40):
        for mine, fresh in ((shared, items), *(([shared[i] for i in s], [items[i] for i in s]) for s in subsets)):
            got, want = step_tensors(mine, n), step_tensors(fresh, n)
            for key in ("numeric", "categorical", "mask"):
                assert torch.equal(got[key], want[key]), (n, key)
    # A handle that does not match its item is refused, never read silently.
    with pytest.raises(ValueError, match="without its row"):
        step_tensors([ScoringItem(i.transaction, i.history, i.features, windows) for i in items], 8)
    wrong = [ScoringItem(i.transaction, i.history, i.features, windows, 299 - row) for row, i in enumerate(items)]
    with pytest.raises(ValueError, match="entry counts or transaction times differ"):
        step_tensors(wrong, 8)
    assert step_tensors([], 8)["mask"].shape == (0, 8)


def tx(i: int, minutes: float, amount: float = 10.0, merchant: str = "m1", country: str = "FR",
       channel: str = "pos") -> Transaction:
    return Transaction(f"t{i}", "c1", BASE + int(minutes * 60_000), amount, "EUR", merchant, "5411", country, channel)


def items_for(transactions: list[Transaction]) -> list[ScoringItem]:
    return serve(transactions, limit=32)


def test_no_prior_history_is_one_valid_step() -> None:
    x = step_tensors(items_for([tx(0, 0, amount=42.0)]), n=5)
    assert x["mask"].tolist() == [[True, True, True, True, False]]
    assert x["numeric"].dtype == torch.float32 and x["categorical"].dtype == torch.int64
    assert torch.all(x["numeric"][0, :4] == 0) and torch.all(x["categorical"][0, :4] == 0)
    assert torch.all(x["categorical"][0, 4] > 0)
    last = dict(zip(STEP_NUMERIC, x["numeric"][0, 4].tolist(), strict=True))
    assert last["log_amount"] == pytest.approx(math.log1p(42.0))
    assert last["log_gap_prev"] == pytest.approx(math.log1p(30 * 86_400))  # nothing before
    assert last["log_gap_to_scored"] == 0 and last["is_new_merchant"] == 0 and last["amount_vs_mean"] == 0


def test_one_prior_step() -> None:
    items = items_for([tx(0, 0, amount=10.0), tx(1, 2, amount=80.0, merchant="m2", country="BR")])
    x = step_tensors(items[1:], n=4)
    assert x["mask"].tolist() == [[True, True, False, False]]
    last = dict(zip(STEP_NUMERIC, x["numeric"][0, 3].tolist(), strict=True))
    prev = dict(zip(STEP_NUMERIC, x["numeric"][0, 2].tolist(), strict=True))
    assert last["log_gap_prev"] == pytest.approx(math.log1p(120.0))
    assert prev["log_gap_to_scored"] == pytest.approx(math.log1p(120.0))
    assert (last["is_new_merchant"], last["is_new_country"], last["is_new_channel"]) == (1.0, 1.0, 0.0)
    assert last["amount_vs_mean"] == pytest.approx(math.log1p(80) - math.log1p(10), abs=1e-6)


def test_longer_history_keeps_the_last_steps() -> None:
    transactions = [tx(i, 10 * i, amount=float(i + 1)) for i in range(12)]
    items = items_for(transactions)
    x = step_tensors(items[-1:], n=5)
    assert not x["mask"].any()
    amounts = x["numeric"][0, :, STEP_NUMERIC.index("log_amount")].expm1()
    assert amounts.round().tolist() == [8.0, 9.0, 10.0, 11.0, 12.0]


def test_novelty_is_relative_to_earlier_steps() -> None:
    merchants = ["a", "b", "a", "c"]
    items = items_for([tx(i, i, merchant=m) for i, m in enumerate(merchants)])
    x = step_tensors(items[-1:], n=4)
    flags = x["numeric"][0, :, STEP_NUMERIC.index("is_new_merchant")].tolist()
    assert flags == [0.0, 1.0, 0.0, 1.0]


def test_cycles_and_buckets() -> None:
    x = step_tensors(items_for([tx(0, 0)]), n=1, spec=StepSpec(n=1, channel_buckets=4))
    values = dict(zip(STEP_NUMERIC, x["numeric"][0, 0].tolist(), strict=True))
    assert values["hour_sin"] == pytest.approx(0.0, abs=1e-6) and values["hour_cos"] == pytest.approx(-1.0)
    assert values["weekday_sin"] == pytest.approx(math.sin(2 * math.pi * 5 / 7))  # Saturday
    assert 1 <= int(x["categorical"][0, 0, 3]) <= 3
    with pytest.raises(ValueError, match="spec.n"):
        step_tensors([], n=2, spec=StepSpec(n=3))
    for bad in (1, 2**32 + 1):  # a bucket beside padding's, and no more buckets than 32-bit hashes fill
        with pytest.raises(ValueError, match="bucket counts"):
            StepSpec(merchant_buckets=bad)
    assert step_tensors([], n=3)["numeric"].shape == (0, 3, len(STEP_NUMERIC))


def _random_windows(rng: np.random.Generator, b: int, n: int, in_order: bool = True) -> tuple[np.ndarray, ...]:
    """Left-padded windows with junk in the padding, repeated categories and gaps on the velocity boundaries."""
    lengths = rng.integers(1, n + 1, b)
    mask = np.arange(n)[None, :] < (n - lengths)[:, None]
    gaps = rng.choice([0, 1, 59_999, 3_599_999, 3_600_000, 3_600_001, 86_400_000, 86_400_001, 10**10], (b, n))
    ts = np.cumsum(gaps, axis=1) + 1_700_000_000_000
    if not in_order and n > 1:
        swap = rng.random(b) < 0.3
        ts[swap] = ts[swap][:, ::-1]  # event time running backwards inside those windows
    ts = np.where(mask, rng.integers(-10**13, 10**13, (b, n)), ts)
    amount = np.where(rng.random((b, n)) < 0.1, 0.01, np.round(rng.lognormal(3, 1.5, (b, n)), 2))
    amount = np.where(mask, rng.uniform(-1e6, 1e6, (b, n)), amount)
    hashes = (rng.integers(0, 5, (b, n, 4)) * 2_654_435_761 % 2**32).astype(np.uint32)
    hashes = np.where(mask[:, :, None], rng.integers(0, 2**32, (b, n, 4), dtype=np.uint64).astype(np.uint32), hashes)
    return ts, amount, hashes, mask


@pytest.mark.parametrize("in_order", [True, False])
def test_compiled_loop_equals_the_numpy_definition_bit_for_bit(in_order: bool) -> None:
    """The compiled step features are the earlier releases' NumPy values, bit for bit, on any window."""
    from tests.models.step_reference import reference_window_features

    rng = np.random.default_rng(11)
    for spec in (StepSpec(), StepSpec(n=7, merchant_buckets=3, channel_buckets=2), StepSpec(n=2), StepSpec(n=1)):
        for b in (0, 1, 2, 50, 300):
            ts, amount, hashes, mask = _random_windows(rng, b, spec.n, in_order)
            got = window_features(ts, amount, hashes, mask, spec)
            expected = reference_window_features(ts, amount, hashes, mask, spec)
            for g, e in zip(got, expected, strict=True):
                assert g.dtype == e.dtype and g.shape == e.shape
                assert np.array_equal(g, e), (spec, b, np.argwhere(g != e)[:3])
    # Amounts no parser lets through (NaN, infinite, below -1), in the training path's hands: the same NaN and inf,
    # the scored step's too, which padded steps borrow (the NumPy code's running sum then went NaN).
    ts, amount, hashes, mask = _random_windows(rng, 200, 32, in_order)
    amount[::7, -5] = np.nan
    amount[1::7, -3] = np.inf
    amount[2::7, -9] = -0.5
    amount[3::7, -1] = np.nan
    amount[4::7, -1] = np.inf
    amount[5::7, -1] = -3.0
    assert mask[3::7].any() and mask[5::7].any()
    with np.errstate(invalid="ignore"):  # log1p(-3) and inf - inf on the way, in both versions
        got = window_features(ts, amount, hashes, mask, StepSpec())
        expected = reference_window_features(ts, amount, hashes, mask, StepSpec())
    assert np.isnan(got[0]).any() and np.isinf(got[0]).any()
    assert np.array_equal(got[0], expected[0], equal_nan=True) and np.array_equal(got[1], expected[1])
    # The largest bucket count StepSpec allows: 2**32 buckets, hashes modulo 2**32 - 1.
    spec = StepSpec(merchant_buckets=2**32, channel_buckets=2)
    ts, amount, hashes, mask = _random_windows(rng, 100, 32, in_order)
    hashes[..., 0] = rng.integers(2**32 - 3, 2**32, hashes.shape[:2], dtype=np.uint64).astype(np.uint32)
    got = window_features(ts, amount, hashes, mask, spec)
    expected = reference_window_features(ts, amount, hashes, mask, spec)
    assert int(got[1][..., 0].max()) == 2**32 - 1
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


def test_served_windows_equal_the_numpy_definition_bit_for_bit() -> None:
    """Real histories through the serving path: full windows, where every count reaches its largest."""
    from tests.models.step_reference import reference_window_features

    items = serve([as_transaction(r) for r in labelled_table(seed=9).to_pylist()], limit=32)
    x = step_tensors(items, 32)
    assert (~x["mask"]).sum(1).max() == 32
    windows = scored_windows([i.history for i in items], [i.transaction for i in items], 31)
    numeric, categorical = reference_window_features(windows.ts, windows.amount, windows.hashes, ~windows.valid,
                                                     StepSpec())
    assert torch.equal(x["numeric"], torch.from_numpy(numeric))
    assert torch.equal(x["categorical"], torch.from_numpy(categorical))


def test_window_features_takes_views_and_other_dtypes_and_refuses_bad_windows() -> None:
    ts, amount, hashes, mask = _random_windows(np.random.default_rng(3), 40, 9)
    spec = StepSpec(n=8)
    expected = window_features(ts[:, 1:].copy(), amount[:, 1:].copy(), hashes[:, 1:].copy(), mask[:, 1:].copy(), spec)
    # Strided views, hashes as int64, the mask as 0/1: converted to the one compiled layout and dtypes.
    got = window_features(ts[:, 1:], amount[:, 1:], hashes[:, 1:].astype(np.int64), mask[:, 1:].astype(np.int8), spec)
    assert all(np.array_equal(g, e) for g, e in zip(got, expected, strict=True))
    for column in (ts, amount, hashes):  # read-only, as the score agent's shared windows are
        column.flags.writeable = False
    assert all(np.array_equal(g, e) for g, e in zip(window_features(ts[:, 1:], amount[:, 1:], hashes[:, 1:],
                                                                    mask[:, 1:], spec), expected, strict=True))
    from models import steps

    assert len(steps._step_kernel.signatures) == 1  # whatever the callers' layouts, dtypes and flags
    with pytest.raises(ValueError, match="shapes"):
        window_features(ts, amount[:, 1:], hashes, mask, spec)
    with pytest.raises(ValueError, match="shapes"):
        window_features(ts, amount, hashes[:, :, :3], mask, spec)
    padded_last = mask.copy()
    padded_last[5, -1] = True
    with pytest.raises(ValueError, match="last step"):
        window_features(ts, amount, hashes, padded_last, spec)


@pytest.mark.slow
def test_a_loaded_sequence_scorer_has_the_loop_compiled_before_its_first_batch() -> None:
    script = (
        "from models import steps\n"
        "from models.sequence import SequenceModel, SequenceScorer\n"
        "assert not steps._step_kernel.signatures\n"
        "SequenceScorer(SequenceModel(steps.StepSpec(n=4)), 'v')\n"
        "print(len(steps._step_kernel.signatures))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "1"


def test_the_sequence_model_reads_the_terminal_features_the_engine_computes() -> None:
    """Training (the offline fold, labels at timestamp + delay) and serving (the engine's entity stage fed the
    transactions and the labels in event time, in micro-batches) give the model the same entity tensor."""
    import random

    from models.profile_features import ENTITY_INPUTS, entity_feature_names
    from models.steps import entity_tensor
    from stream.core.entities import EntityEvent, EntityStage

    delay = 3 * 86_400_000
    table = labelled_table(seed=8)
    rows = sorted(table.to_pylist(), key=lambda r: r["timestamp"])
    assert sum(r["is_fraud"] for r in rows) >= 3
    events = sorted([(r["timestamp"], 1, i, r) for i, r in enumerate(rows)]
                    + [(r["timestamp"] + delay, 0, i, r) for i, r in enumerate(rows)], key=lambda e: e[:3])
    stage, stored = EntityStage("merchant_id"), {}
    names = entity_feature_names("merchant_id")
    at = [ENTITY_INPUTS.index(n) for n in names]
    entity_of: dict[str, np.ndarray] = {}
    rng = random.Random(3)
    i = 0
    while i < len(events):
        chunk = events[i:i + rng.randint(1, 40)]
        i += len(chunk)
        batch = [(r["merchant_id"].encode(), EntityEvent.transaction(r["transaction_id"], r["card_id"], r["timestamp"],
                                                                     r["amount"]) if kind else
                  EntityEvent.label(r["transaction_id"], r["card_id"], r["timestamp"], r["timestamp"] + delay,
                                    bool(r["is_fraud"])), None)
                 for _, kind, _, r in chunk if r["merchant_id"]]
        out = stage.process(batch, stored)
        stored.update(out.profiles)
        for f in out.features:
            vector = np.zeros(len(ENTITY_INPUTS))
            vector[at] = [f.features[n] for n in names]
            entity_of[f.transaction_id] = vector
    items = [ScoringItem(as_transaction(r), new_history(), NO_FEATURES, entity=entity_of.get(r["transaction_id"]))
             for r in rows]
    served = entity_tensor(items, names)

    ds = StepDataset(normalise(table), StepSpec(n=8))
    ds.with_entity_features(label_delay_ms=delay)
    trained = ds.tensors(np.arange(len(ds)))["entity"]
    order = {r["transaction_id"]: k for k, r in enumerate(rows)}
    ids = table.column("transaction_id").to_pylist()
    pick = torch.tensor([order[ids[j]] for j in ds.source_rows])
    assert ds.entity_names == names
    assert torch.equal(served[pick], trained)
    assert float(trained[:, names.index("merchant_fraud_30d")].max()) > 0  # the labels show
