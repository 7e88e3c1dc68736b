"""A/B of two trees: the same ``fraudstream bench`` command on both in one run, interleaved A, B, A, B, ...

    python -m stream.tools.bench.ab --base REV [--head REV] --repeat N [--markdown] -- BENCH OPTIONS

A is a git worktree of ``--base`` in a temporary directory; B is ``--head``
(another worktree) or, by default, this checkout's working tree as it is.
Each side runs its own tree's bench command (``python -m stream.tools.cli
bench``, or ``python -m stream.cli bench`` in trees from before the layer
move), with its own tree first on ``PYTHONPATH`` and as the working
directory, so the workers it starts are that tree's. One repetition of the
bench per run (trees from before ``--repeat`` lack it), each run starting its
own embedded brokers; the runs alternate so the machine's drift hits both
sides alike, and this script summarises them: each figure's median and
min-max per side, B/A of the medians, and the median of the B/A ratios of
the pairs run side by side (A1 with B1, ...).

With no ``--checkpoint`` among the bench options, one small sequence model
is trained first (by this tree's bench code) and both sides score with it:
the same weights, and no training inside the timed runs. Each run's output
goes to a log in the work directory; the JSON (``--out``) holds every run's
figures and the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.tools.bench.summary import figures, label, median, spread

__all__ = ["HEADLINE", "Side", "bench_command", "headline", "main", "run_ab", "worktree"]

# The bar's figures ("the redesign costs no speed"), then two that tell the machine from the engine.
HEADLINE = ("engine_per_s", "c_over_a", "engine_p99_ms", "p99_engine_over_floor", "bare_per_s", "floor_p99_ms")


@dataclass(frozen=True)
class Side:
    """One tree under test: ``name`` (A or B), what it is (``rev``), where it is checked out, its bench command."""

    name: str
    rev: str
    tree: Path
    command: tuple[str, ...]


def bench_command(tree: Path) -> tuple[str, ...]:
    """The bench command of the tree at ``tree``: its CLI module moved to ``stream.tools`` with the layers."""
    for module, path in (("stream.tools.cli", "stream/tools/cli.py"), ("stream.cli", "stream/cli.py")):
        if (tree / path).is_file():
            return (sys.executable, "-m", module, "bench")
    raise FileNotFoundError(f"no fraudstream CLI in {tree} (looked for stream/tools/cli.py and stream/cli.py)")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def worktree(repo: Path, rev: str, parent: Path) -> Iterator[Path]:
    """A detached git worktree of ``rev`` under ``parent``, removed (and pruned from the repository) afterwards."""
    path = Path(tempfile.mkdtemp(prefix="tree-", dir=parent))
    path.rmdir()  # git worktree add wants to create it
    _git(repo, "worktree", "add", "--detach", "--quiet", str(path), rev)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], check=False,
                       capture_output=True)
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], check=False, capture_output=True)


def headline(fig: dict[str, float]) -> dict[str, float]:
    """A run's figures with ``engine_per_s``: the engine's rate with the fewest workers, as c/a takes it.

    >>> headline({"engine_2w_per_s": 20.0, "engine_1w_per_s": 12.0, "c_over_a": 0.3})["engine_per_s"]
    12.0
    """
    engines = sorted((int(k.removeprefix("engine_").removesuffix("w_per_s")), v) for k, v in fig.items()
                     if k.startswith("engine_") and k.endswith("w_per_s"))
    return {**fig, "engine_per_s": engines[0][1]} if engines else dict(fig)


def _figures_of(out: Path) -> list[dict[str, float]]:
    """The figures of each repetition in a bench's JSON: ``runs`` since ``--repeat``, the top level before it."""
    saved = json.loads(out.read_text())
    return [headline(figures(run)) for run in saved.get("runs", [saved])]


def _run(side: Side, index: int, bench_args: Sequence[str], workdir: Path) -> dict[str, Any]:
    """One bench run of ``side``: its figures (empty if it failed; its log says why), return code and duration."""
    stem = workdir / f"{side.name}{index}"
    out, log_path = stem.with_suffix(".json"), stem.with_suffix(".log")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(side.tree), os.environ.get("PYTHONPATH")]))}
    started = time.monotonic()
    with open(log_path, "wb") as log:
        rc = subprocess.run([*side.command, *bench_args, "--out", str(out)], cwd=side.tree, env=env, stdout=log,
                            stderr=subprocess.STDOUT, check=False).returncode
    seconds = round(time.monotonic() - started, 1)
    runs = _figures_of(out) if out.exists() else []
    return {"side": side.name, "index": index, "returncode": rc, "seconds": seconds, "log": str(log_path),
            "figures": runs[0] if runs else {}}


def _fmt(key: str, value: float) -> str:
    if key.endswith("_per_s"):
        return f"{value:,.0f}"
    if key.endswith("_ms"):
        return f"{value:.0f}"
    return f"{value:.3f}"


def _label(key: str) -> str:
    return "(c) engine, fewest workers, events/s" if key == "engine_per_s" else label(key)


def summarise_ab(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per headline figure: each side's spread, B/A of the medians, and the median of the pairs' B/A.

    >>> runs = [{"side": s, "index": i, "figures": {"engine_p99_ms": v}}
    ...         for s, i, v in (("A", 1, 40.0), ("B", 1, 44.0), ("A", 2, 60.0), ("B", 2, 60.0))]
    >>> got = summarise_ab(runs)["engine_p99_ms"]
    >>> got["A"]["median"], got["B"]["median"], got["b_over_a"], got["pairs_b_over_a"]
    (50.0, 52.0, 1.04, 1.05)
    """
    out: dict[str, dict[str, Any]] = {}
    for key in HEADLINE:
        values = {side: [r["figures"][key] for r in runs if r["side"] == side and key in r["figures"]]
                  for side in ("A", "B")}
        if not values["A"] or not values["B"]:
            continue
        row: dict[str, Any] = {side: spread(vals) for side, vals in values.items()}
        row["b_over_a"] = round(row["B"]["median"] / row["A"]["median"], 3)
        by_index = {(r["side"], r["index"]): r["figures"].get(key) for r in runs}
        pairs = [b / a for (side, i), a in by_index.items() if side == "A" and a
                 and (b := by_index.get(("B", i))) is not None]
        if pairs:
            row["pairs_b_over_a"] = round(median(pairs), 3)
        out[key] = row
    return out


def ab_lines(summary: dict[str, dict[str, Any]], markdown: bool = False) -> list[str]:
    """The A/B table: each headline figure's median (min–max) on both sides and B/A; Markdown with ``markdown``."""
    head = ("", "A median (min–max)", "B median (min–max)", "B/A of medians", "B/A of pairs, median")
    rows = [head]
    for key, row in summary.items():
        a, b = row["A"], row["B"]
        rows.append((_label(key), f"{_fmt(key, a['median'])} ({_fmt(key, a['min'])}–{_fmt(key, a['max'])})",
                     f"{_fmt(key, b['median'])} ({_fmt(key, b['min'])}–{_fmt(key, b['max'])})",
                     f"{row['b_over_a']:.3f}", f"{row['pairs_b_over_a']:.3f}" if "pairs_b_over_a" in row else "-"))
    if markdown:
        return ["| " + " | ".join(rows[0]) + " |", "|---|---|---|---|---|", *("| " + " | ".join(r) + " |"
                                                                            for r in rows[1:])]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return ["  ".join(f"{cell:<{w}}" if i == 0 else f"{cell:>{w}}" for i, (cell, w) in enumerate(zip(r, widths,
            strict=True))).rstrip() for r in rows]


def _checkpoint_args(bench_args: list[str], workdir: Path) -> list[str]:
    """``bench_args`` with ``--checkpoint DIR`` of a model trained once here, unless they name one."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--checkpoint")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--cards", type=int, default=4_000)
    known, _ = parser.parse_known_args(bench_args)
    if known.checkpoint is not None and known.checkpoint != "auto":
        return bench_args
    from stream.tools.bench.config import BenchConfig, train_checkpoint

    sized = BenchConfig.smoke("") if known.smoke else BenchConfig(events=known.events, cards=known.cards)
    rest = [a for i, a in enumerate(bench_args) if a != "--checkpoint" and (i == 0 or bench_args[i - 1] != "--checkpoint")]
    return [*rest, "--checkpoint", train_checkpoint(sized, workdir)]


def run_ab(repo: Path, base: str, head: str, repeat: int, bench_args: list[str], out: Path,
           markdown: bool = False) -> dict[str, Any]:
    """Run the A/B (see the module docstring); print and return every run and the summary, written to ``out``."""
    if repeat < 1:
        raise ValueError(f"repeat={repeat} must be at least 1")
    if any(a in ("--repeat", "--out") or a.startswith(("--repeat=", "--out=")) for a in bench_args):
        raise ValueError("the bench options must not hold --repeat or --out: the A/B runs one repetition a run, "
                         "alternating the sides, and names each run's output itself")
    workdir = Path(tempfile.mkdtemp(prefix="fraudstream-ab-"))
    results: dict[str, Any] = {"base": base, "head": head or "working tree", "repeat": repeat,
                               "machine": {"cpus": os.cpu_count()}, "workdir": str(workdir), "runs": []}
    with ExitStack() as stack:
        a_tree = stack.enter_context(worktree(repo, base, workdir))
        b_tree = stack.enter_context(worktree(repo, head, workdir)) if head else repo
        sides = (Side("A", base, a_tree, bench_command(a_tree)), Side("B", head or "working tree", b_tree,
                                                                     bench_command(b_tree)))
        bench_args = _checkpoint_args(list(bench_args), workdir)
        results["bench_args"] = bench_args
        results["commands"] = {s.name: " ".join([*s.command[1:], *bench_args]) + f"  (in {s.rev})" for s in sides}
        print(f"A/B in {workdir}, {repeat} run(s) a side, interleaved A, B, A, B, ...", flush=True)
        for side in sides:
            print(f"{side.name}: {results['commands'][side.name]}", flush=True)
        for index in range(1, repeat + 1):
            for side in sides:
                run = _run(side, index, bench_args, workdir)
                results["runs"].append(run)
                fig = run["figures"]
                shown = ", ".join(f"{_label(k)} {_fmt(k, fig[k])}" for k in HEADLINE[:4] if k in fig)
                print(f"{side.name}{index}: {run['seconds']:.0f} s, "
                      + (shown if run["returncode"] == 0 and fig else f"failed (rc {run['returncode']}), see "
                         f"{run['log']}"), flush=True)
                results["summary"] = summarise_ab(results["runs"])
                out.write_text(json.dumps(results, indent=2))  # after each run: a cut-short A/B keeps its own
    print(f"-- A = {base}, B = {results['head']}: medians over {repeat} run(s) a side", flush=True)
    for line in ab_lines(results.get("summary", {}), markdown=markdown):
        print(line, flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.tools.bench.ab", description=__doc__.split("\n")[0],
                                     epilog="Options after -- go to both sides' fraudstream bench.")
    parser.add_argument("--base", required=True, help="A: the revision to compare against")
    parser.add_argument("--head", default="", help="B: a revision (default: this checkout's working tree as it is)")
    parser.add_argument("--repeat", type=int, default=3, help="bench runs a side, interleaved A, B, A, B, ...")
    parser.add_argument("--repo", default=".", help="the git repository the revisions are in")
    parser.add_argument("--out", default="ab-results.json")
    parser.add_argument("--markdown", action="store_true", help="print the summary as a Markdown table")
    args, bench_args = parser.parse_known_args(argv)
    bench_args = [a for a in bench_args if a != "--"]
    repo = Path(_git(Path(args.repo), "rev-parse", "--show-toplevel"))
    try:
        results = run_ab(repo, args.base, args.head, args.repeat, bench_args, Path(args.out), args.markdown)
    except ValueError as exc:
        print(f"ab: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in results["runs"] if r["returncode"] != 0 or not r["figures"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
