"""Entity features held to their definitions, computed here from the plain list of what happened before."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from models.profile import HOUR_MS, EntityProfile
from models.profile_features import PROFILE_FEATURES, profile_features

DAY = 24 * HOUR_MS


def reference(txs: list[tuple[int, float, str, bool]], labels: list[tuple[int, int, int, bool]], at: int,
              card: str) -> dict[str, float]:
    """The definitions, over every transaction (time, amount, card, new card?) and label
    (transaction index, its time, labelled_at, fraud) applied before the one at ``at``."""
    hour = at // HOUR_MS

    def in_window(ts: int, hours: int) -> bool:
        return ts < at and hour - hours <= ts // HOUR_MS

    n = {w: sum(in_window(ts, w) for ts, _, _, _ in txs) for w in (24, 168, 720)}
    whole_day = [(ts, new) for ts, _, _, new in txs if hour - 24 <= ts // HOUR_MS < hour]
    amount_7d = sum(round(a * 1000) for ts, a, _, _ in txs if in_window(ts, 168)) / 1000  # kept in thousandths
    last_seen: dict[str, int] = {}
    for ts, _, c, _ in txs:
        last_seen[c] = max(last_seen.get(c, ts), ts)
    latest: dict[int, tuple[int, bool, int]] = {}
    for tx, ts, labelled_at, fraud in labels:  # in arrival order: on a tie the later one wins
        if labelled_at <= at and (tx not in latest or labelled_at >= latest[tx][0]):
            latest[tx] = (labelled_at, fraud, ts)
    known = [ts for _, fraud, ts in latest.values() if fraud]
    f30 = sum(at - 30 * DAY <= ts < at for ts in known)
    before = [ts for ts in known if ts < at]
    days = min((at - max(before)) / DAY, 365.0) if before else 365.0
    received = set(labels)  # the same label twice is one

    def share(hours: int) -> float:
        window = [fraud for _, _, labelled_at, fraud in received if hour - hours <= labelled_at // HOUR_MS < hour]
        return sum(window) / len(window) if window else 0.0

    return {
        "n_1h": math.log1p(sum(at - HOUR_MS <= ts < at for ts, _, _, _ in txs)),
        "n_1d": math.log1p(n[24]), "n_7d": math.log1p(n[168]), "n_30d": math.log1p(n[720]),
        "log_mean_amount_7d": math.log1p(amount_7d / n[168]) if n[168] else 0.0,
        "cards_1d": math.log1p(sum(at - DAY <= last < at for last in last_seen.values())),
        "new_card_share_1d": sum(new for _, new in whole_day) / len(whole_day) if whole_day else 0.0,
        "is_new_card": 0.0 if card in last_seen and last_seen[card] < at else 1.0,
        "fraud_7d": math.log1p(sum(at - 7 * DAY <= ts < at for ts in known)),
        "fraud_30d": math.log1p(f30),
        "fraud_rate_30d": f30 / n[720] if n[720] else 0.0,
        "days_since_fraud": math.log1p(days),
        "label_fraud_share_7d": share(168),
        "label_fraud_share_30d": share(720),
    }


def test_a_breached_terminal_by_hand() -> None:
    """Three cards at a terminal; one transaction confirmed fraud a week after it happened."""
    p = EntityProfile()
    p.observe(0, 20.0, card="a")
    p.observe(2 * HOUR_MS, 40.0, card="b")
    p.observe(2 * DAY, 60.0, card="a")
    p.label("t1", 2 * HOUR_MS, labelled_at_ms=2 * HOUR_MS + 7 * DAY, fraud=True)
    at = 2 * DAY + 30 * 60_000  # half an hour after the third
    f = profile_features(p, at, card="c")
    assert f["n_1h"] == math.log1p(1)
    assert f["n_1d"] == math.log1p(1) and f["n_7d"] == math.log1p(3)
    assert f["log_mean_amount_7d"] == math.log1p(40.0)
    assert f["cards_1d"] == math.log1p(1)  # only a, seen half an hour ago
    assert f["is_new_card"] == 1.0 and profile_features(p, at, card="a")["is_new_card"] == 0.0
    assert f["fraud_30d"] == 0.0 and f["days_since_fraud"] == math.log1p(365)  # the label is not known yet
    later = 2 * HOUR_MS + 7 * DAY  # exactly at labelled_at it counts; a millisecond before, not
    assert profile_features(p, later, card="c")["fraud_7d"] == math.log1p(1)
    assert profile_features(p, later - 1, card="c")["fraud_7d"] == 0.0
    assert profile_features(p, later, card="c")["fraud_rate_30d"] == 1 / 3
    assert profile_features(p, later, card="c")["days_since_fraud"] == math.log1p(7.0)


def test_a_correction_counts_from_its_own_labelled_at() -> None:
    p = EntityProfile()
    p.observe(0, 1.0, card="a")
    p.label("t", 0, labelled_at_ms=DAY, fraud=True)
    p.label("t", 0, labelled_at_ms=2 * DAY, fraud=False)
    assert [profile_features(p, at, card="a")["fraud_30d"] for at in (DAY - 1, DAY, 2 * DAY - 1, 2 * DAY)] == [
        0.0, math.log1p(1), math.log1p(1), 0.0]


stories = st.lists(
    st.tuples(st.integers(1, 3 * DAY), st.floats(0, 5_000), st.sampled_from("abcdef"),
              st.lists(st.tuples(st.integers(0, 40), st.integers(0, 9 * DAY), st.booleans()), max_size=2)),
    min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(stories)
def test_features_are_their_definitions_for_in_order_traffic(story) -> None:
    p = EntityProfile()
    txs: list[tuple[int, float, str, bool]] = []
    labels: list[tuple[int, int, int, bool]] = []
    at = 0
    for gap, amount, card, label_rows in story:
        at += gap
        expected = reference(txs, labels, at, card)
        got = profile_features(p, at, card=card)
        assert set(got) == set(PROFILE_FEATURES)
        for name in PROFILE_FEATURES:
            assert math.isclose(got[name], expected[name], rel_tol=1e-9, abs_tol=1e-12), (name, got, expected)
        new = card not in {c for _, _, c, _ in txs}
        p.observe(at, amount, card=card)
        txs.append((at, amount, card, new))
        for which, delay, fraud in label_rows:  # labels of earlier (or this) transactions arrive now
            tx = which % len(txs)
            p.label(f"t{tx}", txs[tx][0], labelled_at_ms=txs[tx][0] + delay, fraud=fraud)
            labels.append((tx, txs[tx][0], txs[tx][0] + delay, fraud))
    

def test_label_shares_count_each_label_once_from_the_hour_after_it_arrived() -> None:
    """A redelivered label (its offset already applied) counts once, even after its event was let go."""
    p = EntityProfile()
    p.observe(0, 1.0, card="a")
    assert p.label("t1", 0, labelled_at_ms=DAY + 5, fraud=True, source=7, offset=10)
    assert p.label("t2", 0, labelled_at_ms=DAY + 6, fraud=False, source=7, offset=11)
    p.labels.clear()  # as if let go to stay under MAX_LABELS
    assert not p.label("t2", 0, labelled_at_ms=DAY + 6, fraud=False, source=7, offset=11)  # redelivered
    f = [profile_features(p, at, card="a") for at in (DAY + HOUR_MS - 1, DAY + HOUR_MS, 8 * DAY + HOUR_MS)]
    assert [x["label_fraud_share_7d"] for x in f] == [0.0, 0.5, 0.0]  # the 7-day window has moved past it
    assert [x["label_fraud_share_30d"] for x in f] == [0.0, 0.5, 0.5]


def test_window_edges_are_inclusive_at_their_start() -> None:
    p = EntityProfile()
    p.observe(0, 1.0, card="a")
    p.label("t", 0, labelled_at_ms=1, fraud=True)
    for days, name in ((7, "fraud_7d"), (30, "fraud_30d")):
        assert profile_features(p, days * DAY, card="a")[name] == math.log1p(1)
        assert profile_features(p, days * DAY + 1, card="a")[name] == 0.0
    assert profile_features(p, HOUR_MS, card="a")["n_1h"] == math.log1p(1)
    assert profile_features(p, HOUR_MS + 1, card="a")["n_1h"] == 0.0
    assert profile_features(p, 30 * DAY, card="a")["n_30d"] == math.log1p(1)  # hour 0 is 720 hours back
    assert profile_features(p, 30 * DAY + HOUR_MS, card="a")["n_30d"] == 0.0
