"""The worker's image (Dockerfile, .dockerignore) agrees with the package: same torch pin, every package copied."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert len(froms) >= 2, "multi-stage build expected"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, flags=re.MULTILINE)
    assert all(f == "${PYTHON_IMAGE}" for f in froms)
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must run as a non-root user"
    assert re.search(r'^ENTRYPOINT \["fraudstream"\]$', text, flags=re.MULTILINE)
    assert re.search(r'^CMD \["worker"\]$', text, flags=re.MULTILINE)
    assert re.search(r"^HEALTHCHECK ", text, flags=re.MULTILINE)
    # The CPU wheel must be the version the package pins, or `pip install .` replaces it (with CUDA).
    pins = [d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
            if d.startswith("torch")]
    assert len(pins) == 1 and "==" in pins[0], pins
    version = pins[0].split("==", 1)[1]
    assert f"--index-url https://download.pytorch.org/whl/cpu torch=={version}" in text
    assert not re.search(r"pip install[^\n]*\.\[", text), "no extras (test tools) in the image"


def test_image_contains_every_package() -> None:
    """Each package setuptools finds is copied into the build, and .dockerignore lets it through."""
    includes = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*").rstrip(".") for p in includes}
    text = DOCKERFILE.read_text()
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for package in packages:
        assert re.search(rf"^COPY {package} \./{package}$", text, flags=re.MULTILINE), f"{package}/ is not copied"
        assert f"!{package}/" in ignore, f".dockerignore keeps {package}/ out of the build context"
    assert "!pyproject.toml" in ignore
    for excluded in (".venv", "data", "**/__pycache__", "**/.pytest_cache"):
        assert excluded in ignore
