"""collect_less_often: start-up objects frozen, the young threshold raised, garbage cycles still collected."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stream.contracts.settings import Settings, SettingsError

_CHECK = """
import gc, weakref
from stream.runtime.heap import collect_less_often
collect_less_often(int(__import__("sys").argv[1]))
print(gc.get_threshold()[0], gc.get_freeze_count() > 0)

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a  # a cycle: only the collector frees it
alive = weakref.ref(a)
del a, b
gc.collect()
print(alive() is None)
"""


@pytest.mark.parametrize(("threshold", "expected"), [(50_000, "50000"), (0, "700")])
def test_threshold_and_freeze_in_a_fresh_process(threshold: int, expected: str) -> None:
    out = subprocess.run([sys.executable, "-c", _CHECK, str(threshold)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [expected, "True", "True"], out.stdout


def test_negative_threshold_is_refused() -> None:
    with pytest.raises(SettingsError, match="gc_threshold"):
        Settings(gc_threshold=-1).validate()
