"""Every patch of Faust's and aiokafka's code, one module per upstream bug or replaced behaviour.

Each module's docstring names the symptom, the upstream issue, the test that
fails without the patch and the versions it was written for (its
``WRITTEN_FOR``). :func:`apply` is what a worker calls: it first checks that
the installed faust-streaming and aiokafka are those versions
(:func:`check_versions`), then installs the patches. A patch goes when
upstream fixes its bug; a new Faust or aiokafka release means re-checking each
module against it and updating its ``WRITTEN_FOR``.

Example:
    >>> sorted(WRITTEN_FOR)
    ['aiokafka', 'faust-streaming']
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from stream.contracts.settings import Settings
from stream.patches import (
    aiokafka_accumulator,
    aiokafka_poll_timeout_rejoin,
    embedded_end_offsets,
    embedded_leave_group,
    embedded_slow_fetch,
    faust_buffer_resume,
    faust_current_event,
    faust_drain,
    faust_fetch_max_wait,
    faust_paused_partitions,
    faust_producer_buffer,
    faust_recovery_seek,
    faust_settings_once,
    faust_table_codec,
)
from stream.patches.aiokafka_poll_timeout_rejoin import rejoin_after_poll_timeout
from stream.patches.embedded_end_offsets import correct_end_offsets
from stream.patches.embedded_leave_group import leave_group_in_generation_zero
from stream.patches.embedded_slow_fetch import wait_longer_when_the_broker_is_slow
from stream.patches.faust_buffer_resume import resume_fetching_promptly
from stream.patches.faust_drain import deliver_directly
from stream.patches.faust_fetch_max_wait import set_fetch_max_wait
from stream.patches.faust_paused_partitions import fetch_only_active_partitions
from stream.patches.faust_producer_buffer import raise_producer_buffer_limit
from stream.patches.faust_recovery_seek import seek_before_resuming_streams

__all__ = [
    "MODULES",
    "WRITTEN_FOR",
    "PatchVersionError",
    "apply",
    "apply_consumer_fixes",
    "check_versions",
    "deliver_directly",
    "enable_embedded_broker_compat",
    "fetch_only_active_partitions",
    "rejoin_after_poll_timeout",
    "resume_fetching_promptly",
    "seek_before_resuming_streams",
    "set_fetch_max_wait",
    "wait_longer_when_the_broker_is_slow",
]

log = logging.getLogger("fraudstream.patches")

#: Every patch module; each has a ``WRITTEN_FOR`` of the distributions and versions it was written for.
MODULES: tuple[ModuleType, ...] = (
    aiokafka_accumulator,
    aiokafka_poll_timeout_rejoin,
    embedded_end_offsets,
    embedded_leave_group,
    embedded_slow_fetch,
    faust_buffer_resume,
    faust_current_event,
    faust_drain,
    faust_fetch_max_wait,
    faust_paused_partitions,
    faust_producer_buffer,
    faust_recovery_seek,
    faust_settings_once,
    faust_table_codec,
)


class PatchVersionError(RuntimeError):
    """An installed Faust or aiokafka is not the version the patches in ``stream/patches/`` were written for."""


def _written_for(modules: tuple[ModuleType, ...]) -> dict[str, str]:
    """Every module's ``WRITTEN_FOR`` in one mapping; the modules must agree on each distribution's version."""
    merged: dict[str, str] = {}
    for module in modules:
        for distribution, version in module.WRITTEN_FOR.items():
            if merged.setdefault(distribution, version) != version:
                raise PatchVersionError(
                    f"{module.__name__} was written for {distribution} {version}, other patches for "
                    f"{distribution} {merged[distribution]}: bring them to one version")
    return merged


#: The distributions the patches touch and the one version of each they were all written for.
WRITTEN_FOR: dict[str, str] = _written_for(MODULES)


def _installed_version(distribution: str) -> str | None:
    """``distribution``'s installed version, or None if it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_versions(allow_untested: bool = False) -> list[str]:
    """Raise :class:`PatchVersionError` unless faust-streaming and aiokafka are the versions in :data:`WRITTEN_FOR`.

    ``allow_untested`` (``FRAUDSTREAM_ALLOW_UNTESTED_DEPENDENCIES=1``) logs the
    mismatch as a warning instead. Returns one line per mismatch (empty when
    every version is the expected one).

    >>> check_versions()
    []
    """
    mismatches = []
    for distribution, expected in sorted(WRITTEN_FOR.items()):
        installed = _installed_version(distribution)
        if installed != expected:
            users = ", ".join(m.__name__.rsplit(".", 1)[-1] for m in MODULES if distribution in m.WRITTEN_FOR)
            mismatches.append(f"{distribution} {installed or '(not installed)'} is installed, but the patches in "
                              f"stream/patches/ were written for {distribution} {expected} ({users})")
    if mismatches:
        message = ("; ".join(mismatches) + ". Install the expected versions (pyproject.toml pins them), or check "
                   "each patch against the installed release and update its WRITTEN_FOR. "
                   "FRAUDSTREAM_ALLOW_UNTESTED_DEPENDENCIES=1 starts the worker anyway.")
        if not allow_untested:
            raise PatchVersionError(message)
        log.warning("starting with untested dependencies (FRAUDSTREAM_ALLOW_UNTESTED_DEPENDENCIES=1): %s", message)
    return mismatches


def apply_consumer_fixes(fetch_max_wait_ms: int = 0) -> None:
    """Every consumer patch a Faust worker of ours needs, whatever the broker (idempotent).

    >>> apply_consumer_fixes()
    >>> from faust.transport.drivers.aiokafka import ConsumerRebalanceListener
    >>> ConsumerRebalanceListener._fraudstream_rejoin_fix
    True
    """
    set_fetch_max_wait(fetch_max_wait_ms)
    fetch_only_active_partitions()  # else a rebalance can skip records of a never-committed partition
    rejoin_after_poll_timeout()  # else a poll timeout leaves the worker idle for good
    seek_before_resuming_streams()  # else a rebalance can skip records of a partition that changed hands
    resume_fetching_promptly()  # else a full agent buffer idles the agent for up to a second


_embedded = False


def enable_embedded_broker_compat(bootstrap_servers: str, client: Mapping[str, Any] | None = None) -> None:
    """The embedded broker's patches: end offsets, generation 0's LeaveGroup, slow fetches (idempotent)."""
    global _embedded
    if _embedded:
        return
    correct_end_offsets(bootstrap_servers, client)
    leave_group_in_generation_zero()
    wait_longer_when_the_broker_is_slow()
    _embedded = True
    log.info("embedded-broker compatibility on: end offsets corrected from the last record batch")


def apply(settings: Settings, app: Any = None, client: Mapping[str, Any] | None = None) -> None:
    """Check the Faust/aiokafka versions, then install every patch ``settings`` asks for (idempotent).

    Class-level patches go in at once; with ``app`` (a Faust app not started
    yet) its direct delivery too (``FRAUDSTREAM_DIRECT_DELIVERY``). ``client``:
    the security options of the embedded-broker patches' own admin client
    (:func:`stream.kafka.security.client_kwargs`; passed in, as this package sits
    below the Kafka layer).
    """
    check_versions(allow_untested=settings.allow_untested_dependencies)
    apply_consumer_fixes(settings.fetch_max_wait_ms)
    if settings.embedded_broker_compat:
        enable_embedded_broker_compat(settings.bootstrap_servers, client)
    # A micro-batch makes hundreds of table writes at once: let the buffer hold a few batches.
    raise_producer_buffer_limit(8 * settings.batch_size)
    if app is not None and settings.direct_delivery:
        deliver_directly(app)
