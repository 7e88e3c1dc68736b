"""Mutation testing of the modules a fraud team's trust rests on: the score per module and the survivors.

A benchmark, not part of ``make test``: ``make mutation``, or
``python -m stream.tools.bench.mutation [--modules stream/core/caps.py ...]``. It needs
the ``mutation`` extra (``pip install -e '.[mutation]'``: mutmut 3).

For each module, in a fresh copy of the project under the system's temporary
directory (mutmut writes a ``mutants/`` tree next to the sources it mutates;
the shared checkout is never touched), mutmut mutates that module only and
runs that module's own tests against each mutant: its mirror test file
``tests/<package>/test_<module>.py``, any ``tests/<package>/test_<module>_*.py``,
and the module's doctests, nothing else. mutmut records which of those tests
reach each function, then runs only those for each of the function's
mutants, in a process forked from one that has already imported everything:
a module takes minutes, not hours. ``[tool.mutmut]`` in pyproject.toml holds
the settings every module shares; the runner adds the per-module ones.

Two things mutmut would otherwise leave out, made to count in the copy:

* mutmut skips every decorated function and class (it cannot always re-run a
  decorator safely). The copy rewrites ``@d def f`` as ``def f`` followed by
  ``f = d(f)``, the same object in Python, so ``@compiled`` Numba loops,
  frozen dataclasses' methods and ``@property`` bodies are mutated too. Tests
  run with ``NUMBA_DISABLE_JIT=1`` (then ``@compiled`` is the plain Python
  function, as in tests/models/test_compiled.py), so a mutant inside a loop
  changes what the tests see. ``functools.lru_cache``/``cache`` are dropped in
  the copy rather than kept: a pure cache filled by the clean run in the
  parent process would answer the forked mutants with the original's values.
  ``typing.overload`` stubs stay decorated (their bodies are ``...``).
* Module-level statements (constants, ``__all__``) are not mutated by mutmut.

Score = killed / (killed + survived), a timeout counting as killed and a
mutant no selected test reaches counting as survived.

Example:
    >>> selected_tests("stream/core/caps.py", existing=["tests/stream/core/test_caps.py", "tests/stream/test_capsule.py"])
    ['tests/stream/core/test_caps.py', 'stream/core/caps.py']
    >>> selected_tests("models/features.py", existing=["tests/models/test_features_reference.py"])
    ['tests/models/test_features_reference.py', 'models/features.py']
    >>> score({"killed": 17, "survived": 3, "timeout": 0, "no tests": 0})
    85.0
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_MODULES", "main", "mutate_module", "score", "selected_tests", "undecorate"]

ROOT = Path(__file__).resolve().parents[3]

DEFAULT_MODULES = [
    "stream/contracts/records.py",  # contract validation
    "models/features.py",           # features, one code path for training and serving
    "stream/core/outputs.py",       # outputs and decisions (threshold, alert ids)
    "models/snapshot.py",           # snapshot signing
    "models/fusion.py",             # sequence model and online learner fused
    "stream/core/labels.py",        # the label join
    "stream/core/retention.py",     # event-time retention of the join's features
    "stream/core/caps.py",          # per-source label caps against feedback poisoning
    "models/history.py",            # per-card history, redelivery
    "models/history_codec.py",      # the history's changelog record (old formats, damaged records)
    "models/history_windows.py",    # a batch of histories as the arrays the models read
]

# What the copy holds: the packages (tests import across them), the tests, the data the tests read.
_COPY = ["stream", "models", "replay", "tests", "schemas", "deploy", "docker-compose.yml", "README.md", "pyproject.toml"]
_PACKAGES = ("stream", "models", "replay")
_KILLED = {"killed", "timeout", "segfault"}  # mutmut's "segfault" is any death by signal
_COUNTED = _KILLED | {"survived", "no tests", "suspicious"}
# Decorators dropped in the copy (pure caches) and kept (mutmut then skips the function).
_DROPPED = {"lru_cache", "cache"}
_KEPT = {"overload", "staticmethod", "classmethod"}


def selected_tests(module: str, existing: Iterable[str] | None = None) -> list[str]:
    """The tests that run against ``module``'s mutants: its mirror test files and its own doctests."""
    path = Path(module)
    folder = Path("tests", *path.parts[:-1])
    mirror = str(folder / f"test_{path.stem}.py")
    prefix = str(folder / f"test_{path.stem}_")
    if existing is None:
        existing = glob.glob(str(ROOT / folder / "test_*.py"))
        existing = [str(Path(p).relative_to(ROOT)) for p in existing]
    found = sorted(p for p in existing if p == mirror or (p.startswith(prefix) and p.endswith(".py")))
    return [*found, module]


def score(counts: dict[str, int]) -> float:
    """Killed mutants (timeouts included) as a percentage of the counted ones."""
    killed = sum(counts.get(k, 0) for k in _KILLED)
    counted = sum(counts.get(k, 0) for k in _COUNTED)
    return round(100.0 * killed / counted, 1) if counted else 100.0


def _decorator_name(expr: Any) -> str:
    import libcst as cst

    while isinstance(expr, cst.Call):
        expr = expr.func
    if isinstance(expr, cst.Attribute):
        return str(expr.attr.value)
    return str(getattr(expr, "value", ""))


def undecorate(source: str) -> str:
    """``source`` with ``@d def f``/``@d class C`` rewritten as ``def f``/``class C`` then ``f = d(f)``.

    Decorators in ``_KEPT`` stay (mutmut handles or skips those); those in
    ``_DROPPED`` are removed with no reassignment.
    """
    import libcst as cst

    class Rewrite(cst.CSTTransformer):
        def _split(self, node: Any) -> tuple[list[Any], list[Any]]:
            keep, move = [], []
            for d in node.decorators:
                name = _decorator_name(d.decorator)
                if name in _KEPT:
                    keep.append(d)
                elif name not in _DROPPED:
                    move.append(d)
            return keep, move

        def _rewrite(self, updated: Any) -> Any:
            keep, move = self._split(updated)
            if keep and move:  # mixed: leave it to mutmut (skipped)
                return updated
            if len(keep) == len(updated.decorators):
                return updated
            name = updated.name.value
            value: Any = cst.Name(name)
            for d in reversed(move):
                value = cst.Call(func=d.decorator, args=[cst.Arg(value)])
            assign = cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(cst.Name(name))], value)])
            return cst.FlattenSentinel([updated.with_changes(decorators=[]), assign])

        def leave_FunctionDef(self, original: Any, updated: Any) -> Any:
            return self._rewrite(updated)

        def leave_ClassDef(self, original: Any, updated: Any) -> Any:
            return self._rewrite(updated)

    return cst.parse_module(source).visit(Rewrite()).code


def _toml_value(value: Any) -> str:
    return json.dumps(value)  # strings, numbers, booleans and lists of them read the same in TOML


def _write_config(workdir: Path, module: str, tests: Sequence[str]) -> None:
    """The copy's pyproject.toml: the project's, its ``[tool.mutmut]`` extended for ``module``."""
    text = (workdir / "pyproject.toml").read_text()
    settings = dict(tomllib.loads(text).get("tool", {}).get("mutmut", {}))
    settings.update({
        "source_paths": list(_PACKAGES),
        "only_mutate": [module],
        "pytest_add_cli_args_test_selection": list(tests),
        # The tests run in mutants/: the files they read beside the packages go there too.
        "also_copy": sorted({*settings.get("also_copy", []), *(n for n in _COPY if n not in _PACKAGES)}),
        "pytest_add_cli_args": [*settings.get("pytest_add_cli_args", []), "-p", "stream.tools.bench.mutation"],
    })
    kept = []
    skipping = False
    for line in text.splitlines():
        if line.strip().startswith("["):
            skipping = line.strip() == "[tool.mutmut]"
        if not skipping:
            kept.append(line)
    kept += ["", "[tool.mutmut]", *(f"{k} = {_toml_value(v)}" for k, v in settings.items())]
    (workdir / "pyproject.toml").write_text("\n".join(kept) + "\n")


def _copy_project(workdir: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", "mutants")
    for name in _COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, workdir / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, workdir / name)


def pytest_collection_modifyitems(items: list[Any]) -> None:
    """Pytest hook, loaded in the copy with ``-p stream.tools.bench.mutation``: doctest items get ``_nodeid``.

    mutmut's stats collection reads ``item._nodeid``, which pytest's ``DoctestItem`` lacks.
    """
    for item in items:
        if not hasattr(item, "_nodeid"):
            item._nodeid = item.nodeid


def _mutmut() -> list[str]:
    return [sys.executable, "-m", "mutmut"]


def mutate_module(module: str, max_children: int = 1, keep: bool = False, verbose: bool = False) -> dict[str, Any]:
    """Run mutmut on ``module`` in a fresh copy; return its counts, score and survivors (name and diff)."""
    tests = selected_tests(module)
    workdir = Path(tempfile.mkdtemp(prefix=f"fraudstream-mutation-{Path(module).stem}-"))
    started = time.monotonic()
    try:
        _copy_project(workdir)
        target = workdir / module
        target.write_text(undecorate(target.read_text()))
        _write_config(workdir, module, tests)
        env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONHASHSEED="0")
        env.pop("PYTHONPATH", None)
        run = subprocess.run([*_mutmut(), "run", "--max-children", str(max_children)], check=False, cwd=workdir,
                             env=env, capture_output=not verbose, text=True)
        meta_path = workdir / "mutants" / f"{module}.meta"
        if run.returncode != 0 or not meta_path.exists():
            output = "" if verbose else (run.stdout or "")[-4000:] + (run.stderr or "")[-4000:]
            raise RuntimeError(f"mutmut failed on {module} (exit {run.returncode}) in {workdir}:\n{output}")
        from mutmut.__main__ import status_by_exit_code

        exit_codes: dict[str, int | None] = json.loads(meta_path.read_text())["exit_code_by_key"]
        statuses = {name: status_by_exit_code[code] for name, code in exit_codes.items()}
        counts = dict(Counter(statuses.values()))
        survivors = []
        for name in sorted(n for n, s in statuses.items() if s not in _KILLED):
            shown = subprocess.run([*_mutmut(), "show", name], check=False, cwd=workdir, env=env,
                                   capture_output=True, text=True)
            survivors.append({"name": name, "status": statuses[name], "diff": shown.stdout.strip()})
        return {"module": module, "tests": tests, "counts": counts, "score": score(counts),
                "mutants": len(statuses), "survivors": survivors,
                "seconds": round(time.monotonic() - started, 1), "workdir": str(workdir) if keep else None}
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.tools.bench.mutation", description=__doc__.split("\n")[0])
    parser.add_argument("--modules", nargs="+", default=DEFAULT_MODULES,
                        help="source files relative to the repository root (default: %(default)s)")
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested at once (default 1)")
    parser.add_argument("--nice", type=int, default=10, help="niceness added to this process and its children")
    parser.add_argument("--fail-under", type=float, default=None, help="exit 1 if a module scores below this")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the results to this file")
    parser.add_argument("--no-diff", action="store_true", help="list the survivors' names only")
    parser.add_argument("--keep", action="store_true", help="keep each module's working copy (for mutmut browse)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show mutmut's own output")
    args = parser.parse_args(argv)
    try:
        import mutmut  # noqa: F401
    except ImportError:
        print("mutmut is not installed: pip install -e '.[mutation]'", file=sys.stderr)
        return 2
    if args.nice:
        os.nice(args.nice)
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for module in args.modules:
        print(f"== {module}: mutating, tests {' '.join(selected_tests(module))}", flush=True)
        try:
            result = mutate_module(module, max_children=args.max_children, keep=args.keep, verbose=args.verbose)
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            failed.append(module)
            continue
        results.append(result)
        for s in result["survivors"]:
            print(f"-- survivor {s['name']} ({s['status']})")
            if not args.no_diff:
                print(s["diff"])
        print(f"   {module}: {result['score']}% killed of {result['mutants']} mutants {result['counts']} "
              f"in {result['seconds']} s" + (f", copy in {result['workdir']}" if result["workdir"] else ""),
              flush=True)
    print("\nmodule                          score  killed  survived  mutants")
    for r in results:
        killed = sum(r["counts"].get(k, 0) for k in _KILLED)
        print(f"{r['module']:<30} {r['score']:>6.1f}% {killed:>7} {len(r['survivors']):>9} {r['mutants']:>8}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    for module in failed:
        print(f"{module:<30}  mutmut failed (its output is above)")
    if failed or (args.fail_under is not None and any(r["score"] < args.fail_under for r in results)):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
