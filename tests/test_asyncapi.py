"""schemas/asyncapi.yaml stays in step with the JSON Schemas and the engine's topics.

The JSON Schema checks and the reference checks on the document's text always
run; the structural checks parse the YAML and are skipped without PyYAML.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator

from stream.contracts.settings import Settings
from stream.kafka.topics import topic_names, topic_specs

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
ASYNCAPI = SCHEMAS / "asyncapi.yaml"
JSON_SCHEMAS = sorted(SCHEMAS.glob("*.json"))
FILE_REF = re.compile(r"""\$ref:\s*['"]?\./([^'"\s#]+)""")

# Keywords that exist only from draft 2019-09 on. AsyncAPI's default schema
# format is a draft-07 superset, which would silently ignore them.
NEWER_THAN_DRAFT7 = {
    "$defs", "$anchor", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor", "$vocabulary",
    "prefixItems", "dependentRequired", "dependentSchemas", "unevaluatedItems", "unevaluatedProperties",
    "minContains", "maxContains",
}

# Which schema each channel's messages carry, by the engine's topic setting.
PAYLOADS = {
    "topic_transactions": "transactions.json",
    "topic_feedback": "feedback.json",
    "topic_scores": "scores.json",
    "topic_alerts": "alerts.json",
}
DLQ_TOPICS = ("topic_transactions_dlq", "topic_feedback_dlq")
RECEIVED = {"topic_transactions", "topic_feedback", "topic_rules"}


def documented_topics(settings: Settings) -> list[str]:
    """The channels the document must have: the engine's topics, the rules topic users write, the ops topic."""
    return [*topic_names(settings), settings.topic_rules, settings.topic_ops]


def _keywords(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = set(node)
        for key, value in node.items():
            if key not in ("properties", "patternProperties"):  # those keys are field names
                found |= _keywords(value)
            else:
                for sub in value.values():
                    found |= _keywords(sub)
        return found
    if isinstance(node, list):
        return set().union(*(_keywords(v) for v in node)) if node else set()
    return set()


def test_there_are_json_schemas() -> None:
    names = {p.name for p in JSON_SCHEMAS}
    assert {"transactions.json", "feedback.json", "scores.json", "alerts.json", "dlq-headers.json"} <= names


@pytest.mark.parametrize("path", JSON_SCHEMAS, ids=lambda p: p.name)
def test_json_schema_is_valid_draft_2020_12(path: Path) -> None:
    schema = json.loads(path.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", JSON_SCHEMAS, ids=lambda p: p.name)
def test_json_schema_reads_the_same_as_draft_07(path: Path) -> None:
    """AsyncAPI tools read a $ref'd payload as (a superset of) draft-07."""
    schema = json.loads(path.read_text())
    used_newer = _keywords(schema) & NEWER_THAN_DRAFT7
    assert not used_newer, f"{path.name} uses keywords draft-07 ignores: {sorted(used_newer)}"
    Draft7Validator.check_schema({k: v for k, v in schema.items() if k != "$schema"})


def test_every_json_schema_is_referenced_and_every_reference_exists() -> None:
    referenced = set(FILE_REF.findall(ASYNCAPI.read_text()))
    assert referenced == {p.name for p in JSON_SCHEMAS}, (
        f"not referenced: {sorted({p.name for p in JSON_SCHEMAS} - referenced)}; "
        f"missing files: {sorted(referenced - {p.name for p in JSON_SCHEMAS})}"
    )


def test_channel_addresses_are_the_default_topics_text() -> None:
    addresses = re.findall(r"^    address:\s*(\S+)\s*$", ASYNCAPI.read_text(), flags=re.MULTILINE)
    assert sorted(addresses) == sorted(documented_topics(Settings()))


# --------------------------------------------------------------------------- structure (PyYAML)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (test extra); AsyncAPI structure checks skipped")
    loaded = yaml.safe_load(ASYNCAPI.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    """A local JSON pointer (``#/a/b``) into the document."""
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"dangling $ref {ref}"
        node = node[part]
    return node


def _deref(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and set(node) == {"$ref"} and node["$ref"].startswith("#/"):
        node = _resolve(doc, node["$ref"])
    return node


def _all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _all_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _all_refs(v)]
    return []


def _channel_by_address(doc: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    return {c["address"]: (cid, c) for cid, c in doc["channels"].items()}


def _messages(doc: dict[str, Any], channel: dict[str, Any]) -> list[dict[str, Any]]:
    return [_deref(doc, m) for m in channel["messages"].values()]


def _key_schema(doc: dict[str, Any], message: dict[str, Any]) -> Any:
    """The Kafka key schema of a message, directly or through its traits."""
    traits = [_deref(doc, t) for t in message.get("traits", [])]
    bindings = [message.get("bindings") or {}] + [t.get("bindings") or {} for t in traits]
    keys = [_deref(doc, b["kafka"]["key"]) for b in bindings if "kafka" in b and "key" in b["kafka"]]
    assert keys, f"message {message.get('name')} has no Kafka key binding"
    return keys[0]


def test_is_asyncapi_3(doc: dict[str, Any]) -> None:
    assert str(doc["asyncapi"]).startswith("3.")
    assert doc["info"]["title"] and doc["info"]["version"]
    assert all(s["protocol"] == "kafka" for s in doc["servers"].values())


def test_every_local_reference_resolves(doc: dict[str, Any]) -> None:
    refs = _all_refs(doc)
    assert refs
    for ref in refs:
        if ref.startswith("#/"):
            _resolve(doc, ref)
        else:
            assert (SCHEMAS / ref).is_file(), ref


def test_channel_addresses_are_the_default_topics(doc: dict[str, Any]) -> None:
    assert sorted(_channel_by_address(doc)) == sorted(documented_topics(Settings()))


def test_payloads_reference_their_json_schema(doc: dict[str, Any]) -> None:
    defaults = Settings()
    channels = _channel_by_address(doc)
    for setting, schema_file in PAYLOADS.items():
        _, channel = channels[getattr(defaults, setting)]
        (message,) = _messages(doc, channel)
        assert message["payload"] == {"$ref": f"./{schema_file}"}
        assert message["contentType"] == "application/json"
        key = _key_schema(doc, message)
        assert key["type"] == "string" and "card_id" in key["description"]
        assert json.loads((SCHEMAS / schema_file).read_text())["properties"]["card_id"]


def test_dead_letters_carry_the_header_schema_and_raw_bytes(doc: dict[str, Any]) -> None:
    defaults = Settings()
    channels = _channel_by_address(doc)
    for setting in DLQ_TOPICS:
        _, channel = channels[getattr(defaults, setting)]
        (message,) = _messages(doc, channel)
        assert message["headers"] == {"$ref": "./dlq-headers.json"}
        assert message["contentType"] == "application/octet-stream"
        assert "unchanged" in message["payload"]["description"]
        assert "$ref" not in message["payload"], "the payload is the source bytes, not a JSON schema"
        _key_schema(doc, message)


def test_operations_say_what_the_engine_reads_and_writes(doc: dict[str, Any]) -> None:
    defaults = Settings()
    expected = {getattr(defaults, s): ("receive" if s in RECEIVED else "send")
                for s in [*PAYLOADS, *DLQ_TOPICS, "topic_rules", "topic_ops"]}
    seen: dict[str, str] = {}
    for op_id, op in doc["operations"].items():
        channel = _deref(doc, op["channel"])
        address = channel["address"]
        assert op["action"] in ("send", "receive"), op_id
        assert address not in seen, f"two operations on {address}"
        seen[address] = op["action"]
        channel_id = op["channel"]["$ref"].rsplit("/", 1)[1]
        for message in op["messages"]:
            # AsyncAPI 3: an operation's messages are messages of its own channel.
            assert message["$ref"].startswith(f"#/channels/{channel_id}/messages/"), op_id
            _resolve(doc, message["$ref"])
    assert seen == expected


def test_channel_bindings_match_the_default_settings(doc: dict[str, Any]) -> None:
    defaults = Settings()
    specs = topic_specs(defaults)
    for address, (_, channel) in _channel_by_address(doc).items():
        kafka = channel["bindings"]["kafka"]
        assert kafka["partitions"] == specs[address], address  # the rules topic: one partition
        assert kafka["replicas"] == defaults.replication_factor
    rules = _channel_by_address(doc)[defaults.topic_rules][1]["bindings"]["kafka"]
    assert rules["topicConfiguration"]["cleanup.policy"] == ["compact"]


def test_the_rule_schema_accepts_what_the_cli_writes_and_refuses_what_workers_refuse() -> None:
    from dataclasses import fields

    from stream.core.rules import ACTIONS, MODES, RULE_SCHEMA_VERSION, Rule, encode_rule

    schema = json.loads((SCHEMAS / "rules.json").read_text())
    validator = Draft202012Validator(schema)
    written = json.loads(encode_rule(Rule("no-test-cards.1", "amount > 2000.0", "block", reason="over 2,000")))
    assert not list(validator.iter_errors(written))
    assert schema["properties"]["action"]["enum"] == list(ACTIONS)
    assert schema["properties"]["mode"]["enum"] == list(MODES)
    assert schema["properties"]["schema"]["const"] == RULE_SCHEMA_VERSION
    assert set(schema["properties"]) == {"schema", *(f.name for f in fields(Rule))}
    for bad in ({**written, "action": "deny"}, {**written, "id": "-x"}, {**written, "extra": 1}):
        assert list(validator.iter_errors(bad)), bad


def test_the_ops_schema_names_every_event_the_engine_sends_and_takes_a_real_one() -> None:
    """Every ``"type": "..."`` an ops record is built with in the engine's code is in the schema's enum, and back."""
    root = SCHEMAS.parent
    sent = {m for path in [*root.glob("stream/**/*.py"), *root.glob("models/**/*.py")]
            for m in re.findall(r'"type":\s*"([a-z_]+)"', path.read_text())}
    schema = json.loads((SCHEMAS / "ops.json").read_text())
    assert set(schema["properties"]["type"]["enum"]) == sent
    import numpy as np

    from stream.contracts.budget import Budget
    from stream.core.budget import ThresholdController

    budget = Budget.parse("0.005")
    assert budget is not None
    controller = ThresholdController(budget, floor=0.05, ceiling=0.99, initial=0.5)
    rng = np.random.default_rng(0)
    for minute in range(600):  # ten hours of a minute's scores each
        controller.update(rng.beta(1, 30, 100), minute * 60_000, controller.threshold)
    moved = controller.moved()
    assert moved is not None and moved["type"] == "alert_threshold_moved"
    Draft202012Validator(schema).validate({**moved, "at": 1, "app_id": "fraudstream"})
    with pytest.raises(Exception, match="'type' is a required property"):
        Draft202012Validator(schema).validate({"at": 1, "app_id": "fraudstream"})
