"""``fraudstream worker`` whose scoring core fails on planted transactions: the score agent's failure paths.

``python -m tests.stream.runtime.faulty_worker`` (settings from the environment, as the real worker). A
micro-batch holding a transaction whose id starts with ``boom-bug`` makes the core raise ``RuntimeError``
(a bug: the agent must dead-letter the batch as ``internal_error`` and go on); one whose id starts with
``boom-mismatch`` raises Faust's ``PartitionsMismatch`` (a misconfiguration: the worker must stop before
acking anything of that batch).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from faust.exceptions import PartitionsMismatch

from stream.core.scoring import BatchScoring, ScoredBatch
from stream.tools.cli import main

_score = BatchScoring.score


def planted(self: BatchScoring, records: Sequence[Any], histories: Mapping[bytes, Any],
            stored: Mapping[bytes, Any] | None = None) -> ScoredBatch:
    for record in records:
        value = record.value or b""
        if b'"boom-bug' in value:
            raise RuntimeError("planted bug in the scoring core")
        if b'"boom-mismatch' in value:
            raise PartitionsMismatch("planted: transactions and feedback partition counts differ")
    return _score(self, records, histories, stored)


if __name__ == "__main__":
    BatchScoring.score = planted  # type: ignore[method-assign]
    sys.exit(main(["worker"]))
