"""Two Faust settings read once per app instead of once per record.

Symptom:
    Each delivery asks whether Faust's producer buffer is over its limit
    (``ProducerBuffer.size``, which reads ``app.conf.producer_threaded``) and
    builds the event through ``App.create_event``, which reads
    ``app.conf.Event``. A Faust setting read is slow (the settings object
    records every attribute access, and the setting itself is a descriptor),
    and these two are read for every record although both are fixed once the
    app is configured, so :func:`read_settings_once` has them read once
    (docs/benchmark-history.md has the costs before and after). Installed by
    :func:`stream.patches.faust_drain.deliver_directly`.

Upstream:
    No upstream issue found (faust-streaming/faust): a performance
    replacement; the reads are in ``ProducerBuffer.size``
    (``faust/transport/producer.py``) and ``App.create_event`` (``faust/app/base.py``).

Test:
    tests/stream/patches/test_drain.py::test_each_record_reads_no_faust_setting

Versions:
    Written for faust-streaming 0.15.3 (``ProducerBuffer.size`` reading
    ``queue._queue`` / ``pending._queue``; ``App.create_event(key, value, headers, message)``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["WRITTEN_FOR", "read_settings_once"]

WRITTEN_FOR = {"faust-streaming": "0.15.3"}


def read_settings_once(app: Any) -> None:
    """``app.create_event`` and every ``ProducerBuffer.size`` with their Faust setting read once (idempotent)."""
    from faust.transport.producer import ProducerBuffer

    # Before any topic compiles its decoder, which takes app.create_event as it is then.
    app.create_event = _event_factory(app)
    if ProducerBuffer.size is not _buffer_size:
        ProducerBuffer.size = _buffer_size  # type: ignore[assignment,method-assign]


def _event_factory(app: Any) -> Any:
    """``app.create_event`` with the event class looked up on first use instead of on every record."""
    event_type: Any = None

    def create_event(key: Any, value: Any, headers: Any, message: Any) -> Any:
        nonlocal event_type
        if event_type is None:  # app.conf is final only once the app is configured: read it at the first record
            event_type = app.conf.Event
        return event_type(app, key, value, headers, message)

    return create_event


@property  # type: ignore[misc]
def _buffer_size(self: Any) -> int:
    """Faust's ``ProducerBuffer.size`` (0.15.3) with ``app.conf.producer_threaded`` read once per buffer."""
    threaded = self.__dict__.get("_fraudstream_threaded")
    if threaded is None:
        threaded = self.__dict__["_fraudstream_threaded"] = bool(self.app.conf.producer_threaded)
    if threaded:
        return len(self.queue._queue) if self.queue else 0
    return len(self.pending._queue)
