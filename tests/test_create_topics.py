"""deploy/create-topics.sh, the Compose job that creates the engine's topics, run against a stub kafka-topics.sh.

No broker and no Kafka distribution needed: the stub records every call's
arguments and answers ``--describe`` with a partition count the test picks.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from stream.contracts.settings import Settings
from stream.kafka.topics import topic_names

CREATE_TOPICS = Path(__file__).resolve().parents[1] / "deploy" / "create-topics.sh"

STUB = r"""#!/bin/sh
# Stand-in for kafka-topics.sh: records its arguments, answers --describe.
printf '%s\037' "$@" >> "$STUB_LOG"
printf '\n' >> "$STUB_LOG"
for arg in "$@"; do
    if [ "$arg" = "--describe" ]; then
        printf 'Topic: x\tTopicId: AAAA\tPartitionCount: %s\tReplicationFactor: 1\tConfigs: \n' "$STUB_PARTITIONS"
    fi
done
exit 0
"""


def _run_create_topics(tmp_path: Path, env: dict[str, str], existing_partitions: str | None = None
                       ) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "kafka-topics.sh"
    stub.write_text(STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.log"
    log.write_text("")
    partitions = env.get("FRAUDSTREAM_TOPIC_PARTITIONS", "8")
    run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KAFKA_BIN_DIR": str(bin_dir),
               "STUB_LOG": str(log), "STUB_PARTITIONS": existing_partitions or partitions, **env}
    result = subprocess.run(["sh", str(CREATE_TOPICS)], env=run_env,
                            check=False, capture_output=True, text=True, timeout=60)
    calls = [line.split("\x1f")[:-1] for line in log.read_text().splitlines()]
    return result, calls


def _created(calls: list[list[str]]) -> dict[str, list[str]]:
    """``{topic: argv}`` of every --create call."""
    return {c[c.index("--topic") + 1]: c for c in calls if "--create" in c}


def _opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_create_topics_creates_every_engine_topic(tmp_path: Path) -> None:
    result, calls = _run_create_topics(tmp_path, {})
    assert result.returncode == 0, result.stderr
    created = _created(calls)
    defaults = Settings()
    assert set(topic_names(defaults)) <= set(created), f"missing: {set(topic_names(defaults)) - set(created)}"
    for name in topic_names(defaults):
        argv = created[name]
        assert "--if-not-exists" in argv, "creation must be idempotent"
        assert _opt(argv, "--partitions") == [str(defaults.topic_partitions)]
        assert _opt(argv, "--replication-factor") == [str(defaults.replication_factor)]
        assert _opt(argv, "--bootstrap-server") == ["kafka:19092"]
    for dlq in (defaults.topic_transactions_dlq, defaults.topic_feedback_dlq):
        retention = [c for c in _opt(created[dlq], "--config") if c.startswith("retention.ms=")]
        assert retention and int(retention[0].split("=")[1]) > 7 * 86_400_000, "DLQs outlive Kafka's 7-day default"
    models = created["fraudstream-models"]
    assert "cleanup.policy=compact" in _opt(models, "--config")


def test_create_topics_is_parameterised(tmp_path: Path) -> None:
    names = {f"FRAUDSTREAM_TOPIC_{t}": f"t-{t.lower()}" for t in
             ("TRANSACTIONS", "FEEDBACK", "SCORES", "ALERTS", "TRANSACTIONS_DLQ", "FEEDBACK_DLQ")}
    env = {"FRAUDSTREAM_TOPIC_PARTITIONS": "3", "FRAUDSTREAM_REPLICATION_FACTOR": "3",
           "TOPIC_MIN_INSYNC_REPLICAS": "2", "BOOTSTRAP_SERVERS": "k1:1,k2:2", **names}
    result, calls = _run_create_topics(tmp_path, env)
    assert result.returncode == 0, result.stderr
    created = _created(calls)
    custom = Settings.from_env(env)
    assert set(topic_names(custom)) <= set(created)
    for name in topic_names(custom):
        argv = created[name]
        assert _opt(argv, "--partitions") == ["3"]
        assert _opt(argv, "--replication-factor") == ["3"]
        assert "min.insync.replicas=2" in _opt(argv, "--config")
        assert _opt(argv, "--bootstrap-server") == ["k1:1,k2:2"]


def test_create_topics_creates_the_alert_budgets_topics_only_with_a_budget(tmp_path: Path) -> None:
    with_budget = Settings.from_env({"FRAUDSTREAM_ALERT_BUDGET": "0.5%"})
    result, calls = _run_create_topics(tmp_path, {"FRAUDSTREAM_ALERT_BUDGET": "0.5%"})
    assert result.returncode == 0, result.stderr
    created = _created(calls)
    assert _opt(created[with_budget.budget_topic], "--partitions") == ["1"]
    assert "cleanup.policy=compact" in _opt(created[with_budget.threshold_topic], "--config")
    (tmp_path / "plain").mkdir()
    _, calls = _run_create_topics(tmp_path / "plain", {})
    assert with_budget.threshold_topic not in _created(calls)


def test_create_topics_refuses_a_partition_mismatch(tmp_path: Path) -> None:
    # The topics exist already with 4 partitions; --if-not-exists leaves them so.
    result, _ = _run_create_topics(tmp_path, {"FRAUDSTREAM_TOPIC_PARTITIONS": "8"}, existing_partitions="4")
    assert result.returncode != 0
    assert "4 partitions" in result.stderr and "FRAUDSTREAM_TOPIC_PARTITIONS=8" in result.stderr


def test_create_topics_gives_up_without_a_broker(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    failing = bin_dir / "kafka-topics.sh"
    failing.write_text("#!/bin/sh\nexit 1\n")
    failing.chmod(0o755)
    result = subprocess.run(["sh", str(CREATE_TOPICS)], check=False, capture_output=True, text=True, timeout=60,
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KAFKA_BIN_DIR": str(bin_dir),
                                 "WAIT_SECONDS": "0"})
    assert result.returncode == 1
    assert "no broker answered" in result.stderr
