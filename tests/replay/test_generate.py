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


# A 60-day period with terminals of everyday size: the experiment's shape, a tenth of its rows per terminal.
BREACHES = GeneratorConfig(seed=12, n_transactions=60_000, n_cards=1_500, n_merchants=1_500, days=60)
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def breaches() -> pa.Table:
    return generate(BREACHES)


def breached(table: pa.Table) -> dict[str, np.ndarray]:
    """Row positions (time order) of each terminal with compromised-terminal fraud, all its rows."""
    merchant, scenario = column(table, "merchant_id"), column(table, "scenario")
    return {m: np.flatnonzero(merchant == m) for m in set(merchant[scenario == "compromised_terminal"])}


def test_every_transaction_at_a_breached_terminal_in_its_window_is_fraud(breaches: pa.Table) -> None:
    scenario, ts = column(breaches, "scenario"), column(breaches, "timestamp")
    terminals = breached(breaches)
    spans = []
    for rows in terminals.values():
        hit = np.flatnonzero(scenario[rows] == "compromised_terminal")
        window = rows[hit[0]:hit[-1] + 1]  # from the first fraud at the terminal to its last
        assert set(scenario[window]) == {"compromised_terminal"}
        spans.append(ts[window[-1]] - ts[window[0]])
    assert max(spans) < BREACHES.terminal_window_days * DAY_MS
    # Not a trivial property: breaches last weeks and hold many transactions.
    assert max(spans) > 14 * DAY_MS
    assert np.median([np.sum(scenario[rows] == "compromised_terminal") for rows in terminals.values()]) >= 5


def test_a_shorter_window_bounds_every_breach(breaches: pa.Table) -> None:
    table = generate(replace(BREACHES, terminal_window_days=3))
    ts, scenario = column(table, "timestamp"), column(table, "scenario")
    for rows in breached(table).values():
        at = ts[rows][scenario[rows] == "compromised_terminal"]
        assert at[-1] - at[0] < 3 * DAY_MS
    with pytest.raises(ValueError, match="terminal_window_days must be at least 1"):
        GeneratorConfig(terminal_window_days=0)


def test_a_few_percent_of_terminals_make_most_of_the_fraud(breaches: pa.Table) -> None:
    merchant, fraud = column(breaches, "merchant_id"), column(breaches, "is_fraud") == 1
    terminals = breached(breaches)
    assert 0.005 <= len(terminals) / len(set(merchant)) <= 0.05
    assert np.isin(merchant[fraud], list(terminals)).mean() >= 0.6


def test_breaches_are_at_card_present_terminals_and_invisible_on_the_card(breaches: pa.Table) -> None:
    """No inflated amount, no odd hour, no foreign country: only the terminal links the frauds."""
    scenario, channel = column(breaches, "scenario"), column(breaches, "channel")
    amount, country, card = column(breaches, "amount"), column(breaches, "country"), column(breaches, "card_id")
    hour = (column(breaches, "timestamp") // 3_600_000) % 24
    terminal = scenario == "compromised_terminal"
    assert set(channel[terminal]) <= {"pos", "contactless", "atm"}
    # Amounts: at each breached terminal, the frauds' log amounts against its legitimate ones (same MCC, same
    # customers), weighted by frauds. Inflating amounts 1.5-4x would shift this by about 0.9.
    log_amount = np.log(amount)
    shift, weight = [], []
    for rows in breached(breaches).values():
        fraud_rows, legit_rows = rows[terminal[rows]], rows[scenario[rows] == ""]
        if legit_rows.size >= 3:
            shift.append(log_amount[fraud_rows].mean() - log_amount[legit_rows].mean())
            weight.append(fraud_rows.size)
    assert len(shift) >= 5 and abs(np.average(shift, weights=weight)) < 0.4
    present = (scenario == "") & (channel != "ecom")  # legitimate card-present spending to compare with
    night = (hour >= 0) & (hour < 6)
    assert abs(night[terminal].mean() - night[present].mean()) < 0.03
    home = {c: Counter(country[present & (card == c)]).most_common(1)[0][0] for c in set(card[terminal])
            if (present & (card == c)).any()}
    at_home = [country[i] == home[card[i]] for i in np.flatnonzero(terminal) if card[i] in home]
    assert np.mean(at_home) > 0.85
