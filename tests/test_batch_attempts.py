"""`batch --attempts K`: each instance sampled K times and one patch selected by tests.

Two issues against one repository, K=2: for the first, one attempt fixes add() and one
breaks it differently (the repository's tests decide: the wrong fix fails a test that
passes on the base); for the second, one attempt fixes it and one never submits (the only
valid patch wins). With --executor ray too, where
the selection records travel back from the workers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from batch_support import read_json, read_preds
from conftest import cwm, git, run_cli

from cwm_agent.scripted_server import ScriptedServer

VENV_BIN = str(Path(sys.executable).parent)  # `python3` with pytest, for --test-cmd
TEST_CMD = "python3 -m pytest -q -p no:cacheprovider tests"
# Passes on the base (5 - 0) and with the right fix; the wrong one (a * b) breaks it.
ZERO_TEST = "from mathlib.ops import add\n\n\ndef test_add_zero():\n    assert add(5, 0) == 5\n"
RAY = importlib.util.find_spec("ray") is not None or os.environ.get("CWM_REQUIRE_RAY") == "1"


def fix(name: str, new_line: str) -> list[str]:
    edit = f"mathlib/ops.py\n<<<<<<< SEARCH\n    return a - b\n=======\n{new_line}\n>>>>>>> REPLACE"
    return [
        cwm("edit", edit, f"[script:{name}] add() is wrong."),
        cwm("bash", "git diff > fix.patch"),
        cwm("submit", "fix.patch"),
        "<think>\nDone.\n</think>\nFixed add().",
    ]


SCRIPTS = {
    "right": fix("right", "    return a + b"),
    "wrong": fix("wrong", "    return a * b"),
    "idle": [cwm("bash", "echo looking", "[script:idle] Look.")] * 8,
}
PLAN = {"i-1": ["wrong", "right"], "i-2": ["idle", "right"]}  # per issue, one per attempt


class Attempts:
    """A new conversation of an issue takes that issue's next script; later turns go on
    with the script named in its first reply."""

    def __init__(self) -> None:
        self.waiting = {key: list(names) for key, names in PLAN.items()}
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> str | None:
        messages = body["messages"]
        said = [m for m in messages if m["role"] == "assistant"]
        if said:
            name = re.search(r"\[script:(\w+)\]", json.dumps(said[0])).group(1)
        else:
            key = next(k for k in PLAN if f"[{k}]" in messages[1]["content"])
            with self.lock:
                name = self.waiting[key].pop(0)
        script = SCRIPTS[name]
        return script[len(said)] if len(said) < len(script) else None


@pytest.fixture
def env(cli_env, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    ray_tmp = tempfile.mkdtemp(prefix="cwmray-", dir="/tmp")  # Ray's sockets: a short path
    path = VENV_BIN + os.pathsep + cli_env["PATH"]
    yield {**cli_env, "TMPDIR": str(tmp), "RAY_TMPDIR": ray_tmp, "PATH": path}
    shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.parametrize(
    "executor",
    ["thread", pytest.param("ray", marks=pytest.mark.skipif(not RAY, reason="no Ray"))],
)
def test_each_instance_selects_a_valid_patch_and_keeps_the_record(
    executor, buggy_repo, env, tmp_path
):
    (buggy_repo / "tests" / "test_zero.py").write_text(ZERO_TEST)
    git(buggy_repo, "add", "-A")
    git(buggy_repo, "commit", "-q", "-m", "a test that passes on the base")
    issues = tmp_path / "issues"
    issues.mkdir()
    for key in PLAN:
        (issues / f"{key}.md").write_text(f"[{key}] add() subtracts instead of adding.")
    outdir = tmp_path / "out"
    args = ["batch", str(issues), "-o", str(outdir), "--repo", str(buggy_repo), "--model", "m"]
    args += ["--max-steps", "5", "--workers", "2", "--executor", executor]
    args += ["--attempts", "2", "--repro-tests", "0", "--test-cmd", TEST_CMD]
    args += ["--no-early-stop"]  # both patches run, whichever the race put first
    with ScriptedServer(Attempts()) as server:
        result = run_cli([*args, "--base-url", server.base_url], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""

    preds = {p["instance_id"]: p for p in read_preds(outdir)}
    assert sorted(preds) == ["i-1", "i-2"]
    for key, pred in preds.items():
        assert "+    return a + b" in pred["model_patch"], key  # the right fix, both times
        folder = outdir / key
        selection = read_json(folder / "selection.json")
        doc = read_json(folder / "result.json")
        assert doc["selection"] == selection and doc["selection_file"] == str(
            folder / "selection.json"
        )
        assert doc["prediction"] == pred and (folder / "patch.diff").read_text() == doc["patch"]
        assert selection["attempts"] == 2 and len(selection["rollouts"]) == 2
        assert selection["instance_id"] == key  # the cascade's record of the instance
        chosen = next(r for r in selection["rollouts"] if r["selected"])
        assert doc["trajectory"] == chosen["trajectory"]
        for rollout in selection["rollouts"]:  # every rollout's trajectory is kept
            assert Path(rollout["trajectory"]).parent == folder
            assert read_json(Path(rollout["trajectory"]))["config"]
        log = (folder / "stderr.log").read_text()
        assert "selected" in log and f"records in {folder}\n" in log

    tested = read_json(outdir / "i-1" / "selection.json")
    checks = [r["checks"] for r in tested["rollouts"]]
    assert sorted((c["status"], c["passed"], c["total"]) for c in checks) == [
        ("ran", 0, 1), ("ran", 1, 1)
    ]  # fmt: skip  # the tests decided between two patches
    assert tested["chosen"]["decided_by"] == "tests passed"
    assert tested["stages"]["execute"]["runtimes"] == 1
    assert "attempt" in tested["reason"] and tested["cost"]["test_runs"] == 3  # base + 2
    alone = read_json(outdir / "i-2" / "selection.json")
    assert alone["chosen"]["decided_by"] == "only one"  # nothing to run tests for
    assert alone["stages"]["execute"]["why"] == "one group left: nothing to choose between"
    assert sorted(r["status"] for r in alone["rollouts"]) == ["limit", "submitted"]

    summary = read_json(outdir / "summary.json")
    assert (summary["finished"], summary["attempts"], summary["patches"]) == (2, 2, 2)
    assert os.listdir(env["TMPDIR"]) == []

    # Resumed: both instances finished, nothing solved or selected again.
    before = {key: (outdir / key / "selection.json").read_bytes() for key in PLAN}
    with ScriptedServer(Attempts()) as server:
        again = run_cli([*args, "--base-url", server.base_url], env)
        assert [r for r in server.requests if r.method == "POST"] == []
    assert again.returncode == 0, again.stderr
    assert "2 already finished, 0 to run" in again.stderr
    assert {key: (outdir / key / "selection.json").read_bytes() for key in PLAN} == before


@pytest.mark.parametrize(
    "executor",
    ["thread", pytest.param("ray", marks=pytest.mark.skipif(not RAY, reason="no Ray"))],
)
def test_the_selections_loud_warnings_reach_stderr_and_the_summary(
    executor, buggy_repo, env, tmp_path
):
    """A test command failing on the base: the selection warns (what decided instead).
    **Was**: written only to the instance's stderr.log; now on the batch's stderr too, even
    with -q, and counted in summary.json."""
    issues = tmp_path / "issues"
    issues.mkdir()
    (issues / "i-1.md").write_text("[i-1] add() subtracts instead of adding.")
    outdir = tmp_path / "out"
    args = ["batch", str(issues), "-o", str(outdir), "--repo", str(buggy_repo), "--model", "m"]
    args += ["--max-steps", "5", "--executor", executor, "--attempts", "2"]
    args += ["--repro-tests", "0", "--test-cmd", "false", "-q"]
    with ScriptedServer(Attempts()) as server:
        result = run_cli([*args, "--base-url", server.base_url], env)
    assert result.returncode == 0, result.stderr
    said = "i-1: warning: selection: execute: the test command passes no test on the base"
    assert said in result.stderr
    assert "the selection of 1 instance(s) warned 1 time(s)" in result.stderr
    summary = read_json(outdir / "summary.json")
    assert summary["selection_warnings"] == {"total": 1, "by_instance": {"i-1": 1}}
    assert "warned" in summary["note"]


def test_attempts_at_temperature_zero_is_a_usage_error(buggy_repo, env, tmp_path):
    issues = tmp_path / "issues"
    issues.mkdir()
    (issues / "a.md").write_text("an issue")
    args = ["batch", str(issues), "-o", str(tmp_path / "o"), "--repo", str(buggy_repo)]
    result = run_cli([*args, "--model", "m", "--attempts", "3", "--temperature", "0"], env)
    assert result.returncode == 2 and "--temperature is 0" in result.stderr


def test_a_swebench_record_gives_attempts_its_test_command_and_nothing_it_grades_with():
    """What `--attempts`' execution gets of a record: its own test command, set-up and log
    parser (from the eval script, without the test names), never the tests or the patch."""
    from batch_support import swebench_records as sr

    from cwm_agent.batch.instances import from_records
    from cwm_agent.verification.testcmd import for_record

    (instance,) = from_records([("records.jsonl:1", sr.record(1))])
    facts = instance.facts
    assert facts["test_command"]["command"] == "python -m pytest -rA"
    assert facts["test_command"]["parser"] == "parse_log_pytest"
    assert "conda activate testbed" in facts["test_command"]["preamble"]
    text = json.dumps(facts)
    for secret in ("FAIL_TO_PASS", "PASS_TO_PASS", "test_patch", "eval_script", sr.TEST_FILE):
        assert secret not in text
    command = for_record(facts, None)
    assert command is not None and command.kind == "swebench"
    assert command.script([sr.TEST_FILE], "/l", "/r").endswith(
        f"{{ python -m pytest -rA {sr.TEST_FILE}\n}} >/l 2>&1"
    )
    # Its log parser reads a run without any grading field at hand.
    log = f"PASSED {sr.TEST_FILE}::test_bump_patch\nFAILED {sr.TEST_FILE}::test_bump_major\n"
    assert command.results(log, None, facts) == {
        f"{sr.TEST_FILE}::test_bump_patch": "passed",
        f"{sr.TEST_FILE}::test_bump_major": "failed",
    }
