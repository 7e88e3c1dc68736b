"""keep_freed_memory: large buffers allocated and freed over and over stop faulting their pages in."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Several multi-MB arrays alive at once, freed and allocated again: a forward pass's pattern.
_CHURN = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from models.allocator import keep_freed_memory
    assert keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    arrays = [np.ones(1 << k) for k in (17, 19, 20, 21, 19)]
    del arrays
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _CHURN, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_buffers_are_reused_instead_of_faulted_in_again() -> None:
    default, tuned = _faults("default"), _faults("tuned")
    # ~32 MB per round, 50 rounds: ~400,000 page faults if every round maps fresh memory.
    assert default > 20 * tuned, (default, tuned)
