"""The deployment files (docker-compose.yml, Dockerfile, deploy/) agree with the engine.

No Docker engine is needed. ``docker compose config`` validates the file when
a Compose v2 client is installed (it needs no daemon); otherwise that test is
skipped. The structural checks parse the YAML with PyYAML and are skipped
without it; the checks on plain text, on the Dockerfile, on the dashboard
JSON always run. The image (Dockerfile) is tested in tests/test_dockerfile.py,
deploy/create-topics.sh in tests/test_create_topics.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream.contracts.settings import Settings, describe

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
CREATE_TOPICS = ROOT / "deploy" / "create-topics.sh"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "fraudstream.json"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"

SETTING_VARS = {name for name, _, _ in describe()}
# A FRAUDSTREAM_ name, but not a wildcard in prose such as FRAUDSTREAM_TOPIC_*.
ENV_NAME = re.compile(r"\bFRAUDSTREAM_[A-Z0-9_]+(?![A-Z0-9_*])")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err} of Compose interpolation.
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")

# The metric names the worker exports (histograms also as _bucket/_sum/_count).
METRICS = {
    "fraudstream_events_in_total",
    "fraudstream_scores_out_total",
    "fraudstream_alerts_total",
    "fraudstream_dlq_total",
    "fraudstream_batch_size",
    "fraudstream_stage_seconds",
    "fraudstream_consumer_lag",
    "fraudstream_model_info",
    "fraudstream_online_rolling_auc",
}
HISTOGRAMS = {"fraudstream_batch_size", "fraudstream_stage_seconds"}
# Secrets every worker needs, taken from the host environment with no default (${NAME:?...}).
REQUIRED_SECRETS = ("FRAUDSTREAM_MODEL_SIGNING_KEY", "FRAUDSTREAM_WEB_TOKEN")


# --------------------------------------------------------------------------- helpers


def _interpolate(value: Any) -> Any:
    """Compose interpolation with an empty environment: every variable takes its default."""
    if isinstance(value, str):
        out = INTERPOLATION.sub(lambda m: m.group(3) if m.group(2) in ("-", ":-") else "", value.replace("$$", "\0"))
        return out.replace("\0", "$")
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    return value


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in _interpolate(env).items()}


def _profiles(service: dict[str, Any]) -> set[str]:
    return set(service.get("profiles") or [])


def _metric_family(name: str) -> str:
    """``fraudstream_batch_size_bucket`` -> ``fraudstream_batch_size``; other names unchanged."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS:
            return name.removesuffix(suffix)
    return name


def _is_broker(service: dict[str, Any]) -> bool:
    return "KAFKA_PROCESS_ROLES" in _env(service)


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: {"condition": "service_started"} for d in deps}
    return deps


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (test extra); structural compose checks skipped")
    doc = yaml.safe_load(COMPOSE.read_text())  # SafeLoader resolves the << merge keys
    assert isinstance(doc, dict) and doc.get("services"), "docker-compose.yml has no services"
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


# --------------------------------------------------------------------------- the real client


def _compose_client() -> list[str] | None:
    """A Compose v2 client that runs here, or ``None``."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version", "--short"],
                               check=False, capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if standalone:
        probe = subprocess.run([standalone, "version", "--short"],
                               check=False, capture_output=True, text=True, timeout=60)
        # v1 (Python, end of life) predates parts of the Compose spec: not a reference.
        if probe.returncode == 0 and re.match(r"v?([2-9]|\d\d)\.", probe.stdout.strip()):
            return [standalone]
    return None


@pytest.mark.parametrize("profiles", [[], ["ha"], ["monitoring"], ["replay"], ["*"]],
                         ids=lambda p: "+".join(p) or "default")
def test_compose_config_accepted_by_docker_compose(profiles: list[str]) -> None:
    client = _compose_client()
    if client is None:
        pytest.skip("no working Compose v2 client (`docker compose` plugin or docker-compose >= 2) on this machine")
    # The host's own FRAUDSTREAM_* values would be interpolated; validate the defaults.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUDSTREAM_", "COMPOSE_"))}
    env.update({name: "compose-config-check" for name in REQUIRED_SECRETS})  # the file refuses to run without them
    args = [a for p in profiles for a in ("--profile", p)]
    result = subprocess.run([*client, "-f", str(COMPOSE), *args, "config", "-q"], cwd=ROOT, env=env,
                            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- plain text


def test_every_fraudstream_variable_is_a_setting() -> None:
    files = [COMPOSE, DOCKERFILE, CREATE_TOPICS, PROMETHEUS]
    seen: dict[str, set[str]] = {}
    for path in files:
        for name in ENV_NAME.findall(path.read_text()):
            seen.setdefault(name, set()).add(path.name)
    unknown = {name: sorted(where) for name, where in seen.items() if name not in SETTING_VARS}
    assert not unknown, f"FRAUDSTREAM_* names that stream/contracts/settings.py does not define: {unknown}"
    assert "FRAUDSTREAM_TOPIC_PARTITIONS" in seen  # the scan itself works


def test_dashboard_uses_the_worker_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    allowed = METRICS | {f"{h}_{s}" for h in HISTOGRAMS for s in ("bucket", "sum", "count")}
    used: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bfraudstream_[a-z0-9_]+", target["expr"]))
            assert names <= allowed, f"{panel['title']}: unknown metrics {names - allowed}"
            used |= {_metric_family(n) for n in names}
            assert target["datasource"]["uid"] == panel["datasource"]["uid"]
    assert used == METRICS, f"metrics without a panel: {METRICS - used}"
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("dead letters", "latency", "lag", "batch", "alert", "model", "auc"):
        assert topic in titles


# --------------------------------------------------------------------------- structure (PyYAML)


def _bind_sources(service: dict[str, Any]) -> Iterator[str]:
    """Host paths (relative to the compose file) that ``service`` bind-mounts."""
    for volume in service.get("volumes") or []:
        source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
        if source.startswith("./"):
            yield source


def test_every_service_has_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (context / dockerfile).is_file(), f"{name}: no {dockerfile} in {context}"
        else:
            image = _interpolate(service.get("image", ""))
            assert image, f"{name}: neither image nor build"
            tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
            assert tag and tag != "latest", f"{name}: pin the image version ({image})"
        for source in _bind_sources(service):
            assert (ROOT / source).exists(), f"{name}: mounts {source}, which does not exist"


def test_depends_on_is_valid_in_every_profile(services: dict[str, dict[str, Any]]) -> None:
    """A dependency hidden behind a profile the dependent does not share makes the
    whole project invalid whenever that profile is off (Compose: "depends on
    undefined service")."""
    for name, service in services.items():
        for dep, spec in _depends_on(service).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            dep_profiles = _profiles(services[dep])
            if dep_profiles:
                assert _profiles(service) and _profiles(service) <= dep_profiles, \
                    f"{name} (profiles {sorted(_profiles(service))}) depends on {dep} (profiles {sorted(dep_profiles)})"
            assert spec.get("condition", "service_started") in (
                "service_started", "service_healthy", "service_completed_successfully")
            if spec.get("condition") == "service_healthy":
                assert services[dep].get("healthcheck") or services[dep].get("build"), f"{dep} has no health check"


def test_default_profile_is_one_broker_topics_and_worker(services: dict[str, dict[str, Any]]) -> None:
    default = {n: s for n, s in services.items() if not _profiles(s)}
    brokers = [n for n, s in default.items() if _is_broker(s)]
    assert brokers == ["kafka"]
    env = _env(default["kafka"])
    assert "apache/kafka" in _interpolate(default["kafka"]["image"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller" and env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
        assert env[key] == "1", key
    assert {"topics", "worker"} <= set(default)


def _worker_settings(service: dict[str, Any]) -> Settings:
    return Settings.from_env(_env(service))  # raises on a value no engine accepts


@pytest.mark.parametrize("name", ["worker", "worker-ha"])
def test_worker_service(services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    settings = _worker_settings(service)
    assert "container_name" not in service and "hostname" not in service, "fixed names break --scale"
    assert "ports" not in service, "a published host port breaks --scale; the web port stays inside the network"
    assert str(settings.web_port) in [str(p) for p in service.get("expose", [])]
    assert settings.store.startswith("rocksdb://") and settings.web_enabled
    # RocksDB directory: never a named volume shared by replicas.
    for volume in service.get("volumes") or []:
        target = volume.split(":")[-1] if isinstance(volume, str) else volume["target"]
        if target.rstrip("/") == settings.data_dir.rstrip("/"):
            assert isinstance(volume, str) and ":" not in volume, "data dir must be an anonymous (per-replica) volume"
    command = " ".join(_interpolate(service["command"]))
    assert "fraudstream worker" in command
    for secret in REQUIRED_SECRETS:  # from the host, never a default in the file
        assert re.fullmatch(rf"\$\{{{secret}:\?[^}}]+\}}", str(service["environment"].get(secret))), secret
    health = " ".join(service["healthcheck"]["test"])
    assert "/stats/" in health or "/ready" in health or "/healthz" in health
    (topics_job, spec), = _depends_on(service).items()
    assert spec["condition"] == "service_completed_successfully" and services[topics_job]["command"]
    # The worker and its topics job agree on names and partitions.
    topics_env = _env(services[topics_job])
    for var in ["FRAUDSTREAM_TOPIC_PARTITIONS", "FRAUDSTREAM_REPLICATION_FACTOR"] + [
            v for v in SETTING_VARS if v.startswith("FRAUDSTREAM_TOPIC_")]:
        if var in topics_env:
            assert topics_env[var] == _env(service).get(var, topics_env[var]), var
    # Every bootstrap server is a broker of the same profile, on its internal listener.
    brokers = {n for n, s in services.items() if _is_broker(s) and _profiles(s) == _profiles(service)}
    hosts = {s.split(":")[0] for s in settings.bootstrap_servers.split(",")}
    assert hosts == brokers
    assert all(s.endswith(":19092") for s in settings.bootstrap_servers.split(","))
    assert _env(services[topics_job])["BOOTSTRAP_SERVERS"] == settings.bootstrap_servers


def test_topic_partitions_are_parameterised(services: dict[str, dict[str, Any]]) -> None:
    raw_expr = "${FRAUDSTREAM_TOPIC_PARTITIONS:-8}"
    for name, service in services.items():
        env = service.get("environment") or {}
        if "FRAUDSTREAM_TOPIC_PARTITIONS" in env:
            assert env["FRAUDSTREAM_TOPIC_PARTITIONS"] == raw_expr, name
        if "KAFKA_NUM_PARTITIONS" in env:  # auto-created topics match too
            assert env["KAFKA_NUM_PARTITIONS"] == raw_expr, name
    assert str(Settings().topic_partitions) == _interpolate(raw_expr)
    for job in ("topics", "topics-ha"):
        command = services[job]["command"]
        assert command[-1] == "/opt/fraudstream/create-topics.sh"
        assert "./deploy/create-topics.sh:/opt/fraudstream/create-topics.sh:ro" in services[job]["volumes"]
        assert "apache/kafka" in _interpolate(services[job]["image"])  # the image's own kafka-topics.sh


def test_ha_profile_is_three_brokers_rf3_min_isr2(services: dict[str, dict[str, Any]]) -> None:
    ha = {n: s for n, s in services.items() if "ha" in _profiles(s)}
    brokers = {n: _env(s) for n, s in ha.items() if _is_broker(s)}
    assert sorted(brokers) == ["kafka-1", "kafka-2", "kafka-3"]
    ids = {env["KAFKA_NODE_ID"] for env in brokers.values()}
    assert ids == {"1", "2", "3"}
    voters = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in brokers.values()}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert len({env["CLUSTER_ID"] for env in brokers.values()}) == 1
    assert _env(services["kafka"])["CLUSTER_ID"] not in {env["CLUSTER_ID"] for env in brokers.values()}
    for name, env in brokers.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2", name
        assert f"PLAINTEXT://{name}:19092" in env["KAFKA_ADVERTISED_LISTENERS"]
    host_ports = [p.split(":")[0] for s in ha.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)) == 3
    topics_env = _env(services["topics-ha"])
    assert topics_env["FRAUDSTREAM_REPLICATION_FACTOR"] == "3" and topics_env["TOPIC_MIN_INSYNC_REPLICAS"] == "2"
    settings = _worker_settings(services["worker-ha"])
    assert settings.replication_factor == 3 and settings.processing_guarantee == "exactly_once"


def test_prometheus_discovers_scaled_workers(services: dict[str, dict[str, Any]]) -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load(PROMETHEUS.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "fraudstream-worker"]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["dns_sd_configs"]
    workers = {n for n, s in services.items() if "fraudstream worker" in " ".join(_interpolate(s.get("command") or []))}
    assert set(sd["names"]) == workers and sd["type"] == "A"
    for name in workers:
        assert sd["port"] == _worker_settings(services[name]).web_port
    assert "monitoring" in _profiles(services["prometheus"]) and "monitoring" in _profiles(services["grafana"])


def test_grafana_dashboard_uses_the_provisioned_datasource(services: dict[str, dict[str, Any]]) -> None:
    yaml = pytest.importorskip("yaml")
    (datasource,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    dash = json.loads(DASHBOARD.read_text())
    assert {p["datasource"]["uid"] for p in dash["panels"]} == {datasource["uid"]}
    provider = yaml.safe_load((DATASOURCES.parent.parent / "dashboards" / "fraudstream.yml").read_text())
    (path,) = [p["options"]["path"] for p in provider["providers"]]
    assert f"./deploy/grafana/dashboards:{path}:ro" in services["grafana"]["volumes"]


def test_replay_job(services: dict[str, dict[str, Any]]) -> None:
    replay = services["replay"]
    assert _profiles(replay) == {"replay"}
    command = " ".join(_interpolate(replay["command"]))
    assert "fraudstream generate" in command and "fraudstream replay" in command and "--speed" in command
    env = _env(replay)
    assert env["REPLAY_ROWS"] == "200000" and env["REPLAY_SPEED"] == "max"
    assert Settings.from_env(env).bootstrap_servers == "kafka:19092"
