"""Alert reasons say what they compare, with the values they compare, and only when they pushed the score up.

Over generated traffic every reason's text is parsed back and held to its
``values`` and to the same figures computed here, independently, from the
card's history (or the terminal's rows of the table); constructed cases show
that a reason whose input pulled the score down, or whose comparison goes the
other way, is not given.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from models.entity_reasons import SILENT, WORDS
from models.features import engineered
from models.hashing import stable_hash
from models.history import History, append, new_history
from models.online import ONLINE_INPUTS
from models.profile import EntityProfile
from models.profile_features import entity_feature_names, profile_features
from models.reasons import EXPLAINERS, top_reasons
from stream.contracts.records import Transaction
from tests.models.reasons_data import DAY_MS, LABEL_DELAY_MS, NAMES, Traffic, traffic

HOUR = 3_600_000
CARD_CODES = {"amount_above_usual", "amount_below_usual", "short_gap", "long_gap", "count_1h", "count_24h", "count_7d",
              "spend_24h", "small_amounts_1h", "new_merchant", "new_mcc", "new_country", "foreign_country",
              "new_channel", "card_not_present", "new_card", "unusual_hour", "sequence_model"}
TERMINAL_CODES = {f"merchant_{what}" for what in ("confirmed_fraud", "fraud_verdicts", "count_1h", "count_1d", "count_7d", "many_cards",
                                                  "new_cards", "new_card", "little_traffic")}

MONEY = r"([\d,]+\.\d\d) ([A-Z]{3})"
NUMBER = r"([\d,.]+)"
DURATION = r"([\d.]+) (second|minute|hour|day)s?"
_UNIT_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}


def money(text: str) -> float:
    return float(text.replace(",", ""))


def near_number(text: str, value: float) -> bool:
    """``text`` is ``value`` as :func:`models.reason_text.number` writes it (to its last digit)."""
    shown = float(text.replace(",", ""))
    step = 1.0 if value >= 10 else 0.1 if value >= 0.1 else 0.01
    return abs(shown - value) <= step / 2 + 1e-9


def near_duration(amount: str, unit: str, seconds: float) -> bool:
    shown = float(amount) * _UNIT_S[unit]
    step = _UNIT_S[unit] * (1.0 if "." not in amount and (float(amount) >= 10 or unit in ("second", "minute"))
                            else 0.1)
    return abs(shown - seconds) <= step / 2 + 1e-6


def card_rate(history: History, now: int, window_ms: int, amounts: bool = False) -> float | None:
    """The card's daily count (or sum of amounts) before the window, from the entries one by one."""
    before = [(e.ts, e.amount) for e in history if e.ts < now - window_ms]
    if not before:
        return None
    days = (now - window_ms - before[0][0]) / DAY_MS
    if days < 1:
        return None
    return (sum(a for _, a in before) if amounts else len(before)) / days


@pytest.fixture(scope="module")
def data() -> Traffic:
    return traffic(20_000, seed=5)


def every_reason(data: Traffic, row: int, logit: float = 0.0) -> list[dict[str, Any]]:
    """Every reason whose comparison holds: all inputs pushed the score up."""
    x = {**data.features(row), "sequence_logit": logit}
    return top_reasons(data.transactions[row], x, dict.fromkeys(NAMES, 1.0), data.priors[row], limit=100)


Check = Callable[[re.Match[str], dict[str, Any], Transaction, History, Traffic, int], None]


def check_amount(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
    median = round(statistics.median(e.amount for e in h), 2)
    assert money(m[1]) == v["amount"] == round(t.amount, 2) and m[2] == t.currency
    assert money(m[m.re.groups - 1]) == v["card_median_amount"] == median
    if v.get("ratio") is not None:
        assert near_number(m[3], v["ratio"]) and v["ratio"] == pytest.approx(t.amount / median, abs=0.01)
        assert v["ratio"] >= 1.5
    else:
        assert t.amount <= median / 1.5


def gap_check(short: bool) -> Check:
    def check(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
        gap = (t.event_time_ms - h[-1].ts) / 1000
        usual = statistics.median(b.ts - a.ts for a, b in zip(h, list(h)[1:], strict=False)) / 1000
        assert near_duration(m[1], m[2], v["gap_s"]) and near_duration(m[3], m[4], v["usual_gap_s"])
        assert v["gap_s"] == pytest.approx(gap, abs=0.1) and v["usual_gap_s"] == pytest.approx(usual, abs=0.1)
        assert gap * 2 <= usual if short else gap >= usual * 2
    return check


def velocity_check(window_ms: int) -> Check:
    def check(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
        count = 1 + sum(e.ts >= t.event_time_ms - window_ms for e in h)
        rate = card_rate(h, t.event_time_ms, window_ms)
        assert int(m[1]) == v["count"] == count >= 2
        assert rate is not None and near_number(m[2], v["usual_per_day"])
        assert v["usual_per_day"] == pytest.approx(rate, abs=1e-4) and count > 2 * rate * window_ms / DAY_MS
    return check


def check_spend(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
    spent = sum(e.amount for e in h if e.ts >= t.event_time_ms - DAY_MS)
    usual = card_rate(h, t.event_time_ms, DAY_MS, amounts=True)
    assert money(m[1]) == v["spent_24h"] == pytest.approx(spent, abs=0.01)
    assert usual is not None and money(m[3]) == v["usual_per_day"] == pytest.approx(usual, abs=0.01)
    assert spent > 2 * usual


def check_small(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
    hour = [e for e in h if e.ts >= t.event_time_ms - HOUR]
    before = [e for e in h if e.ts < t.event_time_ms - HOUR]
    small = sum(e.amount < 5 for e in hour)
    assert int(m[1]) == v["count"] == small >= 1 and money(m[2]) == v["small_amount_limit"] == 5.0
    assert int(m[4]) == v["earlier_count"] == sum(e.amount < 5 for e in before)
    assert int(m[5]) == v["earlier_transactions"] == len(before) >= 1
    assert small / len(hour) > v["earlier_count"] / len(before)


def check_merchant(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
    assert m[1] == v["merchant_id"] == t.merchant_id and stable_hash(t.merchant_id) not in {e.merchant for e in h}
    assert int(m[2]) == v["history_length"] == len(h)


def category_check(field: str) -> Check:
    def check(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
        seen = Counter(getattr(e, field) for e in h)
        assert m[1] == v[field] == getattr(t, field) and seen[m[1]] == 0
        assert int(m[2]) == v["history_length"] == len(h)
        usual = m[3].split(", ")
        assert usual == v["usual_countries" if field == "country" else f"usual_{field}s"]
        assert seen[usual[0]] == max(seen.values())
    return check


def check_country(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
    seen = Counter(e.country for e in h)
    usual = m[2].split(", ")
    assert m[1] == v["country"] == t.country and usual == v["usual_countries"] and t.country not in usual
    assert seen[usual[0]] == max(seen.values()) and 0 < seen[t.country] < max(seen.values())


def check_cnp(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
    ecom = sum(e.channel == "ecom" for e in h)
    assert t.channel == "ecom" and int(m[1]) == v["ecom_count"] == ecom and int(m[2]) == v["history_length"] == len(h)
    assert ecom * 2 < len(h)


def check_new_card(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
    assert v["history_length"] == len(h) < 5
    if m[1] is not None:
        assert int(m[1]) == len(h) and near_duration(m[2], m[3], v["first_seen_s"])
        assert v["first_seen_s"] == pytest.approx((t.event_time_ms - h[0].ts) / 1000, abs=0.1)


def check_hour(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
    now = (t.event_time_ms % DAY_MS) / HOUR
    near = sum(min(abs(e.ts % DAY_MS / HOUR - now), 24 - abs(e.ts % DAY_MS / HOUR - now)) <= 1 for e in h)
    assert m[1] == v["time_utc"] == f"{int(now):02d}:{int(now * 60) % 60:02d}"
    assert int(m[2]) == v["near_count"] == near and int(m[3]) == v["history_length"] == len(h)
    assert near <= 0.1 * len(h)


def check_sequence(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
    assert float(m[1]) == pytest.approx(v["probability"], abs=0.005) and v["probability"] == pytest.approx(
        1 / (1 + math.exp(-1.5)), abs=1e-4)


def terminal_rows(d: Traffic, row: int, since_ms: int) -> np.ndarray:
    """Rows of the row's terminal from ``since_ms`` up to (not including) the row's time, from the table."""
    at = d.ts[row]
    merchant = np.asarray(d.columns["merchant_id"])
    return np.flatnonzero((merchant == d.columns["merchant_id"][row]) & (d.ts >= since_ms) & (d.ts < at))


def check_terminal(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
    assert f"terminal {t.merchant_id}" in m[0]


def check_fraud(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
    at = int(d.ts[row])
    rows = terminal_rows(d, row, at - 30 * DAY_MS)
    known = rows[(d.fraud[rows] == 1) & (d.ts[rows] + LABEL_DELAY_MS <= at)]
    assert int(m[1]) == v["fraud_30d"] == len(known) >= 1 and int(m[2]) == v["transactions_30d"]
    assert m[3] == t.merchant_id and near_duration(m[4], m[5], v["since_fraud_s"])
    assert v["since_fraud_s"] == pytest.approx((at - d.ts[known].max()) / 1000, abs=1.0)


def check_verdicts(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
    hour = int(d.ts[row]) // HOUR
    rows = terminal_rows(d, row, 0)
    labelled_hour = (d.ts[rows] + LABEL_DELAY_MS) // HOUR
    for days, group, key in ((7, 1, "fraud_share_7d"), (30, 3, "fraud_share_30d")):
        received = rows[(labelled_hour >= hour - 24 * days) & (labelled_hour < hour)]  # whole hours before
        share = d.fraud[received].mean() if len(received) else 0.0
        shown = float(m[group])
        assert v[key] == pytest.approx(share, abs=1e-4)
        assert abs(shown - 100 * share) <= (0.05 if share < 0.1 else 0.5) + 1e-6
    assert m[2] == t.merchant_id and max(v["fraud_share_7d"], v["fraud_share_30d"]) > 0


def terminal_velocity(window_ms: int, feature: str) -> Check:
    def check(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
        x = d.features(row)
        assert int(m[1]) == v["count"] == 1 + round(math.expm1(x[feature]))
        if window_ms == HOUR:  # the profile's last hour is exact; longer windows are whole hours
            assert v["count"] == 1 + len(terminal_rows(d, row, int(d.ts[row]) - HOUR))
        assert m[2] == t.merchant_id and near_number(m[3], v["usual_per_day"])
        assert v["usual_per_day"] == pytest.approx(round(math.expm1(x["merchant_n_30d"])) / 30, abs=1e-4)
        assert v["count"] > 2 * v["usual_per_day"] * window_ms / DAY_MS
    return check


def check_many_cards(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
    x = d.features(row)
    assert int(m[1]) == v["cards_24h"] == round(math.expm1(x["merchant_cards_1d"])) >= 2
    assert m[2] == t.merchant_id and int(m[3]) == v["transactions_24h"] == round(math.expm1(x["merchant_n_1d"]))


def check_new_cards(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
    share = d.features(row)["merchant_new_card_share_1d"]
    assert abs(int(m[1]) - 100 * v["new_card_share"]) <= 0.5 and v["new_card_share"] == pytest.approx(share, abs=1e-4)
    assert share > 0
    assert m[2] == t.merchant_id


def check_card_new_here(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
    earlier = terminal_rows(d, row, 0)
    assert t.card_id not in {d.columns["card_id"][i] for i in earlier}
    assert m[1] == t.merchant_id and int(m[2]) == v["transactions_30d"]


def check_little(m: re.Match[str], v: dict[str, Any], t: Transaction, h: History, d: Traffic, row: int) -> None:
    x = d.features(row)
    assert m[1] == t.merchant_id and int(m[2]) == v["transactions_30d"] == round(math.expm1(x["merchant_n_30d"])) < 30


WINDOW = {"an hour": HOUR, "24 hours": DAY_MS, "7 days": 7 * DAY_MS}
ORD = r"(\d+)(?:st|nd|rd|th)"
#: Per code: the text's pattern (the whole text) and the check of what it names.
TEXTS: dict[str, tuple[str, Check]] = {
    "amount_above_usual": (rf"amount {MONEY}, {NUMBER}x the card's median of {MONEY}", check_amount),
    "amount_below_usual": (rf"amount {MONEY}, below the card's median of {MONEY}", check_amount),
    "short_gap": (rf"{DURATION} since the card's previous transaction \(usually {DURATION}\)", gap_check(short=True)),
    "long_gap": (rf"{DURATION} since the card's previous transaction \(usually {DURATION}\)", gap_check(short=False)),
    "count_1h": (rf"{ORD} transaction on the card in an hour \(usually {NUMBER} a day\)", velocity_check(HOUR)),
    "count_24h": (rf"{ORD} transaction on the card in 24 hours \(usually {NUMBER} a day\)", velocity_check(DAY_MS)),
    "count_7d": (rf"{ORD} transaction on the card in 7 days \(usually {NUMBER} a day\)",
                 velocity_check(7 * DAY_MS)),
    "spend_24h": (rf"{MONEY} spent on the card in the 24 hours before \(usually {MONEY} a day\)", check_spend),
    "small_amounts_1h": ((rf"(\d+) amounts? under {MONEY} on the card in the hour before; (\d+) of its (\d+) "
                         r"transactions before that"), check_small),
    "new_merchant": (r"merchant (\S+), not seen in the card's (\d+) earlier transactions?", check_merchant),
    "new_mcc": (r"category MCC (\S+), not seen in the card's (\d+) earlier transactions? \(usually (.+)\)",
                category_check("mcc")),
    "new_country": (r"country (\S+), not seen in the card's (\d+) earlier transactions? \(usually (.+)\)",
                    category_check("country")),
    "foreign_country": (r"country (\S+), outside the card's usual countries \((.+)\)", check_country),
    "new_channel": (r"channel (\S+), not seen in the card's (\d+) earlier transactions? \(usually (.+)\)",
                    category_check("channel")),
    "card_not_present": ((r"card-not-present \(ecom\) transaction; (\d+) of the card's (\d+) earlier transactions? "
                         r"were ecom"), check_cnp),
    "new_card": ((rf"(?:first transaction seen on the card|new card: (\d+) earlier transactions?, the first {DURATION} "
                 r"before)"), check_new_card),
    "unusual_hour": ((r"at (\d\d:\d\d) UTC; (\d+) of the card's (\d+) earlier transactions? within an hour of that "
                     r"time of day"), check_hour),
    "sequence_model": (r"sequence model: fraud probability (0\.\d\d) from the card's recent transactions",
                       check_sequence),
    "merchant_confirmed_fraud": ((rf"(\d+) of the (\d+) transactions? at terminal (\S+) in the 30 days before "
                                 rf"confirmed as fraud, the latest {DURATION} before"), check_fraud),
    "merchant_fraud_verdicts": ((r"([\d.]+)% of the labels received on transactions at terminal (\S+) in the 7 days "
                                 r"before said fraud \(([\d.]+)% over 30 days\)"), check_verdicts),
    **{f"merchant_count_{w}": ((rf"{ORD} transaction at terminal (\S+) in {words} \(usually {NUMBER} a day over 30 "
                               r"days\)"), terminal_velocity(WINDOW[words], f"merchant_n_{w}"))
       for w, words in (("1h", "an hour"), ("1d", "24 hours"), ("7d", "7 days"))},
    "merchant_many_cards": (r"(\d+) different cards at terminal (\S+) in the 24 hours before \((\d+) transactions?\)",
                            check_many_cards),
    "merchant_new_cards": ((r"(\d+)% of the transactions at terminal (\S+) in the 24 hours before came from cards new "
                           r"to it"), check_new_cards),
    "merchant_new_card": ((r"first transaction of the card at terminal (\S+) \((\d+) transactions? there in the 30 "
                           r"days before\)"), check_card_new_here),
    "merchant_little_traffic": (r"terminal (\S+) had (\d+) transactions? in the 30 days before, fewer than one a day",
                                check_little),
}


def test_every_reason_code_has_a_pattern_here_and_every_input_speaks_in_one_reason_or_is_silent() -> None:
    grouped = [name for names, _ in EXPLAINERS for name in names]
    assert len(grouped) == len(set(grouped)) and set(grouped) | set(SILENT) == set(ONLINE_INPUTS)
    assert set(TEXTS) == CARD_CODES | TERMINAL_CODES


def test_each_reason_text_says_the_values_it_names_and_they_are_the_card_s_own(data: Traffic) -> None:
    """Every card and terminal reason code, over generated traffic: text == values == an independent computation."""
    rows = np.random.default_rng(1).choice(len(data.transactions), 3_000, replace=False).tolist()
    rows += np.flatnonzero(data.fraud == 1).tolist()
    seen: Counter[str] = Counter()
    for row in rows:
        t, h = data.transactions[row], data.priors[row]
        for reason in every_reason(data, row, logit=1.5):
            pattern, check = TEXTS[reason["code"]]
            match = re.fullmatch(pattern, reason["text"])
            assert match, (reason["code"], reason["text"])
            check(match, reason["values"], t, h, data, row)
            seen[reason["code"]] += 1
    assert set(seen) == CARD_CODES | TERMINAL_CODES, sorted(CARD_CODES | TERMINAL_CODES - set(seen))


# Constructed cases -------------------------------------------------------------------------------------------

T0 = 100 * DAY_MS


def card(amounts: list[float], every_ms: int = 2 * DAY_MS, country: str = "DE") -> History:
    h = new_history()
    for i, a in enumerate(amounts):
        h = append(h, Transaction(f"h{i}", "c1", T0 + i * every_ms, a, "EUR", f"m{i % 3}", "5411", country, "pos"),
                   32)
    return h


def scored(h: History, **fields: Any) -> tuple[Transaction, dict[str, float]]:
    base = {"transaction_id": "t9", "card_id": "c1", "event_time_ms": (h[-1].ts if len(h) else T0) + 2 * DAY_MS,
            "amount": 60.0,
            "currency": "EUR", "merchant_id": "m1", "mcc": "5411", "country": "DE", "channel": "pos"}
    t = Transaction(**{**base, **fields})
    return t, {**engineered(h, t), "sequence_logit": 0.0}


def codes(t: Transaction, x: dict[str, float], contributions: dict[str, float], h: History) -> list[str]:
    return [r["code"] for r in top_reasons(t, x, contributions, h, limit=100)]


def test_an_input_that_pulled_the_score_down_gives_no_reason() -> None:
    h = card([60.0] * 10)
    t, x = scored(h, amount=1450.0, country="FR", event_time_ms=h[-1].ts + 3 * 60_000)
    everything = dict.fromkeys(x, -0.5)
    assert top_reasons(t, x, everything, h) == []
    assert codes(t, x, {**everything, "is_new_country": 0.2, "is_foreign": 0.1}, h) == ["new_country"]
    # The amount's inputs are read together: one pushing up, another pulling down more, no amount reason.
    assert codes(t, x, {"log_amount": 0.3, "amount_z": -0.5, "amount_ratio_max": 0.1}, h) == []
    assert codes(t, x, {"log_amount": 0.3, "amount_z": 0.0}, h) == ["amount_above_usual"]


def test_an_amount_reason_goes_the_way_the_amount_does_against_the_card_s_median() -> None:
    h = card([60.0] * 10)
    push = dict.fromkeys(("log_amount", "amount_z", "amount_ratio_max"), 0.4)
    above = top_reasons(*scored(h, amount=1450.0), push, h)
    assert [(r["code"], r["text"]) for r in above] == [
        ("amount_above_usual", "amount 1,450.00 EUR, 24x the card's median of 60.00 EUR")]
    assert above[0]["values"] == {"amount": 1450.0, "card_median_amount": 60.0, "ratio": 24.17}
    below = top_reasons(*scored(h, amount=0.5), push, h)
    assert [(r["code"], r["text"]) for r in below] == [
        ("amount_below_usual", "amount 0.50 EUR, below the card's median of 60.00 EUR")]
    assert codes(*scored(h, amount=59.0), push, h) == []  # the "large amount: 59.00 EUR": no reason now
    assert codes(*scored(new_history(), amount=1450.0), push, new_history()) == []  # nothing to compare with


def test_a_gap_is_said_in_plain_units_against_the_card_s_usual_gap_and_never_a_month_called_only() -> None:
    h = card([60.0] * 10)  # every 2 days
    push = {"log_gap_prev": 0.7}
    short = top_reasons(*scored(h, event_time_ms=h[-1].ts + 3 * 60_000), push, h)
    assert [(r["code"], r["text"]) for r in short] == [
        ("short_gap", "3 minutes since the card's previous transaction (usually 2 days)")]
    long = top_reasons(*scored(h, event_time_ms=h[-1].ts + 30 * DAY_MS), push, h)
    assert [(r["code"], r["text"]) for r in long] == [
        ("long_gap", "30 days since the card's previous transaction (usually 2 days)")]
    assert codes(*scored(h, event_time_ms=h[-1].ts + 3 * DAY_MS), push, h) == []  # within 2x of usual
    assert all("only" not in r["text"] for r in short + long)


def test_a_country_reason_names_the_transaction_s_country_and_the_card_s_usual_ones() -> None:
    h = card([60.0] * 8)
    for i, country in enumerate(["FR", "FR"]):  # FR twice in ten: seen, but not usual
        h = append(h, Transaction(f"f{i}", "c1", h[-1].ts + DAY_MS, 60.0, "EUR", "m1", "5411", country, "pos"), 32)
    push = {"is_new_country": 0.5, "is_foreign": 0.5}
    abroad = top_reasons(*scored(h, country="FR"), push, h)
    assert [(r["code"], r["text"]) for r in abroad] == [
        ("foreign_country", "country FR, outside the card's usual countries (DE)")]
    assert abroad[0]["values"] == {"country": "FR", "usual_countries": ["DE"]}
    assert codes(*scored(h, country="DE"), push, h) == []  # at home: the flag pushed up, the text would lie
    assert [r["text"] for r in top_reasons(*scored(h, country="BR"), push, h)] == [
        "country BR, not seen in the card's 10 earlier transactions (usually DE)"]


def test_counts_and_flags_speak_only_above_the_card_s_usual_or_when_set() -> None:
    h = card([60.0] * 10)  # 0.5 a day
    burst = h
    for i in range(5):
        burst = append(burst, Transaction(f"b{i}", "c1", h[-1].ts + DAY_MS + i * 60_000, 60.0, "EUR", "m1", "5411",
                                          "DE", "pos"), 32)
    t, x = scored(burst, event_time_ms=burst[-1].ts + 60_000)
    assert [r["text"] for r in top_reasons(t, x, {"n_1h": 0.4}, burst)] == [
        "6th transaction on the card in an hour (usually 0.5 a day)"]
    quiet, xq = scored(h)
    assert codes(quiet, xq, dict.fromkeys(("n_1h", "n_24h", "n_7d", "n_small_1h", "is_new_merchant", "is_new_mcc",
                                           "is_new_channel", "is_ecom", "log_history_len"), 1.0), h) == []


def test_an_entity_reason_names_the_entity_and_its_figures() -> None:
    p = EntityProfile()
    for i in range(6):
        p.observe(i * HOUR, 20.0, card=f"c{i}")
    for i in range(3):
        p.label(f"t{i}", i * HOUR, labelled_at_ms=DAY_MS, fraud=True)
    at = 2 * DAY_MS
    values = list(profile_features(p, at, card="c-new").values())
    t = Transaction("t9", "c-new", at, 20.0, "EUR", "T-17", "5411", "FR", "pos", device_id="D-4")
    x = {**dict(zip(entity_feature_names("merchant_id"), values, strict=True)),
         **dict(zip(entity_feature_names("device_id"), values, strict=True))}
    reasons = top_reasons(t, x, dict.fromkeys(x, 1.0), None, limit=100)
    by_code = {r["code"]: r for r in reasons}
    assert by_code["merchant_confirmed_fraud"]["text"] == (
        "3 of the 6 transactions at terminal T-17 in the 30 days before confirmed as fraud, the latest 1.9 days before")
    assert by_code["device_confirmed_fraud"]["text"].startswith("3 of the 6 transactions at device D-4")
    assert by_code["merchant_little_traffic"]["values"] == {"transactions_30d": 6}
    assert WORDS["ip"] == "IP" and not any(r["code"].startswith("ip_") for r in reasons)  # no IP on it: no IP reason
    assert codes(t, x, {"merchant_fraud_7d": 1.2, "merchant_is_new_card": -0.4, "merchant_cards_1d": 0.0},
                 new_history()) == ["merchant_confirmed_fraud"]
