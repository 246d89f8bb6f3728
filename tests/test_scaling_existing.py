"""Existing tests counted per test, on a repository whose suite already fails on the base.

The suite has the issue's test (fails on the base), an unrelated test that always fails,
and two tests of `scale` that pass on the base. K=3: one right fix of `add`, and twice a
wrong fix that repairs `add` but breaks `scale`. The whole suite's exit code is 1 for
every candidate, so an exit-code check cannot tell them apart (and the majority would pick
the wrong fix); counting the tests that pass on the base and still pass can. By default
only the impacted test files run (the unrelated failing one is not among them).
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
    """The rollouts by the script they followed: "right", and the wrong patch's group."""
    rows = {}
    for row in selection["rollouts"]:
        text = Path(row["trajectory"]).read_text()
        rows.setdefault(re.search(r"\[script:(\w+)\]", text).group(1), row)
    return rows


def verdict(selection: dict, row: dict) -> dict:
    return next(g["execute"] for g in selection["groups"] if g["key"] == row["group"])


def test_the_per_test_count_separates_a_right_fix_from_a_wrong_one(repo, cli_env):
    doc = scaled_run(repo, cli_env)  # the default: pytest on the impacted test files
    sel = doc["selection"]
    rows = by_name(sel)
    right, wrong = rows["right"], rows["wrong"]
    assert right["selected"] and "+    return a + b" in doc["patch"]
    assert "v + factor" not in doc["patch"]
    assert (wrong["votes"], right["votes"]) == (2, 1)  # the majority is wrong
    execute = sel["stages"]["execute"]
    assert execute["tests"] == ["tests/test_ops.py"]  # test_quirk.py imports nothing changed
    # Per test: the two tests of scale pass on the base; the wrong fix breaks one of them.
    assert execute["base_passing"] == 2
    (base,) = [r for r in execute["runs"] if r["group"] == "base"]
    assert base["tests"] == {"passed": 2, "failed": 1, "error": 0, "skipped": 0}
    assert (right["checks"]["passed"], right["checks"]["total"]) == (2, 2)
    assert (wrong["checks"]["passed"], wrong["checks"]["total"]) == (1, 2)
    assert wrong["checks"]["regressions"] == ["tests.test_ops::test_scale"]
    assert doc["reason"].startswith(f"attempt {right['attempt']} selected by tests passed: ")
    assert "passes 2 of 2 checks; the next best passes 1" in doc["reason"]


@pytest.mark.parametrize(
    ("command", "counted"),
    [
        (
            "cd tests && PYTHONPATH=.. python3 -m pytest -q -p no:cacheprovider test_ops.py  # ops",
            ["test_ops::test_scale"],
        ),
        (
            "python3 -c 'from mathlib.ops import scale; assert scale([1], 2) == [2]'",
            ["(the test command's exit status)"],
        ),
    ],
)
def test_a_users_test_command_is_counted_per_test_or_by_its_exit_code(
    repo, cli_env, command, counted
):
    """Without {tests} the command runs as given: per test where pytest reports them,
    else its exit status is the one check."""
    sel = scaled_run(repo, cli_env, "--test-cmd", command)["selection"]
    rows = by_name(sel)
    right, wrong = rows["right"], rows["wrong"]
    assert right["selected"] and sel["stages"]["execute"]["test_command"] == command
    assert sel["stages"]["execute"]["tests"] == []  # not aimed at files: no {tests}
    assert wrong["checks"]["regressions"] == counted
    total = sel["stages"]["execute"]["base_passing"]  # 2 tests of scale, or the exit status
    assert right["checks"]["passed"] == right["checks"]["total"] == total
    assert verdict(sel, wrong)["existing_passed"] == total - 1
    assert sel["warnings"] == []
