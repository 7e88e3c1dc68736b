"""The legitimate population behind :mod:`replay.generate`: cards, merchants and their everyday traffic.

Each card has a home country, a lognormal amount scale, an activity rate and
channel preferences; merchants have a kind (physical, ecom, ATM), an MCC that
scales amounts, a country and a popularity; most physical spending happens in
the card's home country; timestamps follow a daily cycle (quiet nights;
flatter for ecom) and a weekly one (busy Fridays, quiet Sundays). Hours are
UTC, which is close to local time for most EU cards.

Internal to the generator: the arrays here are indices (card, merchant,
channel and scenario codes), turned into the contract's strings only by
:func:`replay.generate.generate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

__all__ = [
    "ATM",
    "CASH",
    "CHANNELS",
    "CONTACTLESS",
    "CONTACTLESS_CAP",
    "COUNTRIES",
    "COUNTRY_WEIGHT",
    "CURRENCY",
    "DAY_MS",
    "ECOM",
    "HOUR_MS",
    "MCC_TABLE",
    "MINUTE_MS",
    "ONLINE",
    "PHYSICAL",
    "POS",
    "Cards",
    "Index",
    "Merchants",
    "Rows",
    "legit",
    "make_cards",
    "make_merchants",
    "money",
    "pick_merchants",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

CHANNELS: tuple[str, ...] = ("pos", "ecom", "atm", "contactless")
POS, ECOM, ATM, CONTACTLESS = range(4)
# Merchant kinds: which channel a terminal serves.
PHYSICAL, ONLINE, CASH = range(3)
_KIND_OF_CHANNEL = np.array([PHYSICAL, ONLINE, CASH, PHYSICAL])
_KIND_SHARE = np.array([0.75, 0.20, 0.05])
# Relative amount level per channel (ATM withdrawals are larger, contactless
# smaller and capped like the EU's 50 EUR no-PIN limit).
_CHANNEL_SCALE = np.array([1.0, 1.4, 2.5, 0.55])
CONTACTLESS_CAP = 50.0

COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "BE", "AT", "PT", "IE", "FI", "PL", "SE", "GB", "US")
COUNTRY_WEIGHT = np.array([22, 20, 10, 10, 10, 6, 4, 3, 3, 2, 3, 2, 3, 2], dtype=float) / 100
CURRENCY = ("EUR",) * 10 + ("PLN", "SEK", "GBP", "USD")
# Chance that a transaction of each merchant kind happens in the home country.
_HOME_SHARE = np.array([0.95, 0.60, 0.97])

# (mcc, weight within kind, amount scale) per merchant kind.
MCC_TABLE: tuple[tuple[tuple[str, float, float], ...], ...] = (
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

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MINUTE_MS = 60_000


@dataclass(frozen=True)
class Cards:
    home: IntArray
    mu: FloatArray
    sigma: FloatArray
    activity: FloatArray
    channel_cum: FloatArray


@dataclass(frozen=True)
class Merchants:
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
class Rows:
    card: IntArray
    ts: IntArray
    amount: FloatArray
    merchant: IntArray
    channel: IntArray
    scenario: IntArray

    @staticmethod
    def concat(parts: Sequence[Rows]) -> Rows:
        return Rows(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in
              ("card", "ts", "amount", "merchant", "channel", "scenario"))
        )

    def take(self, index: IntArray) -> Rows:
        return Rows(self.card[index], self.ts[index], self.amount[index],
                     self.merchant[index], self.channel[index], self.scenario[index])


def make_cards(rng: np.random.Generator, n: int) -> Cards:
    home = rng.choice(len(COUNTRIES), size=n, p=COUNTRY_WEIGHT)
    mu = rng.normal(3.2, 0.45, size=n)  # median spend ~25 EUR, varying by card
    sigma = rng.uniform(0.45, 0.9, size=n)
    activity = rng.gamma(2.0, 1.0, size=n)
    prefs = rng.dirichlet([4.0, 1.5, 0.5, 3.0], size=n)  # pos, ecom, atm, contactless
    return Cards(home, mu, sigma, activity / activity.sum(), np.cumsum(prefs, axis=1))


def make_merchants(rng: np.random.Generator, n: int) -> Merchants:
    n_countries = len(COUNTRIES)
    n_groups = len(MCC_TABLE) * n_countries
    group = np.arange(n_groups)
    # The first n_groups merchants cover every (kind, country) pair so that a
    # pick within any group always finds a terminal.
    kind = np.concatenate([group // n_countries, rng.choice(len(_KIND_SHARE), size=n - n_groups, p=_KIND_SHARE)])
    country = np.concatenate([group % n_countries, rng.choice(n_countries, size=n - n_groups, p=COUNTRY_WEIGHT)])
    mcc = np.empty(n, dtype=object)
    scale = np.empty(n)
    for k, table in enumerate(MCC_TABLE):
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
    return Merchants(kind, country, [str(m) for m in mcc], scale, popularity, order, cum, first, last)


def money(x: FloatArray) -> FloatArray:
    return np.maximum(np.round(x, 2), 0.01)


def _pick_countries(rng: np.random.Generator, home: IntArray, kind: IntArray) -> IntArray:
    away = rng.choice(len(COUNTRIES), size=home.size, p=COUNTRY_WEIGHT)
    return np.where(rng.random(home.size) < _HOME_SHARE[kind], home, away)


def pick_merchants(rng: np.random.Generator, m: Merchants, kind: IntArray, country: IntArray) -> IntArray:
    """A popularity-weighted merchant of the given kind and country, per row."""
    g = kind * len(COUNTRIES) + country
    first, last = m.group_first[g], m.group_last[g]
    lo = np.where(first > 0, m.cum[first - 1], 0.0)
    hi = m.cum[last]
    u = lo + rng.random(g.size) * (hi - lo)
    # The clip guards against float round-off at a group's edges.
    pos = np.clip(np.searchsorted(m.cum, u, side="right"), first, last)
    result: IntArray = m.order[pos]
    return result


def _timestamps(rng: np.random.Generator, kind: IntArray, start_ms: int, days: int) -> IntArray:
    first_weekday = datetime.fromtimestamp(start_ms / 1000, tz=UTC).weekday()
    day_weight = _WEEKDAY[(first_weekday + np.arange(days)) % 7]
    day = rng.choice(days, size=kind.size, p=day_weight / day_weight.sum())
    hour = np.empty(kind.size, dtype=np.int64)
    online = kind == ONLINE
    for mask, profile in ((online, _HOURS_ONLINE), (~online, _HOURS_PHYSICAL)):
        hour[mask] = rng.choice(24, size=int(mask.sum()), p=profile / profile.sum())
    return start_ms + day * DAY_MS + hour * HOUR_MS + rng.integers(0, HOUR_MS, size=kind.size)


def legit(rng: np.random.Generator, n: int, cards: Cards, merchants: Merchants, start_ms: int, days: int) -> Rows:
    """``n`` legitimate transactions of ``days`` days from ``start_ms``, in time order."""
    card = rng.choice(cards.mu.size, size=n, p=cards.activity)
    channel = (rng.random(n)[:, None] > cards.channel_cum[card]).sum(axis=1)
    channel = np.minimum(channel, len(CHANNELS) - 1)  # cumsum may end just below 1.0
    kind = _KIND_OF_CHANNEL[channel]
    merchant = pick_merchants(rng, merchants, kind, _pick_countries(rng, cards.home[card], kind))
    ts = _timestamps(rng, kind, start_ms, days)
    raw = (np.exp(cards.mu[card] + cards.sigma[card] * rng.standard_normal(n))
           * _CHANNEL_SCALE[channel] * merchants.scale[merchant])
    raw = np.where(channel == CONTACTLESS, np.minimum(raw, CONTACTLESS_CAP), raw)
    raw = np.where(channel == ATM, np.maximum(np.round(raw / 10) * 10, 20.0), raw)
    rows = Rows(card, ts, money(raw), merchant, channel, np.zeros(n, dtype=np.int64))
    return rows.take(np.argsort(ts, kind="stable"))


@dataclass(frozen=True)
class Index:
    """Row positions grouped by card and by merchant, each in time order."""

    by_card: IntArray
    card_start: IntArray
    by_merchant: IntArray
    merchant_start: IntArray

    @staticmethod
    def of(rows: Rows, n_cards: int, n_merchants: int) -> Index:
        # Rows are time-sorted, so a stable sort by key keeps time order within a key.
        by_card = np.argsort(rows.card, kind="stable")
        by_merchant = np.argsort(rows.merchant, kind="stable")
        return Index(
            by_card, np.searchsorted(rows.card[by_card], np.arange(n_cards + 1)),
            by_merchant, np.searchsorted(rows.merchant[by_merchant], np.arange(n_merchants + 1)),
        )

    def card_rows(self, card: int) -> IntArray:
        return self.by_card[self.card_start[card]:self.card_start[card + 1]]

    def merchant_rows(self, merchant: int) -> IntArray:
        return self.by_merchant[self.merchant_start[merchant]:self.merchant_start[merchant + 1]]
