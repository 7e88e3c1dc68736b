"""The fraud scenarios of :mod:`replay.generate`, written into the legitimate traffic.

Each fraud row carries its scenario's name in ``scenario``:

* ``compromised_terminal`` - a card-present terminal (POS or ATM) is
  breached: skimmed, or its software tampered with. Each day of the period
  a few terminals are hit, and *every* transaction at a hit terminal during
  its window (``terminal_window_days``, 28 by default, cut at the period's
  end) is fraud. Nothing on the card shows it: the amounts, hours, countries
  and channels are the card's usual ones; only the terminal links the cases.
  Modelled on scenario 2 of Le Borgne et al.'s simulator ("Reproducible
  Machine Learning for Credit Card Fraud Detection - Practical Handbook",
  2022: every day two terminals are drawn and all their transactions of the
  next 28 days are fraudulent). By default it makes two thirds of the fraud,
  as in that data set, which takes a few percent of the terminals over a
  period of some weeks.
* ``large_amount`` - a legitimate-looking row whose amount is 8-40x the
  card's median.
* ``compromised_card`` - for 2-7 days a share of one card's transactions are
  fraud at 2-6x inflated amounts.
* ``card_testing`` - 3-10 tiny ecom amounts (0.50-2.00) seconds apart at one
  merchant, then one large ecom purchase minutes later.
* ``account_takeover`` - a burst of ecom purchases at unseen merchants in a
  country other than the card's home, over hours.

``large_amount`` and the two ``compromised_*`` scenarios relabel rows of the
legitimate base; ``card_testing`` and ``account_takeover`` add rows. Each
scenario fills its share of the configured fraud rate exactly (to the
nearest row): the last terminal hit has its window end at the transaction
that fills the share, and relabelling scenarios that run short on tiny data
sets leave their shortfall to ``large_amount``, which always fills.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from replay.population import (
    CONTACTLESS,
    CONTACTLESS_CAP,
    COUNTRIES,
    COUNTRY_WEIGHT,
    DAY_MS,
    ECOM,
    HOUR_MS,
    MINUTE_MS,
    ONLINE,
    POS,
    Cards,
    FloatArray,
    Index,
    IntArray,
    Merchants,
    Rows,
    money,
    pick_merchants,
)

__all__ = ["DEFAULT_SCENARIO_MIX", "SCENARIOS", "ScenarioConfig", "inject"]

SCENARIOS: tuple[str, ...] = (
    "large_amount",
    "compromised_terminal",
    "compromised_card",
    "card_testing",
    "account_takeover",
)
# Scenario codes in the internal arrays are 1 + index in SCENARIOS; 0 = legit.
_LARGE, _TERMINAL, _CARD, _TESTING, _TAKEOVER = range(1, 6)

class ScenarioConfig(Protocol):
    """What the scenarios read of :class:`replay.generate.GeneratorConfig` (a protocol: no import cycle)."""

    @property
    def n_cards(self) -> int: ...
    @property
    def n_merchants(self) -> int: ...
    @property
    def days(self) -> int: ...
    @property
    def terminal_window_days(self) -> int: ...
    @property
    def start_ms(self) -> int: ...
    @property
    def end_ms(self) -> int: ...
    def fraud_targets(self) -> dict[str, int]: ...


# Two thirds from breached terminals, as in the Handbook's simulated data set and the held-out data of issue 32.
DEFAULT_SCENARIO_MIX: Mapping[str, float] = {
    "large_amount": 0.07,
    "compromised_terminal": 0.65,
    "compromised_card": 0.10,
    "card_testing": 0.08,
    "account_takeover": 0.10,
}

_MAX_EVENTS = 20_000  # bound on attempts of the compromised-card scenario


def _window(rng: np.random.Generator, cfg: ScenarioConfig, min_days: int, max_days: int) -> tuple[int, int]:
    w0 = cfg.start_ms + int(rng.integers(0, cfg.days)) * DAY_MS
    return w0, min(w0 + int(rng.integers(min_days, max_days + 1)) * DAY_MS, cfg.end_ms)


def _set_amounts(rows: Rows, chosen: IntArray, amount: FloatArray) -> None:
    rows.amount[chosen] = amount
    # Above the no-PIN limit a tap becomes a chip-and-PIN payment.
    tapped = chosen[(rows.channel[chosen] == CONTACTLESS) & (amount > CONTACTLESS_CAP)]
    rows.channel[tapped] = POS


def _relabel(rng: np.random.Generator, rows: Rows, chosen: IntArray, code: int, lo: float, hi: float) -> None:
    rows.scenario[chosen] = code
    _set_amounts(rows, chosen, money(rows.amount[chosen] * rng.uniform(lo, hi, size=chosen.size)))


def _compromised_terminals(rng: np.random.Generator, rows: Rows, index: Index, merchants: Merchants,
                           cfg: ScenarioConfig, target: int) -> int:
    # Skimmers and tampered POS software sit where the card is read: POS and ATM terminals, not web shops.
    # Terminals are drawn uniformly, as in the Handbook, each hit at most once, on a uniform day of the period.
    candidates = rng.permutation(np.flatnonzero(merchants.kind != ONLINE))
    filled = 0
    for terminal in candidates.tolist():
        if filled >= target:
            break
        w0 = cfg.start_ms + int(rng.integers(0, cfg.days)) * DAY_MS
        w1 = min(w0 + cfg.terminal_window_days * DAY_MS, cfg.end_ms)
        at = index.merchant_rows(terminal)
        # Positions are time order: cutting the last window keeps its first transactions, so every row of
        # the terminal from the window's start up to the cut is fraud. Amounts stay as the card spent them.
        chosen = at[(rows.ts[at] >= w0) & (rows.ts[at] < w1)][: target - filled]
        rows.scenario[chosen] = _TERMINAL
        filled += chosen.size
    return filled


def _compromised_cards(rng: np.random.Generator, rows: Rows, index: Index, cards: Cards,
                       cfg: ScenarioConfig, target: int) -> int:
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


def _large_amounts(rng: np.random.Generator, rows: Rows, cards: Cards, target: int) -> None:
    legit = np.flatnonzero(rows.scenario == 0)
    chosen = np.sort(rng.choice(legit, size=target, replace=False))
    rows.scenario[chosen] = _LARGE
    _set_amounts(rows, chosen, money(np.exp(cards.mu[rows.card[chosen]]) * rng.uniform(8.0, 40.0, size=chosen.size)))


def _event_rows(card: int, ts: IntArray, amount: FloatArray, merchant: IntArray, code: int,
                cfg: ScenarioConfig) -> Rows:
    n = ts.size
    return Rows(np.full(n, card), np.minimum(ts, cfg.end_ms - 1), amount, merchant,
                 np.full(n, ECOM), np.full(n, code))


def _card_testing(rng: np.random.Generator, cards: Cards, merchants: Merchants,
                  cfg: ScenarioConfig, target: int) -> list[Rows]:
    events: list[Rows] = []
    left = target
    online = np.array([ONLINE, ONLINE])
    while left > 0:
        n_small = min(int(rng.integers(3, 11)), left - 1)
        card = int(rng.integers(cards.mu.size))
        t0 = cfg.start_ms + int(rng.integers(0, cfg.days * DAY_MS))
        t_small = t0 + np.cumsum(rng.exponential(40_000.0, size=n_small)).astype(np.int64)
        t_large = (int(t_small[-1]) if n_small else t0) + int(rng.integers(2, 31)) * MINUTE_MS
        where = rng.choice(len(COUNTRIES), size=2, p=COUNTRY_WEIGHT)
        tester, buy = pick_merchants(rng, merchants, online, where)
        events.append(_event_rows(
            card,
            np.append(t_small, t_large),
            np.append(np.round(rng.uniform(0.5, 2.0, size=n_small), 2),
                      money(np.exp(cards.mu[card:card + 1]) * rng.uniform(10.0, 40.0))),
            np.append(np.full(n_small, tester), buy),
            _TESTING, cfg,
        ))
        left -= n_small + 1
    return events


def _account_takeovers(rng: np.random.Generator, cards: Cards, merchants: Merchants,
                       cfg: ScenarioConfig, target: int) -> list[Rows]:
    events: list[Rows] = []
    left = target
    while left > 0:
        k = min(int(rng.integers(3, 11)), left)
        card = int(rng.integers(cards.mu.size))
        abroad = COUNTRY_WEIGHT.copy()
        abroad[cards.home[card]] = 0.0
        country = int(rng.choice(len(COUNTRIES), p=abroad / abroad.sum()))
        t0 = cfg.start_ms + int(rng.integers(0, cfg.days * DAY_MS))
        ts = t0 + np.sort(rng.uniform(0.0, rng.uniform(2.0, 48.0) * HOUR_MS, size=k)).astype(np.int64)
        merchant = pick_merchants(rng, merchants, np.full(k, ONLINE), np.full(k, country))
        amount = money(np.exp(cards.mu[card]) * rng.uniform(2.0, 8.0, size=k))
        events.append(_event_rows(card, ts, amount, merchant, _TAKEOVER, cfg))
        left -= k
    return events


def inject(rng: np.random.Generator, base: Rows, cards: Cards, merchants: Merchants, cfg: ScenarioConfig) -> Rows:
    """``base`` (legitimate, time-sorted) with every scenario's fraud written in, sorted by time again."""
    targets = {s: cfg.fraud_targets().get(s, 0) for s in SCENARIOS}
    index = Index.of(base, cfg.n_cards, cfg.n_merchants)
    # Terminals first: every transaction in a breached window must be theirs, so no other scenario may have
    # taken one. Relabelling scenarios can run short on tiny data sets; large amounts always fill, so they
    # take up the shortfall and keep the rate exact.
    short = targets["compromised_terminal"] - _compromised_terminals(
        rng, base, index, merchants, cfg, targets["compromised_terminal"])
    short += targets["compromised_card"] - _compromised_cards(
        rng, base, index, cards, cfg, targets["compromised_card"])
    _large_amounts(rng, base, cards, targets["large_amount"] + short)
    rows = Rows.concat([
        base,
        *_card_testing(rng, cards, merchants, cfg, targets["card_testing"]),
        *_account_takeovers(rng, cards, merchants, cfg, targets["account_takeover"]),
    ])
    return rows.take(np.argsort(rows.ts, kind="stable"))
