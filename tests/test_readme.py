"""The README is the user's manual: it stays short and cannot drift from the code it describes.

Each test reads README.md (and the generated docs/settings.md) and checks one kind of claim against the
code: commands exist, links resolve, variables are settings, examples validate, reasons are the engine's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from stream.contracts.settings import ENV_PREFIX, Settings
from stream.core.outputs import alert_id
from stream.tools import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 300

# FRAUDSTREAM_* variables the README may name that are not engine settings: they configure the test
# harness or the benchmark, not a worker. Each must still be read somewhere in the code (checked below).
NOT_SETTINGS = {"FRAUDSTREAM_TEST_BROKER", "FRAUDSTREAM_BENCH_LOG_LEVEL"}

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
COMMAND = re.compile(r"(?:^|[\s/;&|(])fraudstream[ \t]+([a-z][\w-]*)", re.MULTILINE)
VARIABLE = re.compile(r"\bFRAUDSTREAM_[A-Z0-9][A-Z0-9_]*")


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _shell_text(text: str) -> str:
    """The README's shell code: fenced sh/bash/console blocks and inline code spans."""
    blocks = [body for lang, body in FENCE.findall(text) if lang in ("sh", "bash", "console", "shell")]
    prose = FENCE.sub("", text)
    return "\n".join(blocks + CODE_SPAN.findall(prose))


def _cli_subcommands() -> set[str]:
    """The subcommands of the ``fraudstream`` parser, read from the parser ``stream.tools.cli.main`` builds."""
    captured: list[argparse.ArgumentParser] = []

    class Captured(Exception):
        pass

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        captured.append(self)
        raise Captured

    mp = pytest.MonkeyPatch()
    mp.setattr(argparse.ArgumentParser, "parse_args", capture)
    try:
        cli.main(["--help"])
    except Captured:
        pass  # the parser is built and captured; nothing is parsed or run
    finally:
        mp.undo()
    assert captured, "stream.tools.cli.main no longer parses its arguments with argparse"
    actions = [a for a in captured[0]._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1, "the fraudstream parser should have one set of subcommands"
    return set(actions[0].choices)


def test_readme_is_short():
    lines = len(_readme().splitlines())
    assert lines <= MAX_LINES, f"README.md has {lines} lines; keep it under {MAX_LINES} and move detail to docs/"


def test_every_fraudstream_command_in_the_readme_exists():
    named = set(COMMAND.findall(_shell_text(_readme())))
    assert {"topics", "worker", "bench"} <= named, "the command pattern no longer finds the README's commands"
    missing = sorted(named - _cli_subcommands())
    assert not missing, f"README shows `fraudstream {missing[0]}`, which stream/tools/cli.py does not define: {missing}"


def test_every_python_module_the_readme_runs_exists():
    modules = set(re.findall(r"python -m ([\w.]+)", _shell_text(_readme())))
    missing = sorted(m for m in modules if importlib.util.find_spec(m) is None)
    assert not missing, f"README runs `python -m` on modules that do not exist: {missing}"


def test_every_make_target_in_the_readme_exists():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, re.MULTILINE))
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", _shell_text(_readme())))
    assert {"demo", "test"} <= named
    missing = sorted(named - targets)
    assert not missing, f"README names make targets the Makefile lacks: {missing}"


@pytest.mark.parametrize("name", ["README.md", "CHANGELOG.md"])
def test_every_relative_link_points_to_a_file(name: str):
    page = ROOT / name
    targets = [t for t in LINK.findall(page.read_text(encoding="utf-8"))
               if not t.startswith(("http://", "https://", "mailto:", "#"))]
    assert targets, f"no relative links found in {name}: the link pattern is broken"
    broken = [t for t in targets if not (page.parent / t.split("#", 1)[0]).exists()]
    assert not broken, f"{name} links to files that do not exist: {broken}"


def test_every_variable_the_readme_names_is_a_setting():
    settings = {ENV_PREFIX + name.upper() for name in Settings.__dataclass_fields__}
    named = set(VARIABLE.findall(_readme()))
    assert "FRAUDSTREAM_BOOTSTRAP_SERVERS" in named
    unknown = sorted(named - settings - NOT_SETTINGS)
    assert not unknown, f"README names variables that are not fields of stream.contracts.settings.Settings: {unknown}"


def test_the_variables_that_are_not_settings_are_read_somewhere():
    sources = "\n".join(p.read_text(encoding="utf-8") for folder in ("stream", "tests", "models", "replay")
                        for p in (ROOT / folder).rglob("*.py") if p.name != "test_readme.py")
    unread = sorted(v for v in NOT_SETTINGS if v not in sources)
    assert not unread, f"no code reads {unread}: drop them from NOT_SETTINGS and the README"


def test_the_settings_page_is_what_the_code_generates(tmp_path: Path):
    out = tmp_path / "settings.md"
    assert cli.main(["settings", "--out", str(out)]) == 0
    page = ROOT / "docs" / "settings.md"
    assert page.read_text(encoding="utf-8") == out.read_text(encoding="utf-8"), (
        "docs/settings.md is stale: run `fraudstream settings --out docs/settings.md`")


def test_the_json_examples_are_valid_records():
    schemas = {name: json.loads((ROOT / "schemas" / f"{name}.json").read_text(encoding="utf-8"))
               for name in ("transactions", "alerts")}
    examples = [json.loads(body) for lang, body in FENCE.findall(_readme()) if lang == "json"]
    kinds = ["alerts" if "alert_id" in e else "transactions" for e in examples]
    assert sorted(kinds) == ["alerts", "transactions"], "README should show one transaction and one alert"
    for example, kind in zip(examples, kinds, strict=True):
        errors = [e.message for e in Draft202012Validator(schemas[kind]).iter_errors(example)]
        assert not errors, f"README's {kind} example does not match schemas/{kind}.json: {errors}"
        if kind == "alerts":
            assert example["alert_id"] == alert_id(example["transaction_id"]), "the example's alert_id is not derived"


def test_the_dead_letter_reasons_are_the_engines():
    table = _readme().split("**Dead letters.**", 1)[1].split("\n\n", 2)[1]  # the table after that paragraph
    reasons = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE))
    assert len(reasons) > 10, "the dead-letter table was not found under **Dead letters.**"
    headers = json.loads((ROOT / "schemas" / "dlq-headers.json").read_text(encoding="utf-8"))
    declared = set(headers["properties"]["dlq.reason"]["enum"])
    assert declared <= reasons, f"README's dead-letter table lacks {sorted(declared - reasons)}"
    assert reasons <= declared, f"schemas/dlq-headers.json lacks {sorted(reasons - declared)}"
    code = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "stream").rglob("*.py"))
    unused = sorted(r for r in reasons if f'"{r}"' not in code)
    assert not unused, f"README lists dead-letter reasons the engine never sends: {unused}"
