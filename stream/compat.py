"""The consumer patches' old home: every name now lives in :mod:`stream.patches`, one module per bug.

Kept so that imports of ``stream.compat`` go on working; new code imports
from :mod:`stream.patches` (see each module there for the symptom, the
upstream issue, the test and the versions).
"""

from __future__ import annotations

from stream.patches import apply_consumer_fixes, enable_embedded_broker_compat
from stream.patches.aiokafka_poll_timeout_rejoin import rejoin_after_poll_timeout
from stream.patches.embedded_end_offsets import true_end_offsets
from stream.patches.embedded_leave_group import (  # noqa: F401 (the old private name, re-exported)
    leave_group_in_generation_zero as _leave_group_in_generation_zero,
)
from stream.patches.embedded_slow_fetch import SLOW_BROKER_MAX_WAIT_MS, wait_longer_when_the_broker_is_slow
from stream.patches.faust_buffer_resume import _resumed, _wake_fetch_waiters, resume_fetching_promptly  # noqa: F401
from stream.patches.faust_fetch_max_wait import set_fetch_max_wait
from stream.patches.faust_paused_partitions import _NeverEmpty, fetch_only_active_partitions  # noqa: F401
from stream.patches.faust_recovery_seek import seek_before_resuming_streams

__all__ = [
    "SLOW_BROKER_MAX_WAIT_MS",
    "apply_consumer_fixes",
    "enable_embedded_broker_compat",
    "fetch_only_active_partitions",
    "rejoin_after_poll_timeout",
    "resume_fetching_promptly",
    "seek_before_resuming_streams",
    "set_fetch_max_wait",
    "true_end_offsets",
    "wait_longer_when_the_broker_is_slow",
]
