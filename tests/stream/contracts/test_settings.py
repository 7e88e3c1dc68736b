"""Settings: environment parsing, validation, and the docs page documents every variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stream.contracts.settings import Settings, SettingsError, describe


def test_every_field_round_trips_through_the_environment():
    s = Settings(batch_size=17, alert_threshold=0.7, web_enabled=True, topic_alerts="a2")
    assert Settings.from_env(s.to_env()) == s


@pytest.mark.parametrize("env", [
    {"FRAUDSTREAM_ALERT_THRESHOLD": "1.5"},
    {"FRAUDSTREAM_BATCH_SIZE": "0"},
    {"FRAUDSTREAM_WEB_ENABLED": "perhaps"},
    {"FRAUDSTREAM_PROCESSING_GUARANTEE": "at_most_once"},
    {"FRAUDSTREAM_STORE": "redis://"},
    {"FRAUDSTREAM_SEQUENCE_PRECISION": "float16"},
    {"FRAUDSTREAM_HISTORY_LENGTH": "0"},
    {"FRAUDSTREAM_HISTORY_LENGTH": "65536"},  # more than a history record holds
    {"FRAUDSTREAM_PRODUCER_BATCH_BYTES": "4096"},  # below aiokafka's own default
])
def test_bad_values_are_refused_naming_the_setting_and_the_value(env):
    ((variable, value),) = env.items()
    setting = variable.removeprefix("FRAUDSTREAM_").lower()
    # The variable (FRAUDSTREAM_WEB_ENABLED) or the setting (web_enabled) is named, then the value given.
    with pytest.raises(SettingsError, match=rf"(?i)\b(fraudstream_)?{setting}\b.*{re.escape(value)}"):
        Settings.from_env(env)


def test_the_settings_page_documents_every_setting():
    # The README lists the main settings only; docs/settings.md is generated from describe() (tests/test_readme.py).
    page = (Path(__file__).resolve().parents[3] / "docs" / "settings.md").read_text()
    missing = [name for name, _, _ in describe() if name not in page]
    assert not missing, f"docs/settings.md lacks {missing}"


def test_the_worker_producer_builds_batches_of_the_configured_size():
    from stream.runtime.engine import worker_app

    app = worker_app(Settings(producer_batch_bytes=123_456, model_signing_key="k" * 16))
    assert app.conf.producer_max_batch_size == 123_456
