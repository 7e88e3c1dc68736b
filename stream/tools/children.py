"""Child processes that go when the process that started them goes.

The embedded broker runs in a session of its own (so a Ctrl-C reaches the
demo first, which stops the broker last), which also meant nothing stopped it
when its parent was killed outright: ``kill -9``, a CI timeout, an OOM kill.
It went on listening and holding its memory, and on two cores the CPU of
orphaned brokers skewed a benchmark run. The demo's and the benchmark's
workers and loops are children too. Linux can signal a child when its parent
dies (``prctl(PR_SET_PDEATHSIG)``); :func:`die_with_parent` asks for it.

Example:
    >>> import subprocess, sys
    >>> subprocess.run([sys.executable, "-c", "pass"], preexec_fn=die_with_parent()).returncode
    0
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
from collections.abc import Callable
from typing import Any

__all__ = ["die_with_parent"]

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
