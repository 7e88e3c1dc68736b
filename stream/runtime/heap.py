"""The worker's Python heap: collect garbage less often than Python's defaults.

A worker's tables keep state in memory for every card and every recent
transaction (until the history moved to columns, millions of Python lists at
20,000 cards; the ``features`` table still holds a dict per transaction), and
each micro-batch allocates tens of thousands of objects more. With Python's
thresholds (700, 10, 10) the garbage collector ran a full collection, walking
all of them, every few batches: 16.5 s of a 66.5 s, 200,000-transaction
engine run here went to it. :func:`collect_less_often`
moves everything allocated at start-up (modules, model weights) to the
permanent generation (``gc.freeze``), so no collection walks it again, and
raises the young generation's threshold; reference counting still frees
everything that is not in a cycle at once, as before.

Example:
    >>> import gc
    >>> before = gc.get_threshold()
    >>> collect_less_often(50_000)
    >>> gc.get_threshold()[0], gc.get_freeze_count() > 0
    (50000, True)
    >>> gc.unfreeze(); gc.set_threshold(*before)
"""

from __future__ import annotations

import gc

__all__ = ["collect_less_often"]


def collect_less_often(young_threshold: int) -> None:
    """Freeze what exists now and set the young generation's threshold (0 keeps Python's)."""
    gc.collect()  # what start-up left as garbage goes now, not into the permanent generation
    gc.freeze()
    if young_threshold > 0:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(young_threshold, older, oldest)
