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

Realism, in brief: each card has a home country, a lognormal amount scale, an
activity rate and channel preferences; merchants have a kind (physical, ecom,
ATM), an MCC that scales amounts, a country and a popularity; most physical
spending happens in the card's home country; timestamps follow a daily cycle
(quiet nights; flatter for ecom) and a weekly one (busy Fridays, quiet
Sundays). Hours are UTC, which is close to local time for most EU cards.

Fraud scenarios (tagged in ``scenario``):

* ``large_amount`` - a legitimate-looking row whose amount is 8-40x the
  card's median.
* ``compromised_terminal`` - a physical terminal is compromised for 2-5 days;
  a share of the cards used there are cloned, and their later transactions
  in that window are fraud (amounts inflated 1.5-4x).
* ``compromised_card`` - for 2-7 days a share of one card's transactions are
  fraud at 2-6x inflated amounts.
* ``card_testing`` - 3-10 tiny ecom amounts (0.50-2.00) seconds apart at one
  merchant, then one large ecom purchase minutes later.
* ``account_takeover`` - a burst of ecom purchases at unseen merchants in a
  country other than the card's home, over hours.

``large_amount`` and the two ``compromised_*`` scenarios relabel rows of the
legitimate base; ``card_testing`` and ``account_takeover`` add rows. Both are
sized to hit the configured fraud rate exactly (to the nearest row).

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
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

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

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

SCENARIOS: tuple[str, ...] = (
    "large_amount",
    "compromised_terminal",
    "compromised_card",
    "card_testing",
    "account_takeover",
)
# Scenario codes in the internal arrays are 1 + index in SCENARIOS; 0 = legit.
_LARGE, _TERMINAL, _CARD, _TESTING, _TAKEOVER = range(1, 6)

DEFAULT_SCENARIO_MIX: Mapping[str, float] = {
    "large_amount": 0.15,
    "compromised_terminal": 0.25,
    "compromised_card": 0.25,
    "card_testing": 0.15,
    "account_takeover": 0.20,
}

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

CHANNELS: tuple[str, ...] = ("pos", "ecom", "atm", "contactless")
_POS, _ECOM, _ATM, _CONTACTLESS = range(4)
# Merchant kinds: which channel a terminal serves.
_PHYSICAL, _ONLINE, _CASH = range(3)
_KIND_OF_CHANNEL = np.array([_PHYSICAL, _ONLINE, _CASH, _PHYSICAL])
_KIND_SHARE = np.array([0.75, 0.20, 0.05])
# Relative amount level per channel (ATM withdrawals are larger, contactless
# smaller and capped like the EU's 50 EUR no-PIN limit).
_CHANNEL_SCALE = np.array([1.0, 1.4, 2.5, 0.55])
_CONTACTLESS_CAP = 50.0

_COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "BE", "AT", "PT", "IE", "FI", "PL", "SE", "GB", "US")
_COUNTRY_WEIGHT = np.array([22, 20, 10, 10, 10, 6, 4, 3, 3, 2, 3, 2, 3, 2], dtype=float) / 100
_CURRENCY = ("EUR",) * 10 + ("PLN", "SEK", "GBP", "USD")
# Chance that a transaction of each merchant kind happens in the home country.
_HOME_SHARE = np.array([0.95, 0.60, 0.97])

# (mcc, weight within kind, amount scale) per merchant kind.
_MCC_TABLE: tuple[tuple[tuple[str, float, float], ...], ...] = (
    (
        ("5411", 0.30, 1.0), ("5812", 0.15, 1.2), ("5541", 0.10, 1.6), ("5912", 0.07, 0.7),
        ("5311", 0.06, 1.5), ("5651", 0.08, 1.8), ("5814", 0.10, 0.4), ("4111", 0.05, 0.3),
        ("5732", 0.04, 3.0), ("7011", 0.03, 4.0), ("5944", 0.02, 4.0),
    ),
    (
        ("5999", 0.25, 1.0), ("5732", 0.12, 3.0), ("4814", 0.08, 0.8), ("5818", 0.15, 0.4),
        ("4722", 0.10, 5.0), ("5311", 0.10, 1.5), ("5651", 0.10, 1.8), ("4829", 0.05, 2.0),
        ("7995", 0.05, 1.0),
    ),
    (("6011", 1.0, 1.0),),
)

# Hour-of-day activity (UTC), physical and online; ATMs follow physical.
_HOURS_PHYSICAL = np.array(
    [0.3, 0.15, 0.1, 0.08, 0.08, 0.15, 0.5, 1.2, 2.0, 2.6, 3.0, 3.4,
     4.2, 4.0, 3.4, 3.2, 3.5, 4.2, 4.6, 4.2, 3.2, 2.2, 1.4, 0.7]
)
_HOURS_ONLINE = np.array(
    [1.2, 0.8, 0.5, 0.4, 0.4, 0.5, 0.8, 1.4, 2.0, 2.4, 2.6, 2.8,
     3.0, 2.9, 2.8, 2.8, 2.9, 3.1, 3.4, 3.8, 4.0, 3.8, 3.0, 2.0]
)
# Monday .. Sunday.
_WEEKDAY = np.array([0.93, 0.96, 0.98, 1.0, 1.12, 1.10, 0.80])

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_MINUTE_MS = 60_000


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
        n_groups = len(_MCC_TABLE) * len(_COUNTRIES)
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
        return self.start_ms + self.days * _DAY_MS

    def fraud_targets(self) -> dict[str, int]:
        """Fraud rows per scenario: the rate's row count split by the mix.

        Largest-remainder rounding keeps the total exact.

        >>> targets = GeneratorConfig(n_transactions=20_000).fraud_targets()
        >>> targets["large_amount"], targets["compromised_terminal"], sum(targets.values())
        (23, 38, 150)
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


@dataclass(frozen=True)
class _Cards:
    home: IntArray
    mu: FloatArray
    sigma: FloatArray
    activity: FloatArray
    channel_cum: FloatArray


@dataclass(frozen=True)
class _Merchants:
    kind: IntArray
    country: IntArray
    mcc: list[str]
    scale: FloatArray
    popularity: FloatArray
    # Merchants sorted by (kind, country) group with cumulative popularity,
    # so a weighted pick within a group is one searchsorted for all rows.
    order: IntArray
    cum: FloatArray
    group_first: IntArray
    group_last: IntArray


@dataclass
class _Rows:
    card: IntArray
    ts: IntArray
    amount: FloatArray
    merchant: IntArray
    channel: IntArray
    scenario: IntArray

    @staticmethod
    def concat(parts: Sequence[_Rows]) -> _Rows:
        return _Rows(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in
              ("card", "ts", "amount", "merchant", "channel", "scenario"))
        )

    def take(self, index: IntArray) -> _Rows:
        return _Rows(self.card[index], self.ts[index], self.amount[index],
                     self.merchant[index], self.channel[index], self.scenario[index])


def _cards(rng: np.random.Generator, n: int) -> _Cards:
    home = rng.choice(len(_COUNTRIES), size=n, p=_COUNTRY_WEIGHT)
    mu = rng.normal(3.2, 0.45, size=n)  # median spend ~25 EUR, varying by card
    sigma = rng.uniform(0.45, 0.9, size=n)
    activity = rng.gamma(2.0, 1.0, size=n)
    prefs = rng.dirichlet([4.0, 1.5, 0.5, 3.0], size=n)  # pos, ecom, atm, contactless
    return _Cards(home, mu, sigma, activity / activity.sum(), np.cumsum(prefs, axis=1))


def _merchants(rng: np.random.Generator, n: int) -> _Merchants:
    n_countries = len(_COUNTRIES)
    n_groups = len(_MCC_TABLE) * n_countries
    group = np.arange(n_groups)
    # The first n_groups merchants cover every (kind, country) pair so that a
    # pick within any group always finds a terminal.
    kind = np.concatenate([group // n_countries, rng.choice(len(_KIND_SHARE), size=n - n_groups, p=_KIND_SHARE)])
    country = np.concatenate([group % n_countries, rng.choice(n_countries, size=n - n_groups, p=_COUNTRY_WEIGHT)])
    mcc = np.empty(n, dtype=object)
    scale = np.empty(n)
    for k, table in enumerate(_MCC_TABLE):
        idx = np.flatnonzero(kind == k)
        w = np.array([row[1] for row in table])
        pick = rng.choice(len(table), size=idx.size, p=w / w.sum())
        mcc[idx] = np.array([row[0] for row in table], dtype=object)[pick]
        scale[idx] = np.array([row[2] for row in table])[pick]
    popularity = rng.lognormal(0.0, 1.0, size=n)
    gid = kind * n_countries + country
    order = np.argsort(gid, kind="stable")
    cum = np.cumsum(popularity[order])
    first = np.searchsorted(gid[order], group, side="left")
    last = np.searchsorted(gid[order], group, side="right") - 1
    return _Merchants(kind, country, [str(m) for m in mcc], scale, popularity, order, cum, first, last)


def _money(x: FloatArray) -> FloatArray:
    return np.maximum(np.round(x, 2), 0.01)


def _pick_countries(rng: np.random.Generator, home: IntArray, kind: IntArray) -> IntArray:
    away = rng.choice(len(_COUNTRIES), size=home.size, p=_COUNTRY_WEIGHT)
    return np.where(rng.random(home.size) < _HOME_SHARE[kind], home, away)


def _pick_merchants(rng: np.random.Generator, m: _Merchants, kind: IntArray, country: IntArray) -> IntArray:
    """A popularity-weighted merchant of the given kind and country, per row."""
    g = kind * len(_COUNTRIES) + country
    first, last = m.group_first[g], m.group_last[g]
    lo = np.where(first > 0, m.cum[first - 1], 0.0)
    hi = m.cum[last]
    u = lo + rng.random(g.size) * (hi - lo)
    # The clip guards against float round-off at a group's edges.
    pos = np.clip(np.searchsorted(m.cum, u, side="right"), first, last)
    result: IntArray = m.order[pos]
    return result


def _timestamps(rng: np.random.Generator, kind: IntArray, cfg: GeneratorConfig) -> IntArray:
    first_weekday = datetime.fromtimestamp(cfg.start_ms / 1000, tz=UTC).weekday()
    day_weight = _WEEKDAY[(first_weekday + np.arange(cfg.days)) % 7]
    day = rng.choice(cfg.days, size=kind.size, p=day_weight / day_weight.sum())
    hour = np.empty(kind.size, dtype=np.int64)
    online = kind == _ONLINE
    for mask, profile in ((online, _HOURS_ONLINE), (~online, _HOURS_PHYSICAL)):
        hour[mask] = rng.choice(24, size=int(mask.sum()), p=profile / profile.sum())
    return cfg.start_ms + day * _DAY_MS + hour * _HOUR_MS + rng.integers(0, _HOUR_MS, size=kind.size)


def _legit(rng: np.random.Generator, n: int, cards: _Cards, merchants: _Merchants, cfg: GeneratorConfig) -> _Rows:
    card = rng.choice(cards.mu.size, size=n, p=cards.activity)
    channel = (rng.random(n)[:, None] > cards.channel_cum[card]).sum(axis=1)
    channel = np.minimum(channel, len(CHANNELS) - 1)  # cumsum may end just below 1.0
    kind = _KIND_OF_CHANNEL[channel]
    merchant = _pick_merchants(rng, merchants, kind, _pick_countries(rng, cards.home[card], kind))
    ts = _timestamps(rng, kind, cfg)
    raw = (np.exp(cards.mu[card] + cards.sigma[card] * rng.standard_normal(n))
           * _CHANNEL_SCALE[channel] * merchants.scale[merchant])
    raw = np.where(channel == _CONTACTLESS, np.minimum(raw, _CONTACTLESS_CAP), raw)
    raw = np.where(channel == _ATM, np.maximum(np.round(raw / 10) * 10, 20.0), raw)
    rows = _Rows(card, ts, _money(raw), merchant, channel, np.zeros(n, dtype=np.int64))
    return rows.take(np.argsort(ts, kind="stable"))


@dataclass(frozen=True)
class _Index:
    """Row positions grouped by card and by merchant, each in time order."""

    by_card: IntArray
    card_start: IntArray
    by_merchant: IntArray
    merchant_start: IntArray

    @staticmethod
    def of(rows: _Rows, n_cards: int, n_merchants: int) -> _Index:
        # Rows are time-sorted, so a stable sort by key keeps time order within a key.
        by_card = np.argsort(rows.card, kind="stable")
        by_merchant = np.argsort(rows.merchant, kind="stable")
        return _Index(
            by_card, np.searchsorted(rows.card[by_card], np.arange(n_cards + 1)),
            by_merchant, np.searchsorted(rows.merchant[by_merchant], np.arange(n_merchants + 1)),
        )

    def card_rows(self, card: int) -> IntArray:
        return self.by_card[self.card_start[card]:self.card_start[card + 1]]

    def merchant_rows(self, merchant: int) -> IntArray:
        return self.by_merchant[self.merchant_start[merchant]:self.merchant_start[merchant + 1]]


_MAX_EVENTS = 20_000  # bound on attempts for relabelling scenarios


def _window(rng: np.random.Generator, cfg: GeneratorConfig, min_days: int, max_days: int) -> tuple[int, int]:
    w0 = cfg.start_ms + int(rng.integers(0, cfg.days)) * _DAY_MS
    return w0, min(w0 + int(rng.integers(min_days, max_days + 1)) * _DAY_MS, cfg.end_ms)


def _set_amounts(rows: _Rows, chosen: IntArray, amount: FloatArray) -> None:
    rows.amount[chosen] = amount
    # Above the no-PIN limit a tap becomes a chip-and-PIN payment.
    tapped = chosen[(rows.channel[chosen] == _CONTACTLESS) & (amount > _CONTACTLESS_CAP)]
    rows.channel[tapped] = _POS


def _relabel(rng: np.random.Generator, rows: _Rows, chosen: IntArray, code: int, lo: float, hi: float) -> None:
    rows.scenario[chosen] = code
    _set_amounts(rows, chosen, _money(rows.amount[chosen] * rng.uniform(lo, hi, size=chosen.size)))


def _compromised_terminals(rng: np.random.Generator, rows: _Rows, index: _Index, merchants: _Merchants,
                           cfg: GeneratorConfig, target: int) -> int:
    physical = np.flatnonzero(merchants.kind == _PHYSICAL)
    weight = merchants.popularity[physical] / merchants.popularity[physical].sum()
    filled = 0
    for _ in range(_MAX_EVENTS):
        if filled >= target:
            break
        terminal = int(rng.choice(physical, p=weight))
        w0, w1 = _window(rng, cfg, 2, 5)
        at = index.merchant_rows(terminal)
        visits = at[(rows.ts[at] >= w0) & (rows.ts[at] < w1)]
        visitors, first = np.unique(rows.card[visits], return_index=True)
        cloned = rng.random(visitors.size) < rng.uniform(0.3, 0.7)
        later: list[IntArray] = []
        for card, visit_ts in zip(visitors[cloned], rows.ts[visits[first]][cloned], strict=True):
            own = index.card_rows(int(card))
            keep = (rows.ts[own] > visit_ts) & (rows.ts[own] < w1) & (rows.scenario[own] == 0)
            later.append(own[keep])
        if later:
            # Sorted positions are time order: a truncated event keeps its earliest frauds.
            chosen = np.sort(np.concatenate(later))[: target - filled]
            _relabel(rng, rows, chosen, _TERMINAL, 1.5, 4.0)
            filled += chosen.size
    return filled


def _compromised_cards(rng: np.random.Generator, rows: _Rows, index: _Index, cards: _Cards,
                       cfg: GeneratorConfig, target: int) -> int:
    filled = 0
    for _ in range(_MAX_EVENTS):
        if filled >= target:
            break
        card = int(rng.choice(cards.mu.size, p=cards.activity))
        w0, w1 = _window(rng, cfg, 2, 7)
        own = index.card_rows(card)
        own = own[(rows.ts[own] >= w0) & (rows.ts[own] < w1) & (rows.scenario[own] == 0)]
        chosen = own[rng.random(own.size) < rng.uniform(0.3, 0.7)][: target - filled]
        _relabel(rng, rows, chosen, _CARD, 2.0, 6.0)
        filled += chosen.size
    return filled


def _large_amounts(rng: np.random.Generator, rows: _Rows, cards: _Cards, target: int) -> None:
    legit = np.flatnonzero(rows.scenario == 0)
    chosen = np.sort(rng.choice(legit, size=target, replace=False))
    rows.scenario[chosen] = _LARGE
    _set_amounts(rows, chosen, _money(np.exp(cards.mu[rows.card[chosen]]) * rng.uniform(8.0, 40.0, size=chosen.size)))


def _event_rows(card: int, ts: IntArray, amount: FloatArray, merchant: IntArray, code: int,
                cfg: GeneratorConfig) -> _Rows:
    n = ts.size
    return _Rows(np.full(n, card), np.minimum(ts, cfg.end_ms - 1), amount, merchant,
                 np.full(n, _ECOM), np.full(n, code))


def _card_testing(rng: np.random.Generator, cards: _Cards, merchants: _Merchants,
                  cfg: GeneratorConfig, target: int) -> list[_Rows]:
    events: list[_Rows] = []
    left = target
    online = np.array([_ONLINE, _ONLINE])
    while left > 0:
        n_small = min(int(rng.integers(3, 11)), left - 1)
        card = int(rng.integers(cards.mu.size))
        t0 = cfg.start_ms + int(rng.integers(0, cfg.days * _DAY_MS))
        t_small = t0 + np.cumsum(rng.exponential(40_000.0, size=n_small)).astype(np.int64)
        t_large = (int(t_small[-1]) if n_small else t0) + int(rng.integers(2, 31)) * _MINUTE_MS
        where = rng.choice(len(_COUNTRIES), size=2, p=_COUNTRY_WEIGHT)
        tester, buy = _pick_merchants(rng, merchants, online, where)
        events.append(_event_rows(
            card,
            np.append(t_small, t_large),
            np.append(np.round(rng.uniform(0.5, 2.0, size=n_small), 2),
                      _money(np.exp(cards.mu[card:card + 1]) * rng.uniform(10.0, 40.0))),
            np.append(np.full(n_small, tester), buy),
            _TESTING, cfg,
        ))
        left -= n_small + 1
    return events


def _account_takeovers(rng: np.random.Generator, cards: _Cards, merchants: _Merchants,
                       cfg: GeneratorConfig, target: int) -> list[_Rows]:
    events: list[_Rows] = []
    left = target
    while left > 0:
        k = min(int(rng.integers(3, 11)), left)
        card = int(rng.integers(cards.mu.size))
        abroad = _COUNTRY_WEIGHT.copy()
        abroad[cards.home[card]] = 0.0
        country = int(rng.choice(len(_COUNTRIES), p=abroad / abroad.sum()))
        t0 = cfg.start_ms + int(rng.integers(0, cfg.days * _DAY_MS))
        ts = t0 + np.sort(rng.uniform(0.0, rng.uniform(2.0, 48.0) * _HOUR_MS, size=k)).astype(np.int64)
        merchant = _pick_merchants(rng, merchants, np.full(k, _ONLINE), np.full(k, country))
        amount = _money(np.exp(cards.mu[card]) * rng.uniform(2.0, 8.0, size=k))
        events.append(_event_rows(card, ts, amount, merchant, _TAKEOVER, cfg))
        left -= k
    return events


def _ids(prefix: str, values: IntArray, count: int) -> pa.Array:
    digits = pc.utf8_lpad(pa.array(values).cast(pa.string()), width=len(str(max(count - 1, 0))), padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _table(rows: _Rows, n_cards: int, merchants: _Merchants) -> pa.Table:
    n = rows.ts.size
    country = merchants.country[rows.merchant]
    columns = {
        "transaction_id": _ids("t", np.arange(n), n),
        "card_id": _ids("c", np.arange(n_cards), n_cards).take(rows.card),
        "timestamp": pa.array(rows.ts, pa.int64()),
        "amount": pa.array(rows.amount, pa.float64()),
        "currency": pa.array(_CURRENCY).take(country),
        "merchant_id": _ids("m", np.arange(merchants.kind.size), merchants.kind.size).take(rows.merchant),
        "mcc": pa.array(merchants.mcc).take(rows.merchant),
        "country": pa.array(_COUNTRIES).take(country),
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
    targets = {s: config.fraud_targets().get(s, 0) for s in SCENARIOS}
    cards = _cards(rng, config.n_cards)
    merchants = _merchants(rng, config.n_merchants)
    injected = targets["card_testing"] + targets["account_takeover"]
    base = _legit(rng, config.n_transactions - injected, cards, merchants, config)
    index = _Index.of(base, config.n_cards, config.n_merchants)
    # Relabelling scenarios can run short on tiny data sets; large amounts
    # always fill, so they take up the shortfall and keep the rate exact.
    short = targets["compromised_terminal"] - _compromised_terminals(
        rng, base, index, merchants, config, targets["compromised_terminal"])
    short += targets["compromised_card"] - _compromised_cards(
        rng, base, index, cards, config, targets["compromised_card"])
    _large_amounts(rng, base, cards, targets["large_amount"] + short)
    rows = _Rows.concat([
        base,
        *_card_testing(rng, cards, merchants, config, targets["card_testing"]),
        *_account_takeovers(rng, cards, merchants, config, targets["account_takeover"]),
    ])
    rows = rows.take(np.argsort(rows.ts, kind="stable"))
    return _table(rows, config.n_cards, merchants)


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
