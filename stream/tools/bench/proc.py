"""A process's resident memory and CPU, read from ``/proc`` (Linux), for the benchmark's figures.

The bench reads the worker's RSS for the memory figure and samples the
embedded broker's CPU through each offered-load phase: on two cores, how
much of a latency tail is the broker's shows in how much of a core it takes.

Example:
    >>> import os
    >>> rss_mb(os.getpid()) > 0, cpu_seconds(os.getpid()) >= 0
    (True, True)
    >>> import time
    >>> with CpuSampler(os.getpid(), every_s=0.05) as sampler:
    ...     until = time.monotonic() + 0.3
    ...     while time.monotonic() < until:
    ...         pass
    >>> len(sampler.samples) >= 3 and sampler.summary()["mean"] > 0.1  # a busy loop
    True
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Self

__all__ = ["CpuSampler", "cpu_seconds", "rss_mb"]


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (``VmRSS``); NaN if the kernel does not say."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds ``pid`` has used (``/proc/PID/stat``, fields 14 and 15)."""
    # Split after the last ')': the command name in field 2 may hold spaces and parentheses.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """A process's CPU use through a phase, in cores (CPU seconds per second), sampled every ``every_s``.

    A thread of its own, so a busy event loop in the measuring process does
    not skew the intervals. ``pid=None`` samples nothing (a broker that is not
    ours to read); a process that ends keeps what was sampled.
    """

    def __init__(self, pid: int | None, every_s: float = 1.0) -> None:
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, float]] = []  # (seconds into the phase, cores over the last interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-cpu-sampler", daemon=True)

    def __enter__(self) -> Self:
        if self.pid is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        assert self.pid is not None
        started = last_t = time.monotonic()
        try:
            last_cpu = cpu_seconds(self.pid)
            while not self._stop.wait(self.every_s):
                now, cpu = time.monotonic(), cpu_seconds(self.pid)
                self.samples.append((round(now - started, 1), round((cpu - last_cpu) / (now - last_t), 3)))
                last_t, last_cpu = now, cpu
        except OSError:
            return

    def summary(self, edge_s: float = 5.0) -> dict[str, Any] | None:
        """Mean cores over the phase and over its first and last ``edge_s`` seconds; None if unsampled.

        >>> s = CpuSampler(None)
        >>> s.samples = [(1.0, 0.2), (2.0, 0.4), (3.0, 0.9), (4.0, 1.0)]
        >>> {k: v for k, v in s.summary(edge_s=2.0).items() if k != "samples"}
        {'mean': 0.625, 'first': 0.3, 'last': 0.95}
        """
        if not self.samples:
            return None
        cores = [c for _, c in self.samples]
        edge = max(1, min(len(cores) // 2, round(edge_s / self.every_s)))
        return {"mean": round(sum(cores) / len(cores), 3), "first": round(sum(cores[:edge]) / edge, 3),
                "last": round(sum(cores[-edge:]) / edge, 3), "samples": self.samples}
