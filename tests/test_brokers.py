"""The backend switch of the test suite."""

from __future__ import annotations

import pytest

from tests import brokers


def test_default_backend_is_embedded(monkeypatch):
    monkeypatch.delenv("FRAUDSTREAM_TEST_BROKER", raising=False)
    assert brokers.backend() == "embedded"


def test_unknown_backend_refused(monkeypatch):
    monkeypatch.setenv("FRAUDSTREAM_TEST_BROKER", "redpanda")
    with pytest.raises(ValueError, match="embedded or kafka"):
        brokers.backend()


def test_docker_probe_says_why(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    reason = brokers.docker_unavailable()
    assert reason is not None and "no Docker engine reachable" in reason
