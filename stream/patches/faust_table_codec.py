"""A table whose values use a codec of its own, in its store and its changelog topic alike.

Symptom:
    Faust picks a table's codec from its value type (JSON unless it is a Faust
    model), accepts no ``value_serializer`` argument, and has already made the
    changelog topic with that codec when the table is created (the store is made
    later, lazily). Setting ``table.value_serializer`` afterwards changes the
    store but not the changelog topic, and recovery decodes the changelog with
    the topic's codec: the ``history`` table's binary records would be read as
    JSON. :func:`use_value_codec` sets the codec and makes the changelog topic
    again, before anything used either.

Upstream:
    faust-streaming/faust#556 ("Tables don't accept value_serializer kw",
    open), with faust-streaming/faust#659 (open) proposing the argument.

Test:
    tests/stream/patches/test_patches.py::test_a_tables_own_codec_reaches_its_changelog_topic

Versions:
    Written for faust-streaming 0.15.3 (``Collection._new_changelog_topic``,
    ``changelog_topic`` and ``value_serializer`` attributes).
"""

from __future__ import annotations

from typing import Any

__all__ = ["WRITTEN_FOR", "use_value_codec"]

WRITTEN_FOR = {"faust-streaming": "0.15.3"}


def use_value_codec(table: Any, codec: Any) -> None:
    """Make ``table`` encode its values with ``codec``, changelog included (call right after creating it)."""
    table.value_serializer = codec
    table.changelog_topic = table._new_changelog_topic()
