"""Alert reasons an analyst can check: each names the comparison it makes, with the values it compares.

A reason is ``{"code", "text", "weight", "values"}``: a stable ``code``
(docs/reasons.md lists them all), the ``text`` for the analyst, the
``weight`` it pushed the score up by (log-odds) and the ``values`` the text
names, so a test or a UI can hold the words to the numbers.

Two rules make a reason trustworthy:

1. **It pushed the score up.** Inputs that say the same thing are read
   together (the amount's three inputs, the hour's sine and cosine, a
   terminal's four fraud inputs): their contributions (TreeSHAP shares or
   the learner's weight x standardised value) add up to the reason's
   ``weight``, and only a positive one speaks.
2. **Its direction is the one its text says, read from the values it names,
   never from the model.** The amount is compared with the card's median
   amount: a reason says "above" only for an amount at least 1.5x the
   median, "below" only for one at most two thirds of it, and nothing in
   between. A gap is "short" or "long" against the card's median gap (2x
   either way). Counts and sums speak only when above twice the card's (or
   the entity's) usual rate; flags only when set. Either direction may
   speak when the model says it raised the score (a tiny amount is what card
   testing looks like, a long pause is a dormant card woken up); a
   comparison the history cannot make (no earlier transaction, no usual gap)
   gives no reason.

Example:
    >>> from models.features import engineered
    >>> from models.history import append, new_history
    >>> from stream.contracts.records import Transaction
    >>> day = 86_400_000
    >>> h = new_history()
    >>> for i in range(6):
    ...     h = append(h, Transaction(f"t{i}", "c1", i * day, 60.0, "EUR", f"m{i % 2}", "5411", "DE", "pos"), 32)
    >>> t = Transaction("t9", "c1", 6 * day, 1450.0, "EUR", "m9", "5732", "FR", "ecom")
    >>> x = engineered(h, t)
    >>> for r in top_reasons(t, x, {"log_amount": 0.9, "amount_z": 0.6, "is_foreign": 1.2, "n_1h": -0.3}, h):
    ...     print(r["code"], "|", r["text"], "|", r["values"])
    amount_above_usual | amount 1,450.00 EUR, 24x the card's median of 60.00 EUR | {'amount': 1450.0, 'card_median_amount': 60.0, 'ratio': 24.17}
    new_country | country FR, not seen in the card's 6 earlier transactions (usually DE) | {'country': 'FR', 'usual_countries': ['DE'], 'history_length': 6}
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models.entity_reasons import ENTITY_EXPLAINERS
from models.hashing import stable_hash
from models.history import History, new_history
from models.reason_text import (
    DAY_MS,
    HOUR_MS,
    RATE,
    Explain,
    Facts,
    Found,
    duration,
    money,
    number,
    ordinal,
    plural,
)
from stream.contracts.records import Transaction

__all__ = ["EXPLAINERS", "top_reasons"]

_FAR = 1.5  # an amount this many times above (or below) the card's median is "above" ("below") it
_SMALL_AMOUNT = 5.0  # models.features' card-testing amount
_FEW = 5  # a card with fewer earlier transactions is a new card; the hour needs at least this many
_ODD_HOUR_SHARE = 0.1  # a time of day at most this share of the card's transactions came near is unusual


def _earlier(f: Facts) -> str:
    return f"the card's {plural(f.n, 'earlier transaction')}"


def _most_common(values: Sequence[str]) -> list[str]:
    """The most common values (all of a tie), plus any that make a quarter or more of ``values``."""
    counts = Counter(values)
    top = max(counts.values())
    return sorted((v for v, k in counts.items() if k == top or k >= len(values) / 4), key=lambda v: (-counts[v], v))


# The card's own history -------------------------------------------------------------------------------------


def _amount(f: Facts) -> Found | None:
    if not f.n:
        return None
    t = f.transaction
    amount, median = round(t.amount, 2), round(float(np.median(f.amounts)), 2)
    ratio = amount / max(median, 0.01)
    if ratio >= _FAR:
        return ("amount_above_usual",
                (f"amount {money(amount, t.currency)}, {number(ratio)}x the card's median of "
                f"{money(median, t.currency)}"),
                {"amount": amount, "card_median_amount": median, "ratio": round(ratio, 2)})
    if ratio <= 1 / _FAR:
        return ("amount_below_usual",
                f"amount {money(amount, t.currency)}, below the card's median of {money(median, t.currency)}",
                {"amount": amount, "card_median_amount": median})
    return None


def _gap(f: Facts) -> Found | None:
    if f.n < 2:
        return None
    gap, usual = max(f.now - int(f.ts[-1]), 0) / 1000, float(np.median(np.diff(f.ts))) / 1000
    if usual <= 0 or usual / RATE < gap < usual * RATE:
        return None
    code = "short_gap" if gap < usual else "long_gap"
    return (code, f"{duration(gap)} since the card's previous transaction (usually {duration(usual)})",
            {"gap_s": round(gap, 1), "usual_gap_s": round(usual, 1)})


def _velocity(name: str, window_ms: int, words: str, code: str) -> Explain:
    def explain(f: Facts) -> Found | None:
        before = round(f.features.get(name, 0.0))
        rate = f.usual_per_day(window_ms)
        if before < 1 or rate is None or before + 1 <= RATE * rate * window_ms / DAY_MS:
            return None
        return (code, f"{ordinal(before + 1)} transaction on the card in {words} (usually {number(rate)} a day)",
                {"count": before + 1, "usual_per_day": round(rate, 4)})
    return explain


def _spend(f: Facts) -> Found | None:
    t = f.transaction
    spent = round(math.expm1(f.features.get("log_sum_24h", 0.0)), 2)
    usual = f.usual_per_day(DAY_MS, f.amounts)
    if spent <= 0 or usual is None or spent <= RATE * usual:
        return None
    return ("spend_24h", (f"{money(spent, t.currency)} spent on the card in the 24 hours before "
                         f"(usually {money(usual, t.currency)} a day)"),
            {"spent_24h": spent, "usual_per_day": round(usual, 2)})


def _small_amounts(f: Facts) -> Found | None:
    small = round(f.features.get("n_small_1h", 0.0))
    in_hour = round(f.features.get("n_1h", 0.0))
    older = f.older(HOUR_MS)
    n_older = int(older.sum())
    earlier = int((f.amounts[older] < _SMALL_AMOUNT).sum())
    if small < 1 or n_older < 1 or small / max(in_hour, 1) <= earlier / n_older:
        return None
    t = f.transaction
    return ("small_amounts_1h",
            (f"{plural(small, 'amount')} under {money(_SMALL_AMOUNT, t.currency)} on the card in the hour before; "
            f"{earlier} of its {n_older} transactions before that"),
            {"count": small, "small_amount_limit": _SMALL_AMOUNT, "earlier_count": earlier,
             "earlier_transactions": n_older})


def _new_merchant(f: Facts) -> Found | None:
    merchant = f.transaction.merchant_id
    if not f.n or not merchant or stable_hash(merchant) in {e.merchant for e in f.entries}:
        return None
    return ("new_merchant", f"merchant {merchant}, not seen in {_earlier(f)}",
            {"merchant_id": merchant, "history_length": f.n})


def _new_category(field: str, code: str, label: str) -> Explain:
    """A value of ``field`` (mcc, channel) the card's history never had, and the card's usual one."""
    def explain(f: Facts) -> Found | None:
        value = getattr(f.transaction, field)
        seen = [getattr(e, field) for e in f.entries]
        if not f.n or value in seen:
            return None
        usual = _most_common(seen)
        return (code, f"{label} {value}, not seen in {_earlier(f)} (usually {', '.join(usual)})",
                {field: value, f"usual_{field}s": usual, "history_length": f.n})
    return explain


def _country(f: Facts) -> Found | None:
    country = f.transaction.country
    if not f.n:
        return None
    seen = [e.country for e in f.entries]
    usual = _most_common(seen)
    if country in usual:
        return None
    if country not in seen:
        return ("new_country", f"country {country}, not seen in {_earlier(f)} (usually {', '.join(usual)})",
                {"country": country, "usual_countries": usual, "history_length": f.n})
    return ("foreign_country", f"country {country}, outside the card's usual countries ({', '.join(usual)})",
            {"country": country, "usual_countries": usual})


def _card_not_present(f: Facts) -> Found | None:
    ecom = sum(e.channel == "ecom" for e in f.entries)
    if f.transaction.channel != "ecom" or not f.n or ecom * 2 >= f.n:
        return None
    return ("card_not_present", f"card-not-present (ecom) transaction; {ecom} of {_earlier(f)} were ecom",
            {"channel": "ecom", "ecom_count": ecom, "history_length": f.n})


def _new_card(f: Facts) -> Found | None:
    if f.n >= _FEW:
        return None
    if not f.n:
        return ("new_card", "first transaction seen on the card", {"history_length": 0})
    age = (f.now - int(f.ts[0])) / 1000
    return ("new_card", f"new card: {plural(f.n, 'earlier transaction')}, the first {duration(age)} before",
            {"history_length": f.n, "first_seen_s": round(age, 1)})


def _hour(f: Facts) -> Found | None:
    if f.n < _FEW:
        return None
    hour = (f.now % DAY_MS) / HOUR_MS
    apart = np.abs((f.ts % DAY_MS) / HOUR_MS - hour)
    near = int((np.minimum(apart, 24 - apart) <= 1).sum())
    if near > _ODD_HOUR_SHARE * f.n:
        return None
    minute = int(f.now % DAY_MS // 60_000)
    at = f"{minute // 60:02d}:{minute % 60:02d}"
    return ("unusual_hour", f"at {at} UTC; {near} of {_earlier(f)} within an hour of that time of day",
            {"time_utc": at, "near_count": near, "history_length": f.n})


def _sequence(f: Facts) -> Found | None:
    p = 1 / (1 + math.exp(-f.features.get("sequence_logit", 0.0)))
    return ("sequence_model", f"sequence model: fraud probability {p:.2f} from the card's recent transactions",
            {"probability": round(p, 4)})


#: Inputs read together, and what they say. Each input is in at most one group.
_CARD: tuple[tuple[tuple[str, ...], Explain], ...] = (
    (("log_amount", "amount_z", "amount_ratio_max"), _amount),
    (("log_gap_prev",), _gap),
    (("n_1h",), _velocity("n_1h", HOUR_MS, "an hour", "count_1h")),
    (("n_24h",), _velocity("n_24h", DAY_MS, "24 hours", "count_24h")),
    (("n_7d",), _velocity("n_7d", 7 * DAY_MS, "7 days", "count_7d")),
    (("log_sum_24h",), _spend),
    (("n_small_1h",), _small_amounts),
    (("is_new_merchant",), _new_merchant),
    (("is_new_mcc",), _new_category("mcc", "new_mcc", "category MCC")),
    (("is_new_country", "is_foreign"), _country),
    (("is_new_channel",), _new_category("channel", "new_channel", "channel")),
    (("is_ecom",), _card_not_present),
    (("log_history_len",), _new_card),
    (("hour_sin", "hour_cos"), _hour),
    (("sequence_logit",), _sequence),
)


#: Every group of inputs and what it says: the card's, then every entity kind's.
EXPLAINERS: tuple[tuple[tuple[str, ...], Explain], ...] = (*_CARD, *ENTITY_EXPLAINERS)


def top_reasons(transaction: Transaction, features: Mapping[str, float], contributions: Mapping[str, float],
                history: History | None = None, limit: int = 3) -> list[dict[str, Any]]:
    """The ``limit`` reasons that pushed the score up most, largest ``weight`` first.

    ``contributions``: each input's share of the score's log-odds; ``history``:
    the card's transactions before this one (what the comparisons are made
    with; without it, reasons that compare with the card's history are not given).
    """
    facts = Facts(transaction, features, history if history is not None else new_history())
    found: list[tuple[float, Found]] = []
    for names, explain in EXPLAINERS:
        present = [contributions[name] for name in names if name in contributions]
        weight = float(sum(present))
        if not present or not weight > 0:
            continue
        reason = explain(facts)
        if reason is not None:
            found.append((weight, reason))
    found.sort(key=lambda wr: -wr[0])
    return [{"code": code, "text": text, "weight": round(weight, 4), "values": values}
            for weight, (code, text, values) in found[:limit]]
