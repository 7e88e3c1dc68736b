"""Seeded, labelled card transactions for replaying through the engine.

Every row follows the engine's transactions contract plus two label columns:

==============  ======  ==================================================
column          type    meaning
==============  ======  ==================================================
transaction_id  string  ``"t"`` + zero-padded row number, unique
card_id         string  ``"c"`` + zero-padded card number
timestamp       int64   event time, epoch **milliseconds** UTC (also in CSV)
amount          double  > 0, two decimals
currency        string  ISO 4217 code of the merchant's country, mostly EUR
merchant_id     string  ``"m"`` + zero-padded merchant (terminal) number
mcc             string  four-digit merchant category code
country         string  ISO 3166 alpha-2 country of the merchant
channel         string  ``pos``, ``ecom``, ``atm`` or ``contactless``
is_fraud        int8    1 for fraud, else 0
scenario        string  fraud scenario name, ``""`` for legitimate rows
==============  ======  ==================================================

Rows are sorted by ``timestamp``. The same :class:`GeneratorConfig` always
gives the identical table; everything is vectorised with numpy, so a million
rows take a few seconds.

The legitimate traffic (cards, merchants, daily and weekly cycles) comes from
:mod:`replay.population`; the fraud scenarios, tagged in ``scenario``, from
:mod:`replay.scenarios`: ``compromised_terminal`` (every transaction at a
breached POS or ATM terminal for 28 days, two thirds of the fraud by
default), ``large_amount``, ``compromised_card``, ``card_testing`` and
``account_takeover``. Each fills its share of the fraud rate exactly.

Example:
    >>> table = generate(GeneratorConfig(seed=7, n_transactions=20_000,
    ...                                  n_cards=1_000, n_merchants=300))
    >>> table.num_rows, table.column_names[:3]
    (20000, ['transaction_id', 'card_id', 'timestamp'])
    >>> sum(table["is_fraud"].to_pylist())  # 0.75 % of 20 000
    150
    >>> sorted(set(table["scenario"].to_pylist()) - {""}) == sorted(SCENARIOS)
    True
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from replay.population import (
    CHANNELS,
    COUNTRIES,
    CURRENCY,
    DAY_MS,
    MCC_TABLE,
    IntArray,
    Merchants,
    Rows,
    legit,
    make_cards,
    make_merchants,
)
from replay.scenarios import DEFAULT_SCENARIO_MIX, SCENARIOS, inject

__all__ = [
    "CHANNELS",
    "DEFAULT_SCENARIO_MIX",
    "SCENARIOS",
    "SCHEMA",
    "GeneratorConfig",
    "cli",
    "generate",
    "read",
    "write",
]

SCHEMA = pa.schema(
    [
        ("transaction_id", pa.string()),
        ("card_id", pa.string()),
        ("timestamp", pa.int64()),
        ("amount", pa.float64()),
        ("currency", pa.string()),
        ("merchant_id", pa.string()),
        ("mcc", pa.string()),
        ("country", pa.string()),
        ("channel", pa.string()),
        ("is_fraud", pa.int8()),
        ("scenario", pa.string()),
    ]
)


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. Validated on construction.

    ``fraud_rate`` must lie within ``fraud_rate_bounds`` (by default the
    0.5-1 % band typical of card fraud data sets); widen the bounds for
    stress tests. ``scenario_mix`` gives each scenario's share of the fraud
    rows; a scenario with weight 0 is not generated. ``n_merchants`` must be
    at least 42 so every (merchant kind, country) pair has a terminal.

    Example:
        >>> GeneratorConfig(fraud_rate=0.02)
        Traceback (most recent call last):
        ...
        ValueError: fraud_rate=0.02 is outside fraud_rate_bounds=(0.005, 0.01)
        >>> GeneratorConfig(fraud_rate=0.02, fraud_rate_bounds=(0.0, 0.05)).fraud_rate
        0.02
    """

    seed: int = 0
    n_transactions: int = 1_000_000
    n_cards: int = 20_000
    n_merchants: int = 5_000
    start: str = "2025-01-01T00:00:00Z"
    days: int = 30
    fraud_rate: float = 0.0075
    fraud_rate_bounds: tuple[float, float] = (0.005, 0.01)
    scenario_mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SCENARIO_MIX))
    terminal_window_days: int = 28  # how long a breached terminal's every transaction is fraud

    def __post_init__(self) -> None:
        lo, hi = self.fraud_rate_bounds
        if not lo <= self.fraud_rate <= hi:
            raise ValueError(
                f"fraud_rate={self.fraud_rate} is outside fraud_rate_bounds={self.fraud_rate_bounds}"
            )
        if not 0.0 <= lo <= hi < 1.0:
            raise ValueError(f"fraud_rate_bounds={self.fraud_rate_bounds} must satisfy 0 <= lo <= hi < 1")
        if self.n_transactions < 100:
            raise ValueError("n_transactions must be at least 100")
        if self.n_cards < 1 or self.days < 1:
            raise ValueError("n_cards and days must be at least 1")
        if self.terminal_window_days < 1:
            raise ValueError(f"terminal_window_days must be at least 1, got {self.terminal_window_days}")
        n_groups = len(MCC_TABLE) * len(COUNTRIES)
        if self.n_merchants < n_groups:
            raise ValueError(f"n_merchants must be at least {n_groups} (one per merchant kind and country)")
        unknown = set(self.scenario_mix) - set(SCENARIOS)
        if unknown:
            raise ValueError(f"unknown scenarios in scenario_mix: {sorted(unknown)}")
        weights = list(self.scenario_mix.values())
        if any(w < 0 for w in weights) or not sum(weights) > 0:
            raise ValueError("scenario_mix weights must be >= 0 with a positive sum")
        _ = self.start_ms  # parse now so a bad date fails at construction, not mid-generation

    @property
    def start_ms(self) -> int:
        """``start`` as epoch milliseconds."""
        moment = datetime.fromisoformat(self.start)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)  # a date without offset means UTC, not local time
        return int(moment.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        """End of the generated window (exclusive), epoch milliseconds."""
        return self.start_ms + self.days * DAY_MS

    def fraud_targets(self) -> dict[str, int]:
        """Fraud rows per scenario: the rate's row count split by the mix.

        Largest-remainder rounding keeps the total exact.

        >>> targets = GeneratorConfig(n_transactions=20_000).fraud_targets()
        >>> targets["large_amount"], targets["compromised_terminal"], sum(targets.values())
        (10, 98, 150)
        """
        total = round(self.fraud_rate * self.n_transactions)
        names = [s for s in SCENARIOS if self.scenario_mix.get(s, 0.0) > 0]
        weight = np.array([self.scenario_mix[s] for s in names], dtype=float)
        exact = total * weight / weight.sum()
        counts = np.floor(exact).astype(np.int64)
        # Stable order so equal remainders resolve the same way every run.
        for i in np.argsort(-(exact - counts), kind="stable")[: total - int(counts.sum())]:
            counts[i] += 1
        return {s: int(c) for s, c in zip(names, counts, strict=True)}


def _ids(prefix: str, values: IntArray, count: int) -> pa.Array:
    digits = pc.utf8_lpad(pa.array(values).cast(pa.string()), width=len(str(max(count - 1, 0))), padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _table(rows: Rows, n_cards: int, merchants: Merchants) -> pa.Table:
    n = rows.ts.size
    country = merchants.country[rows.merchant]
    columns = {
        "transaction_id": _ids("t", np.arange(n), n),
        "card_id": _ids("c", np.arange(n_cards), n_cards).take(rows.card),
        "timestamp": pa.array(rows.ts, pa.int64()),
        "amount": pa.array(rows.amount, pa.float64()),
        "currency": pa.array(CURRENCY).take(country),
        "merchant_id": _ids("m", np.arange(merchants.kind.size), merchants.kind.size).take(rows.merchant),
        "mcc": pa.array(merchants.mcc).take(rows.merchant),
        "country": pa.array(COUNTRIES).take(country),
        "channel": pa.array(CHANNELS).take(rows.channel),
        "is_fraud": pa.array((rows.scenario > 0).astype(np.int8), pa.int8()),
        "scenario": pa.array(("", *SCENARIOS)).take(rows.scenario),
    }
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def generate(config: GeneratorConfig) -> pa.Table:
    """Generate the labelled transactions described by ``config``.

    The result has exactly ``config.n_transactions`` rows, ``SCHEMA`` as its
    schema, is sorted by ``timestamp`` and depends only on ``config``.
    """
    rng = np.random.default_rng(config.seed)
    targets = config.fraud_targets()
    cards = make_cards(rng, config.n_cards)
    merchants = make_merchants(rng, config.n_merchants)
    injected = targets.get("card_testing", 0) + targets.get("account_takeover", 0)
    base = legit(rng, config.n_transactions - injected, cards, merchants, config.start_ms, config.days)
    return _table(inject(rng, base, cards, merchants, config), config.n_cards, merchants)


def write(table: pa.Table, path: str | Path) -> Path:
    """Write ``table`` as CSV or Parquet, chosen by the suffix of ``path``.

    CSV keeps ``timestamp`` as epoch milliseconds, like the Arrow table.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        pa_csv.write_csv(table, path)
    elif suffix == ".parquet":
        pq.write_table(table, path)
    else:
        raise ValueError(f"{path}: unknown suffix {suffix!r}; use .csv or .parquet")
    return path


def read(path: str | Path, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a file written by :func:`write`, with ``SCHEMA``'s column types.

    Without explicit types a CSV reader would turn ``mcc`` into integers and
    drop its leading zeros.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        types = {f.name: f.type for f in SCHEMA}
        options = pa_csv.ConvertOptions(column_types=types, include_columns=list(columns) if columns else None)
        return pa_csv.read_csv(path, convert_options=options)
    if suffix == ".parquet":
        return pq.read_table(path, columns=list(columns) if columns else None)
    raise ValueError(f"{path}: unknown suffix {suffix!r}; use .csv or .parquet")


def _summary(table: pa.Table) -> str:
    n = table.num_rows
    counts = Counter(s for s in table["scenario"].to_pylist() if s)
    lines = [f"{'scenario':<22}{'rows':>10}{'share of rows':>16}"]
    for name in SCENARIOS:
        lines.append(f"{name:<22}{counts[name]:>10,}{counts[name] / n:>15.4%}")
    total = sum(counts.values())
    lines.append(f"{'all fraud':<22}{total:>10,}{total / n:>15.4%}")
    return "\n".join(lines)


def cli(argv: list[str] | None = None) -> int:
    """``fraudstream generate``: write a labelled data set, print its make-up.

    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     cli(["--rows", "5000", "--cards", "300", "--merchants", "100",
    ...          "--out", os.path.join(d, "t.csv")])  # doctest: +ELLIPSIS
    generated 5,000 rows in ... s (seed 0)
    ...
    all fraud                     38        0.7600%
    wrote .../t.csv
    total ... s
    0
    """
    defaults = GeneratorConfig()
    parser = argparse.ArgumentParser(prog="fraudstream generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=defaults.n_transactions, help="transactions to generate")
    parser.add_argument("--cards", type=int, default=defaults.n_cards, help="distinct cards")
    parser.add_argument("--merchants", type=int, default=defaults.n_merchants, help="distinct merchants (>= 42)")
    parser.add_argument("--days", type=int, default=defaults.days, help="length of the window in days")
    parser.add_argument("--start", default=defaults.start, help="window start, RFC 3339 UTC")
    parser.add_argument("--fraud-rate", type=float, default=defaults.fraud_rate,
                        help="share of fraud rows, within [0.005, 0.01]")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed; same seed, same file")
    parser.add_argument("--out", action="append", metavar="PATH",
                        help="output .csv or .parquet; repeat or comma-separate for several "
                             "(default data/transactions.parquet)")
    args = parser.parse_args(argv)
    try:
        config = GeneratorConfig(seed=args.seed, n_transactions=args.rows, n_cards=args.cards,
                                 n_merchants=args.merchants, start=args.start, days=args.days,
                                 fraud_rate=args.fraud_rate)
    except ValueError as exc:
        print(f"fraudstream generate: {exc}", file=sys.stderr)
        return 2
    outs = [p for arg in (args.out or ["data/transactions.parquet"]) for p in arg.split(",") if p]
    began = time.perf_counter()
    table = generate(config)
    print(f"generated {table.num_rows:,} rows in {time.perf_counter() - began:.2f} s (seed {config.seed})")
    print(_summary(table))
    for out in outs:
        try:
            print(f"wrote {write(table, out)}")
        except (OSError, ValueError) as exc:
            print(f"fraudstream generate: {exc}", file=sys.stderr)
            return 1
    print(f"total {time.perf_counter() - began:.2f} s")
    return 0
