"""The embedded broker's process: it goes with the process that started it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an orphan's reaper may be slow in a container)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux's")
def test_broker_stops_when_its_parent_is_killed_outright():
    script = ("import time; from stream.tools.broker import EmbeddedBroker; b = EmbeddedBroker().start(); "
              "print(b.pid, flush=True); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        broker_pid = int(parent.stdout.readline())
        assert _running(broker_pid)
        parent.kill()  # SIGKILL: no context manager, no atexit runs in the parent
        parent.wait()
        deadline = time.monotonic() + 15
        while _running(broker_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(broker_pid), "the broker outlived its killed parent"
    finally:
        parent.kill()
        parent.wait()
