"""The sequence model in the stream: scored with, recorded, explained, and swapped without a restart."""

from __future__ import annotations

import pytest

from models.train import TrainConfig, train
from replay.generate import GeneratorConfig, generate
from stream.tools.broker import free_port
from tests.support import as_records, consume_all, make_traffic, produce, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _train(out, seed):
    table = generate(GeneratorConfig(seed=seed, n_transactions=20_000, n_cards=600, n_merchants=200, days=20))
    return train(TrainConfig(table=table, out=out, epochs=1, legit_per_epoch=4000, val_legit=2000, seed=seed,
                             progress=False, threads=1))


def test_scores_carry_the_sequence_model_and_it_switches_live(settings, worker_factory, broker, tmp_path):
    model_dir = tmp_path / "model"
    first = _train(model_dir, seed=1)
    settings = settings.replace(sequence_model_path=str(model_dir), sequence_reload_interval_s=0.5,
                                alert_threshold=0.05, web_enabled=True, web_port=free_port())
    worker = worker_factory(settings)
    rows = make_traffic(n_cards=50, per_card=8, fraud_every=4, seed=41)
    produce(broker, settings.topic_transactions, as_records(rows))
    ids = {r["transaction_id"] for r in rows}
    scores = consume_all(broker, settings.topic_scores, lambda r: {s["transaction_id"] for s in r} >= ids, timeout=90)
    assert {s["model_versions"]["sequence"] for s in scores} == {first.version}
    assert all(0.0 <= s["components"]["sequence"] <= 1.0 for s in scores)
    # Too few labels for the online learner yet: the score is the sequence model's.
    assert all(s["score"] == s["components"]["sequence"] for s in scores)
    alerts = consume_all(broker, settings.topic_alerts, lambda r: len(r) >= 1, timeout=20)
    assert alerts and any(r["code"].startswith("sequence") for a in alerts for r in a["reasons"]), \
        "alerts say what the sequence model saw"

    second = _train(model_dir, seed=2)  # written atomically next to the running worker
    assert second.version != first.version

    def switched() -> bool:
        return worker.get_json("/stats/")["model_versions"].get("sequence") == second.version

    assert wait_for(switched, timeout=30), worker.log_tail()
    later = [dict(r, transaction_id="later-" + r["transaction_id"], timestamp=r["timestamp"] + 86_400_000)
             for r in rows[:40]]
    produce(broker, settings.topic_transactions, as_records(later))
    late_ids = {r["transaction_id"] for r in later}
    scores = consume_all(broker, settings.topic_scores, lambda r: {s["transaction_id"] for s in r} >= late_ids,
                         timeout=60)
    assert {s["model_versions"]["sequence"] for s in scores if s["transaction_id"] in late_ids} == {second.version}
    assert worker.alive()
