"""The transaction generator: contract, labels, reproducibility, files."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from replay.generate import CHANNELS, SCENARIOS, SCHEMA, GeneratorConfig, cli, generate, read, write

SMALL = GeneratorConfig(seed=7, n_transactions=20_000, n_cards=1_000, n_merchants=300, days=14)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return generate(SMALL)


def column(table: pa.Table, name: str) -> np.ndarray:
    return table[name].to_numpy(zero_copy_only=False)


def test_same_seed_gives_identical_table(table: pa.Table) -> None:
    assert generate(SMALL).equals(table)


def test_other_seed_gives_different_table(table: pa.Table) -> None:
    other = generate(replace(SMALL, seed=8))
    assert not other.equals(table)
    assert not np.array_equal(column(other, "amount"), column(table, "amount"))


def test_columns_and_types_follow_the_contract(table: pa.Table) -> None:
    assert table.schema.equals(SCHEMA)
    assert table.column_names == [
        "transaction_id", "card_id", "timestamp", "amount", "currency", "merchant_id",
        "mcc", "country", "channel", "is_fraud", "scenario",
    ]
    assert table.num_rows == SMALL.n_transactions
    assert len(set(column(table, "transaction_id"))) == table.num_rows
    assert set(column(table, "channel")) <= set(CHANNELS)
    assert all(len(m) == 4 and m.isdigit() for m in set(column(table, "mcc")))
    assert all(len(c) == 2 and c.isupper() for c in set(column(table, "country")))
    assert all(len(c) == 3 and c.isupper() for c in set(column(table, "currency")))
    assert Counter(column(table, "currency")).most_common(1)[0][0] == "EUR"


def test_amounts_are_positive_with_two_decimals(table: pa.Table) -> None:
    amount = column(table, "amount")
    assert (amount > 0).all()
    assert np.allclose(amount * 100, np.round(amount * 100))


def test_timestamps_are_sorted_epoch_ms_inside_the_window(table: pa.Table) -> None:
    ts = column(table, "timestamp")
    assert (np.diff(ts) >= 0).all()
    assert ts.min() >= SMALL.start_ms
    assert ts.max() < SMALL.end_ms
    assert SMALL.start_ms == 1_735_689_600_000  # 2025-01-01T00:00:00Z


def test_nights_are_quieter_than_afternoons(table: pa.Table) -> None:
    legit = column(table, "is_fraud") == 0
    hour = (column(table, "timestamp")[legit] // 3_600_000) % 24
    counts = np.bincount(hour, minlength=24)
    assert counts[2:5].sum() * 5 < counts[16:19].sum()


@pytest.mark.parametrize("rate", [0.005, 0.0075, 0.01])
def test_fraud_rate_lands_within_a_tenth_of_a_point(rate: float) -> None:
    config = GeneratorConfig(seed=1, n_transactions=20_000, n_cards=800, n_merchants=200, fraud_rate=rate)
    fraud = column(generate(config), "is_fraud")
    assert abs(fraud.mean() - rate) <= 0.001


def test_every_scenario_is_present_and_tagged(table: pa.Table) -> None:
    fraud = column(table, "is_fraud")
    scenario = column(table, "scenario")
    assert set(scenario[fraud == 1]) == set(SCENARIOS)
    assert set(scenario[fraud == 0]) == {""}
    assert Counter(scenario[fraud == 1]) == Counter(SMALL.fraud_targets())


def test_scenarios_have_their_signature(table: pa.Table) -> None:
    scenario = column(table, "scenario")
    amount = column(table, "amount")
    channel = column(table, "channel")
    testing = scenario == "card_testing"
    assert set(channel[testing]) == {"ecom"}
    assert np.mean((amount[testing] >= 0.5) & (amount[testing] <= 2.0)) > 0.5
    takeover = scenario == "account_takeover"
    assert set(channel[takeover]) == {"ecom"}
    legit_median = np.median(amount[scenario == ""])
    assert np.median(amount[scenario == "large_amount"]) > 5 * legit_median


def test_takeovers_happen_abroad(table: pa.Table) -> None:
    card, country, scenario = (column(table, c) for c in ("card_id", "country", "scenario"))
    legit = scenario == ""
    home = {c: Counter(country[legit & (card == c)]).most_common(1)[0][0]
            for c in set(card[scenario == "account_takeover"]) if (legit & (card == c)).any()}
    takeover = np.flatnonzero(scenario == "account_takeover")
    abroad = [country[i] != home[card[i]] for i in takeover if card[i] in home]
    assert np.mean(abroad) > 0.9


def test_rate_outside_bounds_is_rejected_unless_bounds_widened() -> None:
    with pytest.raises(ValueError, match="fraud_rate"):
        GeneratorConfig(fraud_rate=0.03)
    wide = GeneratorConfig(seed=2, n_transactions=5_000, n_cards=300, n_merchants=100,
                           fraud_rate=0.03, fraud_rate_bounds=(0.0, 0.05))
    assert column(generate(wide), "is_fraud").sum() == 150


def test_scenario_mix_selects_scenarios() -> None:
    config = GeneratorConfig(seed=3, n_transactions=5_000, n_cards=300, n_merchants=100,
                             scenario_mix={"card_testing": 1.0})
    scenario = column(generate(config), "scenario")
    assert set(scenario) == {"", "card_testing"}
    with pytest.raises(ValueError, match="unknown scenarios"):
        GeneratorConfig(scenario_mix={"phishing": 1.0})


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_then_read_round_trips(table: pa.Table, tmp_path: Path, suffix: str) -> None:
    path = write(table, tmp_path / "sub" / f"tx{suffix}")
    assert path.exists()
    assert read(path).equals(table)


def test_csv_keeps_epoch_milliseconds_and_mcc_as_text(table: pa.Table, tmp_path: Path) -> None:
    path = write(table.slice(0, 3), tmp_path / "tx.csv")
    header, first = path.read_text().splitlines()[:2]
    assert header.split(",")[2] == '"timestamp"'
    assert first.split(",")[2] == str(table["timestamp"][0].as_py())
    assert first.split(",")[6] == f'"{table["mcc"][0].as_py()}"'


def test_write_rejects_unknown_suffix(table: pa.Table, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="suffix"):
        write(table, tmp_path / "tx.json")


def test_cli_writes_every_requested_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv, parquet, extra = tmp_path / "a.csv", tmp_path / "a.parquet", tmp_path / "b.parquet"
    argv = ["--rows", "4000", "--cards", "200", "--merchants", "60", "--days", "7", "--seed", "5",
            "--out", f"{csv},{parquet}", "--out", str(extra)]
    assert cli(argv) == 0
    out = capsys.readouterr().out
    assert "generated 4,000 rows" in out
    assert all(name in out for name in SCENARIOS)
    assert read(csv).equals(read(parquet))
    assert read(extra).equals(read(parquet))


def test_cli_reports_bad_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["--fraud-rate", "0.5", "--out", "unused.csv"]) == 2
    assert "fraud_rate" in capsys.readouterr().err
