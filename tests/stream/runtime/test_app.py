from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_an_engine_has_its_compiled_loops_ready_before_its_first_batch(tmp_path: Path) -> None:
    """create_engine compiles (or loads) the engineered features' and the partitioner's loops; a sequence model compiles its own on load."""
    script = (
        "from models import features\n"
        "from stream.kafka import partitioner\n"
        "from stream.runtime.worker import create_engine\n"
        "from stream.contracts.settings import Settings\n"
        "assert not features._history_summary.signatures and not partitioner._murmur2_kernel.signatures\n"
        f"create_engine(Settings(model_signing_key='k' * 16, data_dir={str(tmp_path)!r}))\n"
        "print(len(features._history_summary.signatures), len(partitioner._murmur2_kernel.signatures))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "1 1"
