"""One Kafka client factory: every tool's clients get the TLS / SASL settings, and no module builds its own.

The tools are run for real against the test broker (PLAINTEXT) with SASL_SSL
settings in the environment; the factory's constructor lookup is intercepted
to record what each client is given, then build it without the security
options so that it can reach the test broker. What is checked is what the
factory was given, for every client each tool builds.
"""

from __future__ import annotations

import ast
import asyncio
import json
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stream.contracts.settings import Settings
from stream.kafka import clients
from tests.support import REPO, produce, wait_for

SECURITY = {
    "FRAUDSTREAM_SECURITY_PROTOCOL": "SASL_SSL",
    "FRAUDSTREAM_SASL_MECHANISM": "SCRAM-SHA-512",
    "FRAUDSTREAM_SASL_USERNAME": "fraud-tools",
    "FRAUDSTREAM_SASL_PASSWORD": "s3cret-pw",
}
CA_NAME = "fraudstream-test-ca"


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed CA certificate, as a broker's CA bundle would be."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a CA certificate")
    out = tmp_path_factory.mktemp("ca")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={CA_NAME}",
                    "-keyout", str(out / "ca.key"), "-out", str(out / "ca.pem")], check=True, capture_output=True)
    return out / "ca.pem"


Built = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Built:
    """``(kind, config)`` of every client the factory builds; the clients themselves connect in PLAINTEXT."""
    real = clients._constructor
    seen: Built = []

    def recording(kind: str) -> Callable[..., Any]:
        def construct(*topics: str, **config: Any) -> Any:
            seen.append((kind, dict(config)))
            plain = {k: v for k, v in config.items() if k not in clients._SECURITY_OPTIONS}
            return real(kind)(*topics, **plain)
        return construct

    monkeypatch.setattr(clients, "_constructor", recording)
    return seen


@pytest.fixture
def secure_env(settings: Settings, ca_file: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's settings plus SASL_SSL with credentials and a CA file, in the environment the tools read."""
    env = {**settings.to_env(), **SECURITY, "FRAUDSTREAM_SSL_CAFILE": str(ca_file)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env(env)


def assert_secured(built: Built, kinds: set[str], bootstrap: str) -> None:
    assert {kind for kind, _ in built} == kinds, built
    for kind, config in built:
        assert config["bootstrap_servers"] == [bootstrap], kind
        assert config.get("security_protocol") == "SASL_SSL", f"{kind} built without the security settings"
        assert config.get("sasl_mechanism") == "SCRAM-SHA-512", kind
        assert (config.get("sasl_plain_username"), config.get("sasl_plain_password")) == ("fraud-tools", "s3cret-pw")
        context = config.get("ssl_context")
        assert isinstance(context, ssl.SSLContext) and context.check_hostname, kind
        assert f"'commonName', '{CA_NAME}'" in str(context.get_ca_certs()), f"{kind}: the CA file is not loaded"


# --------------------------------------------------------------------------- each tool, through a broker


@pytest.mark.broker
def test_alerts_uses_the_security_settings(secure_env: Settings, built: Built,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from stream.tools.tail import cli

    alert = {"alert_id": "a1", "card_id": "card-1", "score": 0.9}
    produce(secure_env.bootstrap_servers, secure_env.topic_alerts, [(b"card-1", json.dumps(alert).encode())])
    code = cli(["--from-beginning", "--json", "--max", "1", "--timeout", "20"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out) == alert
    assert_secured(built, {"consumer"}, secure_env.bootstrap_servers)


@pytest.mark.broker
def test_evaluate_uses_the_security_settings(secure_env: Settings, built: Built, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from replay.evaluate import cli

    scores = [{"transaction_id": f"t{i}", "card_id": f"c{i}", "event_time": i, "score": s, "decision": "pass"}
              for i, s in enumerate((0.1, 0.9))]
    produce(secure_env.bootstrap_servers, secure_env.topic_scores,
            [(f"c{i}".encode(), json.dumps(s).encode()) for i, s in enumerate(scores)])
    labels = tmp_path / "labels.csv"
    labels.write_text("transaction_id,is_fraud\nt0,0\nt1,1\n")
    code = cli(["--bootstrap-servers", secure_env.bootstrap_servers, "--topic", secure_env.topic_scores,
                "--labels", str(labels), "--timeout", "20"])
    assert code == 0, capsys.readouterr().err
    assert_secured(built, {"consumer"}, secure_env.bootstrap_servers)


@pytest.mark.broker
def test_replay_uses_the_security_settings(secure_env: Settings, built: Built, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from replay.replay_cli import cli

    data = tmp_path / "tx.csv"
    data.write_text("transaction_id,card_id,timestamp,amount,is_fraud\n"
                    "r1,p1,1740830400000,12.00,0\nr2,p2,1740830460000,3.50,1\n")
    code = cli([str(data), "--label-delay", "30s", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert "sent 2 transactions and 2 labels" in capsys.readouterr().err
    # ensure_topics' admin client and consumer, the producer, and the resume scan's consumer.
    assert_secured(built, {"admin", "consumer", "aio_producer", "aio_consumer"}, secure_env.bootstrap_servers)


@pytest.mark.broker
def test_topics_uses_the_security_settings(secure_env: Settings, built: Built,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from stream.tools.cli import main

    assert main(["topics"]) == 0
    assert f"{secure_env.topic_transactions}\t{secure_env.topic_partitions} partitions" in capsys.readouterr().out
    assert_secured(built, {"admin", "consumer"}, secure_env.bootstrap_servers)


# --------------------------------------------------------------------------- the factory itself


def test_a_caller_cannot_override_the_settings() -> None:
    with pytest.raises(ValueError, match="security_protocol comes from the settings"):
        clients.client_config(Settings(), security_protocol="PLAINTEXT")
    with pytest.raises(ValueError, match="bootstrap_servers comes from the settings"):
        clients.consumer(Settings(), bootstrap_servers="elsewhere:9092")


@pytest.mark.broker
def test_round_trip_through_the_factory(settings: Settings) -> None:
    """kafka-python and aiokafka clients from the factory reach the broker in PLAINTEXT."""
    from kafka import TopicPartition

    topic = settings.topic_alerts
    producer = clients.producer(settings, linger_ms=0)
    producer.send(topic, key=b"k", value=b"sync", partition=0)
    producer.flush()
    producer.close()

    async def aio_send() -> None:
        aio = clients.aio_producer(settings, linger_ms=0)
        await aio.start()
        try:
            await aio.send_and_wait(topic, key=b"k", value=b"async", partition=0)
        finally:
            await aio.stop()

    asyncio.run(aio_send())
    consumer = clients.consumer(settings, enable_auto_commit=False)
    try:
        assert clients.wait_for_partitions(consumer, topic, 10) == set(range(settings.topic_partitions))
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        values: list[bytes] = []

        def both() -> bool:
            values.extend(m.value for m in consumer.poll(200).get(tp, []))
            return len(values) >= 2

        assert wait_for(both, timeout=20), values
        assert values == [b"sync", b"async"]
    finally:
        consumer.close()


def test_wait_for_partitions_gives_up_after_the_timeout_or_on_stop() -> None:
    import threading

    class NoTopic:
        asked = 0

        def partitions_for_topic(self, topic: str) -> None:
            self.asked += 1

    told: list[str] = []
    missing = NoTopic()
    assert clients.wait_for_partitions(missing, "t", 0.05, on_wait=lambda: told.append("once"), interval_s=0.01) == set()
    assert missing.asked >= 2 and told == ["once"]
    stop = threading.Event()
    stop.set()
    assert clients.wait_for_partitions(NoTopic(), "t", None, stop=stop) == set()


# --------------------------------------------------------------------------- no client built elsewhere

CLIENT_CLASSES = {"KafkaConsumer", "KafkaProducer", "KafkaAdminClient", "AIOKafkaConsumer", "AIOKafkaProducer"}
# Modules that still build their own clients, and why that does not bypass the settings.
NOT_THROUGH_THE_FACTORY = {
    "stream/kafka/clients.py": "the factory",
    "stream/patches/__init__.py": "patches of the embedded broker: they get the security options from their caller (client=)",
    "stream/patches/": "the same patches, moved",
    "stream/tools/demo.py": "reads the embedded broker the demo starts itself, PLAINTEXT by construction",
    "stream/tools/bench/": "the benchmark's load, floor and broker probes, on the broker the benchmark starts",
}


def _constructions(source: str) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in CLIENT_CLASSES:
                yield node.lineno, name


def test_no_module_builds_a_kafka_client_outside_the_factory() -> None:
    sample = "import aiokafka\nfrom kafka import KafkaConsumer\nKafkaConsumer(b)\naiokafka.AIOKafkaProducer()\n"
    assert list(_constructions(sample)) == [(3, "KafkaConsumer"), (4, "AIOKafkaProducer")]
    found = {f"{path.relative_to(REPO)}:{line} {name}"
             for package in ("stream", "models", "replay") for path in sorted((REPO / package).rglob("*.py"))
             if not str(path.relative_to(REPO)).startswith(tuple(NOT_THROUGH_THE_FACTORY))
             for line, name in _constructions(path.read_text())}
    assert not found, f"build these through stream.kafka.clients, which applies the security settings: {sorted(found)}"
