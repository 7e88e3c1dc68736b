"""The layers import only downwards and no package's modules import in a circle (import-linter's contracts).

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``). The second
test plants the two kinds of import a hand-written check tends to miss (one
inside a function, one under ``TYPE_CHECKING``) in a copy of the sources and
checks that the contracts break on each, naming it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LINT, "--no-cache", str(root / "pyproject.toml")], check=False, cwd=root,
                          capture_output=True, text=True, timeout=300)


def test_the_layer_contracts_hold() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout


@pytest.mark.parametrize("module,planted,expected", [
    ("models/history.py", "\n\ndef _planted() -> None:\n    from stream.runtime import worker  # noqa: F401\n",
     "models.history -> stream.runtime.worker"),
    ("stream/core/labels.py",
     "\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from stream.kafka.outbox import Outbox  # noqa: F401\n",
     "stream.core.labels -> stream.kafka.outbox"),
    ("stream/contracts/settings.py", "\n\ndef _planted() -> None:\n    import models.history  # noqa: F401\n",
     "stream.contracts.settings -> models.history"),
])
def test_an_upward_import_breaks_the_contract(tmp_path: Path, module: str, planted: str, expected: str) -> None:
    for package in ("stream", "models", "replay"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / module).open("a", encoding="utf-8") as f:
        f.write(planted)
    result = lint(tmp_path)
    assert result.returncode != 0, "the contracts kept an upward import"
    assert "Layers: each imports only the layers below it BROKEN" in result.stdout
    assert expected in result.stdout, result.stdout[-3000:]
