from __future__ import annotations

import os
import subprocess
import sys
import types

import numba
import numpy as np
import pytest

from models.compiled import compiled, frozen
from models.steps import StepSpec, window_features
from tests.models.test_steps import _random_windows


def _running_sum(values: np.ndarray, out: np.ndarray) -> None:
    s = 0.0
    for i in range(values.shape[0]):
        s += values[i]
        out[i] = s


def test_frozen_is_a_read_only_contiguous_view_or_copy() -> None:
    a = np.arange(12, dtype=np.int64).reshape(3, 4)
    view = frozen(a, np.int64)
    assert np.shares_memory(view, a) and not view.flags.writeable and a.flags.writeable  # the caller's array untouched
    strided = frozen(a[:, 1:], np.int64)
    assert not np.shares_memory(strided, a) and strided.flags.c_contiguous and not strided.flags.writeable
    assert frozen(a, np.float64).dtype == np.float64 and frozen(view, np.int64) is view  # already frozen: itself


def test_one_compiled_signature_whatever_the_callers_arrays() -> None:
    running_sum = compiled(_running_sum)
    base = np.arange(10.0)
    read_only = base.copy()
    read_only.flags.writeable = False
    for values in (base, read_only, np.arange(20.0)[::2], np.arange(10)):
        out = np.empty(10)
        running_sum(frozen(values, np.float64), out)
        assert out.tolist() == np.cumsum(np.asarray(values, dtype=np.float64)).tolist()
    assert len(running_sum.signatures) == 1


def test_without_a_writable_cache_location_functions_still_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    from numba.core.caching import CacheImpl

    monkeypatch.setattr(CacheImpl, "_locator_classes", [])  # as on a read-only install with no writable home
    with pytest.raises(RuntimeError, match="no locator"):
        numba.njit(cache=True)(_running_sum)
    running_sum = compiled(_running_sum)
    out = np.empty(3)
    running_sum(frozen([1.0, 2.0, 3.0], np.float64), out)
    assert out.tolist() == [1.0, 3.0, 6.0] and len(running_sum.signatures) == 1


@pytest.mark.slow
def test_with_the_jit_disabled_the_loops_run_as_plain_python_and_agree() -> None:
    """``NUMBA_DISABLE_JIT=1``, the debugging path: both loops as Python compute the same values."""
    script = (
        "import sys, types\n"
        "import numpy as np\n"
        "from models import features, steps\n"
        "from tests.models.test_compiled import _both\n"
        "for loop in (steps._step_kernel, features._history_summary):\n"
        "    assert isinstance(loop, types.FunctionType), type(loop)  # the Python function itself\n"
        "sys.stdout.buffer.write(_both().tobytes())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "NUMBA_DISABLE_JIT": "1"},
                         capture_output=True, check=True, timeout=300).stdout
    assert np.array_equal(np.frombuffer(out, dtype=np.float64), _both())
    assert not isinstance(compiled(_running_sum), types.FunctionType)  # and here, compiled


def _both() -> np.ndarray:
    """Both compiled loops' outputs on the same small inputs, as one float64 vector."""
    from models.features import engineered_batch
    from tests.models.test_features import random_cases

    numeric, categorical = window_features(*_random_windows(np.random.default_rng(5), 20, 6, in_order=False),
                                           StepSpec(n=6))
    cases = list(random_cases(40, seed=3))
    engineered = engineered_batch([h for h, _ in cases], [t for _, t in cases])
    return np.concatenate([numeric.ravel().astype(np.float64), categorical.ravel().astype(np.float64),
                           engineered.ravel()])
