"""The A/B script: both trees' own bench commands, interleaved, summarised. Fake benches in a throwaway repository."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from stream.tools.bench.ab import main

# A bench CLI as a tree has it: it logs who ran it, with which options, where and with which PYTHONPATH, and writes
# its figures (the layout before --repeat at the top level; after it, under "runs"). FAIL_ON names a run (by its
# number among every run of the A/B) that fails without figures.
_FAKE = '''
import json, os, sys
args = sys.argv[1:]
out = args[args.index("--out") + 1]
log = os.environ["AB_TEST_LOG"]
number = sum(1 for _ in open(log)) + 1 if os.path.exists(log) else 1
with open(log, "a") as f:
    f.write(json.dumps({"tree": LAYOUT, "args": args[:args.index("--out")], "cwd": os.getcwd(),
                        "pythonpath": os.environ["PYTHONPATH"].split(os.pathsep)[0]}) + "\\n")
if number == int(os.environ.get("AB_TEST_FAIL_ON", "0")):
    sys.exit(1)
run = {"bare_aiokafka": {"events_per_s": 1000.0}, "ratio_engine_to_bare": ENGINE / 1000.0,
       "engine": [{"workers": 2, "events_per_s": 2 * ENGINE, "stage_us_per_event": {}},
                  {"workers": 1, "events_per_s": ENGINE, "stage_us_per_event": {}}],
       "latency_floor": {"p99_ms": 40.0}, "latency": {"p99_ms": P99}}
json.dump({"runs": [run]} if LAYOUT == "new" else run, open(out, "w"))
'''


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def _fake_cli(layout: str, engine: float, p99: float) -> str:
    return f"LAYOUT, ENGINE, P99 = {layout!r}, {engine}, {p99}\n{_FAKE}"


@pytest.fixture(autouse=True)
def _workdirs_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The A/B keeps its work directory (logs, each run's JSON) for the user: in a test, under tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    """A repository whose first commit has the old CLI (stream/cli.py), the second the moved one; its revision 1."""
    repo = tmp_path / "repo"
    (repo / "stream").mkdir(parents=True)
    _git(repo, "init", "--quiet")
    (repo / "stream" / "__init__.py").write_text("")
    (repo / "stream" / "cli.py").write_text(_fake_cli("old", 300.0, 50.0))
    _git(repo, "add", ".")
    _git(repo, "commit", "--quiet", "-m", "old layout")
    base = _git(repo, "rev-parse", "HEAD")
    (repo / "stream" / "cli.py").unlink()
    (repo / "stream" / "tools").mkdir()
    (repo / "stream" / "tools" / "__init__.py").write_text("")
    (repo / "stream" / "tools" / "cli.py").write_text(_fake_cli("new", 330.0, 44.0))
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "layers")
    return repo, base


def test_ab_alternates_both_trees_own_bench_and_gives_b_over_a_of_the_headline_figures(repo, tmp_path, monkeypatch,
                                                                                         capsys):
    repo_path, base = repo
    # B is the working tree as it is: an uncommitted change is measured.
    cli = repo_path / "stream" / "tools" / "cli.py"
    cli.write_text(cli.read_text().replace("330.0", "360.0"))
    log, out = tmp_path / "calls.jsonl", tmp_path / "ab.json"
    monkeypatch.setenv("AB_TEST_LOG", str(log))
    rc = main(["--repo", str(repo_path), "--base", base, "--repeat", "2", "--out", str(out), "--",
               "--events", "10", "--checkpoint", ""])
    assert rc == 0
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["tree"] for c in calls] == ["old", "new", "old", "new"]  # A, B, A, B
    assert all(c["args"] == ["bench", "--events", "10", "--checkpoint", ""] for c in calls)  # the same options
    a_tree, b_tree = calls[0]["cwd"], calls[1]["cwd"]
    assert Path(b_tree) == repo_path and Path(a_tree) != repo_path  # A in a worktree of its own
    assert all(c["pythonpath"] == c["cwd"] for c in calls)  # each side imports its own tree first
    assert not Path(a_tree).exists() and _git(repo_path, "worktree", "list").count("\n") == 0  # removed after

    saved = json.loads(out.read_text())
    assert [(r["side"], r["index"]) for r in saved["runs"]] == [("A", 1), ("B", 1), ("A", 2), ("B", 2)]
    summary = saved["summary"]
    assert summary["engine_per_s"]["A"]["median"] == 300.0  # the one-worker run, not the two-worker one
    assert summary["engine_per_s"]["b_over_a"] == 1.2 and summary["c_over_a"]["b_over_a"] == 1.2
    assert summary["engine_p99_ms"]["b_over_a"] == 0.88 and summary["p99_engine_over_floor"]["pairs_b_over_a"] == 0.88
    assert summary["floor_p99_ms"]["b_over_a"] == 1.0
    printed = capsys.readouterr().out
    assert "engine p99 / floor p99" in printed and "1.200" in printed


def test_a_failed_run_is_recorded_and_the_others_still_summarised(repo, tmp_path, monkeypatch):
    repo_path, base = repo
    out = tmp_path / "ab.json"
    monkeypatch.setenv("AB_TEST_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("AB_TEST_FAIL_ON", "3")  # A's second run
    rc = main(["--repo", str(repo_path), "--base", base, "--repeat", "2", "--out", str(out), "--",
               "--checkpoint", ""])
    assert rc == 1
    saved = json.loads(out.read_text())
    failed = saved["runs"][2]
    assert (failed["side"], failed["index"], failed["returncode"], failed["figures"]) == ("A", 2, 1, {})
    engine = saved["summary"]["engine_per_s"]
    assert engine["A"]["n"] == 1 and engine["B"]["n"] == 2
    assert engine["pairs_b_over_a"] == 1.1  # only the pair both of whose runs gave figures


@pytest.mark.parametrize("option", ["--repeat", "--out", "--repeat=3"])
def test_bench_options_that_would_break_the_alternation_are_refused(repo, tmp_path, option, capsys):
    repo_path, base = repo
    rc = main(["--repo", str(repo_path), "--base", base, "--out", str(tmp_path / "ab.json"), "--", option, "3"])
    assert rc == 2
    assert "must not hold --repeat or --out" in capsys.readouterr().err
    assert not (tmp_path / "ab.json").exists()
    assert _git(repo_path, "worktree", "list").count("\n") == 0  # refused before any worktree was made
