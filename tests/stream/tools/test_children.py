"""stop_children: SIGTERM, a bounded wait, SIGKILL for a child that ignores it, and every child reaped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from stream.tools.children import stop_children

# Ignores SIGTERM, says so, and would exit 0 by itself much later.
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(20)"
POLITE = "import time; print('ready', flush=True); time.sleep(20)"


def _started(code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"  # its handler is in place
    return proc


def test_a_child_that_ignores_sigterm_is_killed_and_the_others_terminated() -> None:
    stubborn, polite = _started(STUBBORN), _started(POLITE)
    codes = stop_children([stubborn, polite], timeout=0.5)
    assert codes == [-signal.SIGKILL, -signal.SIGTERM]
    assert stubborn.returncode == -signal.SIGKILL and polite.returncode == -signal.SIGTERM  # both reaped


def test_a_child_that_already_exited_is_only_reaped() -> None:
    done = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    os.waitid(os.P_PID, done.pid, os.WEXITED | os.WNOWAIT)  # it has exited, and is not reaped yet
    assert stop_children([done]) == [3]
    assert stop_children([]) == []
