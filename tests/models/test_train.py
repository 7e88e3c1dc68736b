"""Training: average precision, data loading, and a tiny run that learns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from models.checkpoint import load_checkpoint, read_config
from models.dataset import read_table, table_sha256
from models.train import TrainConfig, cli, train

DAY = 86_400_000
START = 1_735_689_600_000  # 2025-01-01


def synthetic_table(n_cards: int = 160, per_card: int = 25, seed: int = 0, fraud_share: float = 0.3) -> pa.Table:
    """Learnable data: fraud is a burst of large foreign e-commerce buys at new merchants."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_cards):
        home = ["FR", "DE", "ES"][c % 3]
        mu = rng.uniform(2.5, 4.0)
        favourites = rng.choice(30, size=5, replace=False)
        for t in np.sort(rng.uniform(0, 20 * DAY, per_card)).astype(np.int64):
            rows.append((f"c{c}", START + int(t), round(float(np.exp(mu + 0.3 * rng.standard_normal())), 2),
                         f"m{rng.choice(favourites)}", "5411", home, "pos", 0))
        if rng.random() < fraud_share:
            t0 = START + int(rng.uniform(1, 20) * DAY)
            for k in range(3):
                rows.append((f"c{c}", t0 + k * int(rng.uniform(60_000, 180_000)),
                             round(float(np.exp(mu) * rng.uniform(10, 30)), 2), f"mf{c}-{k}", "5732", "BR", "ecom", 1))
    rows.sort(key=lambda r: r[1])
    card, ts, amount, merchant, mcc, country, channel, fraud = zip(*rows, strict=True)
    return pa.table({
        "transaction_id": [f"t{i:06d}" for i in range(len(rows))], "card_id": list(card),
        "timestamp": pa.array(ts, pa.int64()), "amount": list(amount), "currency": ["EUR"] * len(rows),
        "merchant_id": list(merchant), "mcc": list(mcc), "country": list(country), "channel": list(channel),
        "is_fraud": pa.array(fraud, pa.int8()), "scenario": ["burst" if f else "" for f in fraud],
    })


def test_read_table_maps_columns_and_keeps_text(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_text(
        "id,card,when,value,mcc,label\n"
        "a,c1,2025-01-01T00:00:00Z,12.5,0742,0\n"
        "b,c1,2025-01-01T00:01:00+01:00,99,0742,1\n"
    )
    mapping = {"transaction_id": "id", "card_id": "card", "timestamp": "when", "amount": "value", "is_fraud": "label"}
    table = read_table(path, mapping)
    assert table["mcc"].to_pylist() == ["0742", "0742"]
    assert table["timestamp"].to_pylist() == [START, START + 60_000 - 3_600_000]
    assert table["country"].to_pylist() == ["ZZ", "ZZ"] and table["is_fraud"].to_pylist() == [0, 1]
    with pytest.raises(ValueError, match="card_id"):
        read_table(path, {"transaction_id": "id"})


def tiny_config(tmp_path: Path, table: pa.Table, **changes: object) -> TrainConfig:
    base = {"table": table, "out": tmp_path / "seq", "epochs": 1, "batch_size": 64, "lr": 3e-3, "n_steps": 8,
            "legit_per_epoch": 2_000, "val_legit": None, "threads": 1, "progress": False}
    return TrainConfig(**{**base, **changes})  # type: ignore[arg-type]


def test_tiny_training_run_beats_random(tmp_path: Path) -> None:
    table = synthetic_table()
    result = train(tiny_config(tmp_path, table))
    config = read_config(result.path)
    base_rate = config["metrics"]["val_base_rate"]
    assert 0 < base_rate < 0.1
    assert result.val_ap > 3 * base_rate, (result.val_ap, base_rate)
    assert config["training_data_hash"] == table_sha256(table)
    assert config["metrics"]["val_average_precision"] == result.val_ap
    scorer = load_checkpoint(result.path)
    assert scorer.version == result.version and scorer.spec.n == 8
    # The logit offset undoes legit subsampling, so probabilities sit near the base rate.
    assert config["normalisation"]["logit_offset"] < 0


def test_training_is_deterministic(tmp_path: Path) -> None:
    table = synthetic_table(n_cards=60, per_card=15, fraud_share=0.5)
    a = train(tiny_config(tmp_path / "a", table, legit_per_epoch=500))
    b = train(tiny_config(tmp_path / "b", table, legit_per_epoch=500))
    assert a.version == b.version and a.val_ap == b.val_ap


def test_time_budget_skips_later_epochs(tmp_path: Path) -> None:
    table = synthetic_table(n_cards=60, per_card=15, fraud_share=0.5)
    result = train(tiny_config(tmp_path, table, epochs=3, patience=3, max_minutes=0.0))
    assert len(result.val_ap_by_epoch) == 1 and read_config(result.path)["training"]["epochs_run"] == 1


def test_the_checkpoint_says_up_to_when_its_training_data_went(tmp_path: Path) -> None:
    """The engine's learner does not stack on logits of transactions the model was trained on (up to this time)."""
    from models.checkpoint import load_checkpoint
    from stream.runtime.agents.train import sequence_trained_until

    table = synthetic_table(n_cards=60, per_card=15, fraud_share=0.5)
    result = train(tiny_config(tmp_path, table, epochs=1))
    newest = max(int(t) for t in table.column("timestamp").to_pylist())
    assert read_config(result.path)["training"]["trained_until_ms"] == newest
    assert sequence_trained_until(load_checkpoint(result.path)) == newest
    assert sequence_trained_until(None) is None


def test_cli_trains_from_a_mapped_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = synthetic_table(n_cards=60, per_card=15, fraud_share=0.5)
    table = table.rename_columns(["tx", "card", *table.column_names[2:]])
    pa_csv.write_csv(table, tmp_path / "data.csv")
    argv = ["--data", str(tmp_path / "data.csv"), "--out", str(tmp_path / "ckpt"), "--columns",
            json.dumps({"transaction_id": "tx", "card_id": "card"}), "--epochs", "1", "--steps", "6",
            "--batch-size", "128", "--threads", "1", "--no-progress", "--layers", "2"]
    assert cli(argv) == 0
    assert "validation AP" in capsys.readouterr().out
    scorer = load_checkpoint(tmp_path / "ckpt")
    assert scorer.spec.n == 6 and scorer.model.arch.n_layers == 2 == read_config(tmp_path / "ckpt")["architecture"]["n_layers"]
    assert cli([*argv[:-1], "0"]) == 1
    assert "n_layers >= 1" in capsys.readouterr().err
    assert cli(["--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "x"), "--no-progress"]) == 1


def test_refuses_data_without_labels(tmp_path: Path) -> None:
    table = synthetic_table(n_cards=20, per_card=5).drop_columns(["is_fraud"])
    with pytest.raises(ValueError, match="is_fraud"):
        train(tiny_config(tmp_path, table))


def test_learning_rate_schedule_works_for_any_number_of_steps() -> None:
    """`fraudstream bench --events 20000` trained for 10 steps, where OneCycleLR divides by zero."""
    import torch

    from models.train import _schedule

    for total in range(1, 40):
        optimiser = torch.optim.AdamW(torch.nn.Linear(2, 1).parameters(), lr=1e-3)
        schedule = _schedule(optimiser, 1e-3, total)
        used = []  # the rate each of the run's steps trains with
        for _ in range(total):
            used.append(optimiser.param_groups[0]["lr"])
            optimiser.step()
            schedule.step()
        assert len(used) == total and all(0 < lr <= 1e-3 * (1 + 1e-9) for lr in used), (total, used)
        # Every run comes near the configured rate: a schedule stuck at its warm-up start would not train.
        assert max(used) >= 0.9e-3, (total, used)
        if total >= 20:  # one cycle: warm up from below, anneal to far below by the last step
            assert used[0] < 1e-3 / 10 and used[-1] < 1e-3 / 100, (total, used)
        else:  # too short to warm up: the configured rate throughout
            assert used == [1e-3] * total
