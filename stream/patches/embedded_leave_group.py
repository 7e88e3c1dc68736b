"""LeaveGroup sent in the embedded broker's generation 0, as in any other generation.

Symptom:
    Kafka numbers a group's first generation 1; the embedded broker (Tansu)
    numbers it 0, and aiokafka sends LeaveGroup only for ``generation > 0``. A
    worker evicted for a poll timeout in the first generation then rejoined
    under a new member id while the broker kept its old id as the group leader:
    the rejoined worker waited as a follower for an assignment that never came.
    Applied with ``FRAUDSTREAM_EMBEDDED_BROKER_COMPAT=1`` only.

Upstream:
    No upstream issue found: Tansu's generation numbering is the cause
    (searched aio-libs/aiokafka and the Tansu tracker); aiokafka's
    ``GroupCoordinator._maybe_leave_group`` is right for Apache Kafka.

Test:
    tests/stream/patches/test_poll_timeout.py::test_worker_evicted_for_a_poll_timeout_rejoins_and_processes_everything
    (on the embedded broker)

Versions:
    Written for aiokafka 0.14.0 (``GroupCoordinator._maybe_leave_group``,
    ``_send_req``, ``reset_generation``, ``_group_instance_id``).
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["WRITTEN_FOR", "leave_group_in_generation_zero"]

WRITTEN_FOR = {"aiokafka": "0.14.0"}

log = logging.getLogger("fraudstream.compat")


def leave_group_in_generation_zero() -> None:
    """Make aiokafka send LeaveGroup in the embedded broker's generation 0, as in any other (idempotent)."""
    from aiokafka.consumer import group_coordinator as coordinator
    from aiokafka.errors import KafkaError
    from aiokafka.protocol.group import JoinGroupRequest, LeaveGroupRequest

    cls = coordinator.GroupCoordinator
    if getattr(cls, "_fraudstream_leave_fix", False):
        return

    async def _maybe_leave_group(self: Any) -> None:
        if (self.generation >= 0 and self.member_id != JoinGroupRequest.UNKNOWN_MEMBER_ID
                and self._group_instance_id is None):
            try:
                await self._send_req(LeaveGroupRequest(self.group_id, self.member_id))
            except KafkaError as err:  # aiokafka's own "minimal effort": log, never retry
                log.error("LeaveGroup request failed: %s", err)
            else:
                log.info("left group %s (generation %d)", self.group_id, self.generation)
        self.reset_generation()

    cls._maybe_leave_group = _maybe_leave_group
    cls._fraudstream_leave_fix = True
