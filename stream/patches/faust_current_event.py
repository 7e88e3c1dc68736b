"""Table writes from batched agents, with the current event set per write.

Symptom:
    Faust decides a table write's changelog partition from "the current
    event", which it only sets while iterating a stream one event at a time.
    A table write inside ``take()``/``take_events()`` (the micro-batches of
    :mod:`stream.kafka.batches`) raises ``TypeError: Cannot modify table key from
    outside of stream iteration``. :func:`writing_for` sets the current event
    for the write, so its changelog record goes to that event's partition and on
    recovery the value comes back to whichever worker owns that partition.

Upstream:
    faust-streaming/faust#497 ("Writing into Table with Stream.take() not
    allowed", open) and faust-streaming/faust#300; no public API sets the
    current event.

Test:
    tests/stream/kafka/test_outbox.py::test_each_store_write_sees_its_own_partition_and_keys_keep_their_order

Versions:
    Written for faust-streaming 0.15.3 (``faust.streams._current_event``, a
    ``ContextVar`` of a weak reference to the event, read by ``Table.partition_for_key``).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from faust.streams import _current_event  # the context variable Faust's tables read
from faust.types import EventT

__all__ = ["WRITTEN_FOR", "writing_for"]

WRITTEN_FOR = {"faust-streaming": "0.15.3"}


@contextmanager
def writing_for(event: EventT) -> Iterator[None]:
    """Make ``event`` the current event while writing tables on its behalf.

    The write's changelog record then goes to ``event``'s partition, and on
    recovery the value comes back to whichever worker owns that partition.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
