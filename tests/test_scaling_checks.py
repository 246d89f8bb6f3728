"""What a scaled run's selection refuses to believe, through the CLI: a test command that
cannot pass on the base (said loudly, with what decided instead), and a candidate whose
conftest.py forces every test report to "passed" while its code is wrong (not credited:
its test infrastructure takes no part in its verification). And a verifier model, when
one is configured, scoring the changes.

The repository (``buggy_repo``): ``add`` subtracts; ``tests/test_ops.py::test_add`` fails
on the base; ``tests/test_zero.py::test_add_zero`` passes there (``5 - 0 == 5``) and with
the right fix, and fails with the wrong one (``a * b``).
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
from select_support import FORCING, judge

from cwm_agent.scripted_server import ScriptedServer

VENV_BIN = str(Path(sys.executable).parent)  # `python3` with pytest
ZERO_TEST = "from mathlib.ops import add\n\n\ndef test_add_zero():\n    assert add(5, 0) == 5\n"


def _edit(line: str) -> str:
    return f"mathlib/ops.py\n<<<<<<< SEARCH\n    return a - b\n=======\n{line}\n>>>>>>> REPLACE"


def _fix(name: str, line: str, *extra: str, tokens: int = 10) -> list[dict]:
    steps = [cwm("edit", _edit(line), f"[script:{name}] Fix add()."), *extra]
    steps += [cwm("bash", "git add -A && git diff --cached > fix.patch")]
    steps += [cwm("submit", "fix.patch"), "<think>\nDone.\n</think>\nFixed add()."]
    usage = {"prompt_tokens": 100, "completion_tokens": tokens, "total_tokens": 100 + tokens}
    return [{"content": step, "usage": usage} for step in steps]


SCRIPTS = {
    "right": _fix("right", "    return a + b", tokens=50),
    "wrong": _fix("wrong", "    return a * b", tokens=5),
    # Wrong code, and a conftest.py that makes every test "pass": it grades itself.
    "forcing": _fix("forcing", "    return a * b", cwm("create", "conftest.py\n" + FORCING)),
}


class Attempts:
    def __init__(self, plan: list[str]) -> None:
        self.waiting = list(plan)
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> dict | None:
        if body["model"] == "judge":  # the verifier: YES for a change that adds
            return judge(body)
        said = [m for m in body["messages"] if m["role"] == "assistant"]
        if said:
            name = re.search(r"\[script:(\w+)\]", json.dumps(said[0])).group(1)
        else:
            with self.lock:
                name = self.waiting.pop(0)
        script = SCRIPTS[name]
        return script[len(said)] if len(said) < len(script) else None


@pytest.fixture
def repo(buggy_repo: Path) -> Path:
    (buggy_repo / "tests" / "test_zero.py").write_text(ZERO_TEST)
    git(buggy_repo, "add", "-A")
    git(buggy_repo, "commit", "-q", "-m", "a test that passes on the base")
    return buggy_repo


def scaled_run(repo: Path, env: dict, plan: list[str], *extra: str) -> tuple[dict, str]:
    env = {**env, "PATH": VENV_BIN + os.pathsep + env["PATH"]}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    with ScriptedServer(Attempts(plan)) as server:
        args = ["run", str(repo), "--issue", "add() subtracts", "--model", "m", "--json"]
        args += ["--base-url", server.base_url, "--attempts", str(len(plan))]
        args += ["--repro-tests", "0", "--max-steps", "8", *extra]
        result = run_cli(args, env, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def followed(rollout: dict) -> str:
    return re.search(r"\[script:(\w+)\]", Path(rollout["trajectory"]).read_text()).group(1)


def test_a_test_command_failing_on_the_base_is_said_loudly_with_what_decided(repo, cli_env):
    """The issue's own check as --test-cmd: it fails on the base, so no candidate can be
    told apart by it; the record and stderr say so, and that votes decided instead."""
    command = "python3 -c 'from mathlib.ops import add; assert add(2, 3) == 5'"
    doc, stderr = scaled_run(repo, cli_env, ["right", "wrong", "right"], "--test-cmd", command)
    sel = doc["selection"]
    (warning,) = sel["warnings"]
    assert warning.startswith("execute: the test command passes no test on the base (")
    assert "AssertionError" in warning
    assert warning.endswith("existing tests cannot decide between the candidates; the choice "
                            "fell to votes")  # fmt: skip
    assert f"warning: selection: {warning}" in stderr  # loudly, not as a note
    assert stderr.count("passes no test on the base") == 1  # **was**: twice, a note too
    assert sel["chosen"]["decided_by"] == "votes"
    assert sel["stages"]["execute"]["base_passing"] == 0
    assert all(g["execute"]["status"] == "not_run" for g in sel["groups"])  # nothing counts
    assert "+    return a + b" in doc["patch"]
    assert doc["reason"].startswith("attempt ") and " selected by votes: " in doc["reason"]


def test_a_conftest_forcing_passed_is_not_credited(repo, cli_env):
    """Two attempts make the wrong change plus a conftest.py forcing "passed" (the
    majority); the right fix is chosen: the forcing file is left out of the test runs, and
    the wrong code fails test_add_zero, which passes on the base."""
    doc, _ = scaled_run(repo, cli_env, ["forcing", "right", "forcing"])
    sel = doc["selection"]
    assert "+    return a + b" in doc["patch"] and "conftest" not in doc["patch"]
    rows = {followed(r): r for r in sel["rollouts"]}
    forcing, right = rows["forcing"], rows["right"]
    assert (forcing["votes"], right["votes"]) == (2, 1)
    assert right["selected"] and sel["chosen"]["decided_by"] == "tests passed"
    group = next(g for g in sel["groups"] if g["key"] == forcing["group"])
    assert group["stripped"] == ["conftest.py"]  # recorded: not part of its verification
    assert forcing["checks"]["regressions"] == ["tests.test_zero::test_add_zero"]
    assert (forcing["checks"]["passed"], right["checks"]["passed"]) == (0, 1)
    assert sel["warnings"] == []


def test_a_verifier_scores_the_changes_when_one_is_configured(repo, cli_env, tmp_path):
    """No tests to run (--test-cmd '', no reproduction rollouts): the verifier's score
    decides over the majority."""
    env = {**cli_env, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    # The verifier priced by its own entry (**was**: a scaled run's verifier cost no USD).
    config = tmp_path / "config.toml"
    config.write_text('[prices."judge"]\ninput = 1.0\noutput = 2.0\n')
    doc, _ = scaled_run(repo, env, ["wrong", "right", "wrong"], "--test-cmd", "",
                        "--verifier-model", "judge", "--config", str(config))  # fmt: skip
    sel = doc["selection"]
    assert sel["stages"]["reward"]["ran"] and sel["stages"]["reward"]["cost"]["model_calls"] == 2
    assert sel["stages"]["reward"]["cost"]["usd"] > 0
    assert sel["chosen"]["decided_by"] == "reward score"
    assert "+    return a + b" in doc["patch"]
    assert sel["warnings"] == []
    assert (tmp_path / "cache" / "cwm-agent" / "verifier").is_dir()
