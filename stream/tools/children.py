"""Child processes that go when the process that started them goes.

The embedded broker runs in a session of its own (so a Ctrl-C reaches the
demo first, which stops the broker last), which also meant nothing stopped it
when its parent was killed outright: ``kill -9``, a CI timeout, an OOM kill.
It went on listening and holding its memory, and on two cores the CPU of
orphaned brokers skewed a benchmark run. The demo's and the benchmark's
workers and loops are children too. Linux can signal a child when its parent
dies (``prctl(PR_SET_PDEATHSIG)``); :func:`die_with_parent` asks for it.

When the parent stops them itself, :func:`stop_children` is the one way:
SIGTERM to all (so workers commit, the broker closes its files), a bounded
wait, then SIGKILL for any that did not go, and every child reaped. A child
left running would load the machine under the runs measured after it; one
left unreaped stays a zombie.

Example:
    >>> import subprocess, sys
    >>> subprocess.run([sys.executable, "-c", "pass"], preexec_fn=die_with_parent()).returncode
    0
    >>> child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    >>> stop_children([child], timeout=10)
    [-15]
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["die_with_parent", "stop_children"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux send the child SIGTERM when its parent dies; None off Linux.

    ``prctl`` is looked up here, in the parent: the child, between fork and
    exec, only calls it (no library loading, no import). Linux ties the
    signal to the *thread* that started the child, so start it from a thread
    that lives as long as the child should (every caller here uses the main
    thread).
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request was in place
            os._exit(1)

    return preexec


@functools.cache
def _prctl() -> Any:
    """libc's ``prctl`` from the running interpreter's own symbols; None off Linux."""
    if os.uname().sysname != "Linux":
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def stop_children(procs: Iterable[subprocess.Popen[Any]], timeout: float = 30.0) -> list[int]:
    """SIGTERM every child still running, wait up to ``timeout`` seconds in all, SIGKILL the rest; their exit codes.

    The signal goes to all of them first, so they stop in parallel and the
    wait is ``timeout`` in all, not per child. Every child is reaped, killed
    or not; one that has already exited is only reaped.
    """
    children = list(procs)
    for p in children:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + timeout
    for p in children:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            p.kill()
    return [p.wait() for p in children]
