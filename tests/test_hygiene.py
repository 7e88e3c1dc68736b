"""The suite's own standards, checked over the source of every ``tests/**/test_*.py``.

1. Every test function can fail: its body holds an ``assert``, a ``pytest.raises``
   or ``pytest.warns``, or a call to a helper whose name starts with ``assert``,
   ``check`` or ``expect`` (the helper asserts; a helper of the same module by
   such a name must itself hold one of these).
2. Every ``pytest.raises(...)`` names the reason with ``match=``, so a refusal for
   the wrong reason fails: a ``ValueError`` from a typo passes a test of a
   ``ValueError`` about a missing column otherwise. Exceptions whose message is
   not the project's (below, each with its reason) are the only ones let off.

A failure lists every offender at once, by file, line and test.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

#: Names a checking helper starts with: calling one counts as an assertion.
HELPER_PREFIXES = ("assert", "check", "expect")

#: Exception types whose ``pytest.raises`` need no ``match=``: their message is not the project's to name.
NO_MATCH_NEEDED: dict[str, str] = {
    # argparse's ``parser.error`` exits with status 2 and writes its reason to stderr, not into the exception:
    # a test checks ``excinfo.value.code`` and the captured stderr instead.
    "SystemExit": "argparse exits with a status; the reason is on stderr",
    # ``asyncio.wait_for``'s own timeout carries no message: the test's point is that nothing came in time.
    "TimeoutError": "asyncio.wait_for's timeout has no message",
}

#: Test functions allowed to hold no assertion, each with its reason (``"path::name"``, path from the repo root).
NO_ASSERT_NEEDED: dict[str, str] = {}


def _name(node: ast.expr) -> str:
    """``pytest.raises`` -> ``raises``; ``check_order`` -> ``check_order``; anything else -> ``""``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return _name(node)


def _is_pytest_call(node: ast.AST, what: str) -> bool:
    """``pytest.<what>(...)`` or a bare ``<what>(...)`` imported from pytest."""
    return isinstance(node, ast.Call) and _dotted(node.func) in (f"pytest.{what}", what)


def _is_checker_name(name: str) -> bool:
    """``assert_ordered``, ``check``, ``_expect_rows``, ``assertEqual``; not ``expected_rows`` or ``checks``."""
    bare = name.lstrip("_")
    for prefix in HELPER_PREFIXES:
        rest = bare.removeprefix(prefix)
        if rest != bare and (rest == "" or rest[0] == "_" or rest[0].isupper()):
            return True
    return False


def _checks(node: ast.AST) -> bool:
    """Whether ``node`` (a function) holds something that can fail."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Assert):
            return True
        if isinstance(sub, ast.Call):
            if _is_pytest_call(sub, "raises") or _is_pytest_call(sub, "warns") or _is_pytest_call(sub, "fail"):
                return True
            name = _name(sub.func)
            if _is_checker_name(name):
                return True
    return False


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Module-level functions and methods of module-level classes."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node
        elif isinstance(node, ast.ClassDef):
            yield from (n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))


def _exception_names(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Tuple):
        return [name for element in node.elts for name in _exception_names(element)]
    return [_name(node) or ast.unparse(node)]


def offenders(source: str, path: str) -> list[str]:
    """Every breach of the two rules in one test module's ``source``, as ``path:line: what``."""
    tree = ast.parse(source, filename=path)
    found: list[str] = []
    functions = list(_functions(tree))
    # A module's own checking helpers must check something themselves; a test calling one then counts.
    helpers = {f.name for f in functions if _is_checker_name(f.name)}
    for helper in (f for f in functions if f.name in helpers):
        if not _checks(helper):
            found.append(f"{path}:{helper.lineno}: helper {helper.name} asserts nothing, yet its name says it checks")
    for test in (f for f in functions if f.name.startswith("test")):
        key = f"{path}::{test.name}"
        if key not in NO_ASSERT_NEEDED and not _checks(test):
            found.append(f"{path}:{test.lineno}: {test.name} asserts nothing (no assert, pytest.raises/warns "
                         f"or {'/'.join(HELPER_PREFIXES)}* helper)")
    for node in ast.walk(tree):
        if not _is_pytest_call(node, "raises"):
            continue
        assert isinstance(node, ast.Call)
        if any(k.arg == "match" for k in node.keywords):
            continue
        names = _exception_names(node.args[0]) if node.args else ["?"]
        if all(n in NO_MATCH_NEEDED for n in names):
            continue
        found.append(f"{path}:{node.lineno}: pytest.raises({', '.join(names)}) without match= naming the reason")
    return sorted(found, key=lambda o: int(o.split(":")[1]))


def _test_modules() -> list[Path]:
    return sorted(TESTS.rglob("test_*.py"))


def test_every_test_asserts_and_every_raises_names_its_reason() -> None:
    files = _test_modules()
    assert len(files) > 40, files  # the glob found the suite
    found = [o for path in files for o in offenders(path.read_text(), str(path.relative_to(REPO)))]
    assert found == [], f"{len(found)} breaches of the test standards:\n" + "\n".join(found)


# --- the checker itself fails on planted offenders ---------------------------------------------

_PLANTED = '''
import pytest
from models.snapshot import SnapshotError

def assert_ordered(xs):
    assert xs == sorted(xs)

def check_nothing(xs):
    print(xs)

def test_runs_but_checks_nothing():
    train()

def test_checks_with_assert():
    assert 1 + 1 == 2

async def test_async_without_check():
    await go()

def test_checks_through_helper():
    assert_ordered([1, 2])

def test_calls_what_only_sounds_like_a_check():
    expected_rows()

def test_checks_with_raises_and_match():
    with pytest.raises(SnapshotError, match="signature"):
        load()

def test_raises_without_match():
    with pytest.raises(SnapshotError):
        load()

def test_raises_tuple_without_match():
    with pytest.raises((ValueError, SystemExit)):
        load()

def test_system_exit_is_let_off():
    with pytest.raises(SystemExit):
        cli([])

class TestGrouped:
    def test_method_without_check(self):
        run()
'''


def test_the_checker_finds_each_planted_offender() -> None:
    found = offenders(_PLANTED, "planted.py")
    assert [o.split(": ", 1)[1].split(" ", 2)[:2] for o in found] == [
        ["helper", "check_nothing"],
        ["test_runs_but_checks_nothing", "asserts"],
        ["test_async_without_check", "asserts"],
        ["test_calls_what_only_sounds_like_a_check", "asserts"],
        ["pytest.raises(SnapshotError)", "without"],
        ["pytest.raises(ValueError,", "SystemExit)"],
        ["test_method_without_check", "asserts"],
    ], found


def test_the_checker_passes_clean_source() -> None:
    clean = "import pytest\n\ndef test_ok():\n    with pytest.raises(ValueError, match='x'):\n        int('x')\n"
    assert offenders(clean, "clean.py") == []
