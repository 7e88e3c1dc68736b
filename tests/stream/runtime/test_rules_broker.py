"""Dynamic rules through a real broker: added while traffic flows, applied by every worker, disabled, gone."""

from __future__ import annotations

import re
import urllib.request

import pytest

from stream.tools.broker import free_port
from stream.tools.cli import main
from tests.support import Trickle, as_records, consume_all, make_traffic, produce, scores_of, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def metric(worker, name: str, rule: str) -> float:
    url = f"http://{worker.settings.web_host}:{worker.settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(rf'^{name}\{{rule="{re.escape(rule)}"\}} (\S+)$', text, flags=re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def stats(worker) -> dict:
    try:
        return worker.get_json("/stats/")["stats"]
    except OSError:
        return {}


def test_a_rule_added_while_traffic_flows_applies_on_every_worker_until_disabled(
        settings, worker_factory, broker, tmp_path, monkeypatch) -> None:
    for name, value in settings.to_env().items():  # `fraudstream rules` reads the same settings as the workers
        monkeypatch.setenv(name, value)
    workers = [worker_factory(settings.replace(web_enabled=True, web_port=free_port(), data_dir=str(tmp_path / n)),
                              name=n) for n in ("a", "b")]
    rows = make_traffic(n_cards=40, per_card=6, seed=3)  # 40 cards over both partitions
    before, during, after = rows[:80], rows[80:160], rows[160:]
    with Trickle(broker, settings.topic_transactions, rows[-1]["timestamp"]):  # traffic flows throughout
        produce(broker, settings.topic_transactions, as_records(before))
        first = scores_of(broker, settings, before)
        assert all(s["rules"] == {} and s["rule_hits"] == [] for s in first.values())

        assert main(["rules", "add", "--id", "big", "--expr", "amount > 0.0 && country == 'FR'", "--action", "alert",
                     "--reason", "FR spend"]) == 0
        # Fails on every record: there is no sequence model, so components has no "sequence".
        assert main(["rules", "add", "--id", "seq", "--expr", "components.sequence > 0.5", "--action", "block",
                     "--reason", "seq"]) == 0
        assert main(["rules", "add", "--id", "broken", "--expr", "amount >", "--action", "alert",
                     "--reason", "x"]) == 2  # refused at add: never reaches the workers
        assert wait_for(lambda: all(stats(w).get("rules_loaded") == 2 for w in workers), timeout=30), \
            [w.log_tail() for w in workers]
        produce(broker, settings.topic_transactions, as_records(during))
        applied = scores_of(broker, settings, during)
        assert all(s["rules"] == {"big": 1} and s["rule_hits"] == ["big"] and s["decision"] == "alert"
                   and s["rule_errors"] == ["seq"] for s in applied.values())
        alerts = consume_all(broker, settings.topic_alerts,
                             lambda r: {a["transaction_id"] for a in r} >= set(applied), timeout=60)
        assert {a["transaction_id"] for a in alerts} >= set(applied)
        assert all(a["reasons"][0]["code"] == "rule:big" for a in alerts if a["transaction_id"] in applied)
        # Both workers scored some of them with the rule, and counted the failures of the other.
        assert all(metric(w, "fraudstream_rule_hits_total", "big") > 0 for w in workers)
        assert all(metric(w, "fraudstream_rule_failures_total", "seq") > 0 for w in workers)
        assert consume_all(broker, settings.topic_transactions_dlq, lambda r: False, timeout=1) == []

        assert main(["rules", "disable", "big"]) == 0
        assert main(["rules", "delete", "seq"]) == 0
        assert wait_for(lambda: all(stats(w).get("rules_loaded") == 0 for w in workers), timeout=30)
        produce(broker, settings.topic_transactions, as_records(after))
        stopped = scores_of(broker, settings, after)
    assert all(s["rules"] == {} and s["rule_hits"] == [] and s["decision"] == "pass" for s in stopped.values())
    assert all(w.alive() for w in workers)
