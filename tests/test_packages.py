"""Every package says what it is for in a line or two and exports its public names (issue 31's bar)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

ROOTS = ("stream", "models", "replay")


def packages() -> list[str]:
    found = []
    for root in ROOTS:
        found.append(root)
        module = importlib.import_module(root)
        found += [m.name for m in pkgutil.walk_packages(module.__path__, f"{root}.") if m.ispkg]
    return sorted(found)


@pytest.mark.parametrize("name", packages())
def test_a_package_states_its_role_and_exports_names_that_exist(name: str) -> None:
    package = importlib.import_module(name)
    doc = (package.__doc__ or "").strip()
    assert doc, f"{name}/__init__.py has no docstring"
    first_paragraph = doc.split("\n\n", 1)[0]
    assert len(first_paragraph.splitlines()) <= 3, f"{name}: say its role in a line or two, not {first_paragraph!r}"
    exported = getattr(package, "__all__", None)
    assert exported, f"{name}/__init__.py exports nothing (__all__)"
    for public in exported:
        if not hasattr(package, public):
            importlib.import_module(f"{name}.{public}")  # a module the package names as public
