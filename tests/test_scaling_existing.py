"""Existing tests counted per test, on a repository whose suite already fails on the base.

The suite has the issue's test (fails on the base), an unrelated test that always fails,
and two tests of `scale` that pass on the base. K=3: one right fix of `add`, and twice a
wrong fix that repairs `add` but breaks `scale`. The suite's exit code is 1 for every
candidate, so an exit-code check cannot tell them apart (and the majority would pick the
wrong fix); counting the tests that pass on the base and still pass can.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from pathlib import Path

import pytest
from conftest import cwm, git, run_cli

from cwm_agent.scripted_server import ScriptedServer

VENV_BIN = str(Path(sys.executable).parent)  # `python3` with pytest

OPS = """\
def add(a, b):
    return a - b


def scale(values, factor):
    return [v * factor for v in values]
"""
TESTS = """\
from mathlib.ops import add, scale


def test_add():
    assert add(2, 3) == 5


def test_scale():
    assert scale([1, 2], 3) == [3, 6]


def test_scale_empty():
    assert scale([], 3) == []
"""
QUIRK = 'def test_platform_quirk():\n    assert False, "fails here, unrelated to the issue"\n'


def edit(search: str, replace: str) -> str:
    return f"mathlib/ops.py\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE"


def fix(name: str, edits: list[str], tokens: int) -> list[dict]:
    steps = [cwm("edit", e, f"[script:{name}] Fix it.") for e in edits]
    steps += [cwm("bash", "git diff > fix.patch"), cwm("submit", "fix.patch"), "Fixed add()."]
    usage = {"prompt_tokens": 100, "completion_tokens": tokens, "total_tokens": 100 + tokens}
    return [{"content": step, "usage": usage} for step in steps]


ADD = edit("    return a - b", "    return a + b")
BREAK_SCALE = edit(
    "    return [v * factor for v in values]", "    return [v + factor for v in values]"
)
SCRIPTS = {
    "right": fix("right", [ADD], 50),
    "wrong": fix("wrong", [ADD, BREAK_SCALE], 5),  # fewer tokens, and two votes
}


class Attempts:
    def __init__(self, plan: list[str]) -> None:
        self.waiting = list(plan)
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> dict | None:
        said = [m for m in body["messages"] if m["role"] == "assistant"]
        if said:
            name = re.search(r"\[script:(\w+)\]", json.dumps(said[0])).group(1)
        else:
            with self.lock:
                name = self.waiting.pop(0)
        script = SCRIPTS[name]
        return script[len(said)] if len(said) < len(script) else None


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "mathlib").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "mathlib" / "__init__.py").write_text("")
    (repo / "mathlib" / "ops.py").write_text(OPS)
    (repo / "tests" / "test_ops.py").write_text(TESTS)
    (repo / "tests" / "test_quirk.py").write_text(QUIRK)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


def scaled_run(repo: Path, env: dict, *extra: str) -> dict:
    env = {**env, "PATH": VENV_BIN + os.pathsep + env["PATH"]}
    with ScriptedServer(Attempts(["wrong", "right", "wrong"])) as server:
        args = ["run", str(repo), "--issue", "add() subtracts", "--model", "m", "--json"]
        args += ["--base-url", server.base_url, "--attempts", "3", "--repro-tests", "0"]
        result = run_cli([*args, *extra], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def by_name(selection: dict) -> dict[str, dict]:
    """The candidates by the script they followed: "right", and the wrong patch's group."""
    rows = {}
    for row in selection["candidates"]:
        text = Path(row["trajectory"]).read_text()
        rows.setdefault(re.search(r"\[script:(\w+)\]", text).group(1), row)
    return rows


def test_the_per_test_count_separates_a_right_fix_from_a_wrong_one(repo, cli_env):
    doc = scaled_run(repo, cli_env)  # the default test command: the repository has tests/
    sel = doc["selection"]
    rows = by_name(sel)
    right, wrong = rows["right"], rows["wrong"]
    assert right["selected"] and "+    return a + b" in doc["patch"]
    assert "v + factor" not in doc["patch"]
    assert (wrong["votes"], right["votes"]) == (2, 1)  # the majority is wrong
    # The suite fails with every patch: its exit code says nothing.
    for row in (right, wrong):
        existing = [r for r in sel["test_runs"] if r["candidate"] == row["patch_hash"]]
        assert [(r["test"], r["outcome"], r["exit_code"]) for r in existing] == [
            ("existing", "failed", 1)
        ]
    # Per test: the two tests of scale pass on the base; the wrong fix breaks one of them.
    summary = sel["existing_tests"]
    assert (summary["mode"], summary["counted"], summary["source"]) == ("per_test", 2, "default")
    assert summary["base"]["tests"] == {"passed": 2, "failed": 2, "error": 0, "skipped": 0}
    assert (right["existing_tests"]["passed"], right["existing_tests"]["total"]) == (2, 2)
    assert (wrong["existing_tests"]["passed"], wrong["existing_tests"]["total"]) == (1, 2)
    assert wrong["existing_tests"]["regressions"] == ["tests.test_ops::test_scale"]
    assert (right["tests_passed"], wrong["tests_passed"]) == (2, 1)
    assert (
        "it passes 2 of 2 tests (2 of the 2 existing tests that pass on the base)" in doc["reason"]
    )
    assert wrong["standing"] == "fewer tests passed (1 of 2; the winner 2)"


@pytest.mark.parametrize(
    ("command", "mode"),
    [
        (
            "cd tests && PYTHONPATH=.. python3 -m pytest -q -p no:cacheprovider test_ops.py  # ops",
            "per_test",
        ),
        (
            "python3 -c 'from mathlib.ops import add, scale; "
            "assert add(2, 3) == 5 and scale([1], 2) == [2]'",
            "exit_code",
        ),
    ],
)
def test_a_users_test_command_is_counted_per_test_or_by_its_exit_code(repo, cli_env, command, mode):
    sel = scaled_run(repo, cli_env, "--test-cmd", command)["selection"]
    rows = by_name(sel)
    right, wrong = rows["right"], rows["wrong"]
    assert right["selected"] and sel["existing_tests"]["mode"] == mode
    assert sel["existing_tests"]["command"] == command
    if mode == "per_test":
        assert (right["existing_tests"]["passed"], wrong["existing_tests"]["passed"]) == (2, 1)
        assert wrong["existing_tests"]["regressions"] == ["test_ops::test_scale"]
    else:  # no report: the exit code is one check, and selection.json says so
        assert (right["existing_tests"]["passed"], wrong["existing_tests"]["passed"]) == (1, 0)
        assert right["existing_tests"]["total"] == 1
        assert "its exit code counts as one check" in sel["existing_tests"]["note"]
        assert "its exit code counts as one check" in right["existing_tests"]["note"]
