"""`--attempts K` end to end: real rollouts, runtimes and tests; the model scripted over HTTP.

K=4 samples: two right fixes (the same change, spelled `a + b` and `a+b`), one wrong fix
(`a * b`) and one that never submits; four reproduction rollouts submit their test files:
two distinct good tests (one of them twice, restyled: one script by normalized text) and
a bogus test that prints "Issue resolved" on the base. The repository's suite has one
test that fails on the base (the issue's) and one that passes there. The selection is the
verification cascade, its execution in one warm runtime.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import cwm, git, run_cli

from cwm_agent.errors import ModelError, UsageError
from cwm_agent.scaling.attempts import run_with_attempts
from cwm_agent.scripted_server import ScriptedServer
from cwm_agent.settings import AgentConfig, ModelSettings, RunSettings, ScalingSettings

VENV_BIN = str(Path(sys.executable).parent)  # `python3` with pytest, for the tests' commands
TEST_CMD = "python3 -m pytest -q -p no:cacheprovider tests"
SCALE_TEST = (
    "from mathlib.ops import scale\n\n\ndef test_scale():\n    assert scale([1], 2) == [2]\n"
)


def reply(content: str, tokens: int) -> dict:
    usage = {"prompt_tokens": 100, "completion_tokens": tokens, "total_tokens": 100 + tokens}
    return {"content": content, "usage": usage}


def fix_script(name: str, new_line: str, tokens: int) -> list[dict]:
    edit = f"mathlib/ops.py\n<<<<<<< SEARCH\n    return a - b\n=======\n{new_line}\n>>>>>>> REPLACE"
    steps = [
        cwm("edit", edit, f"[script:{name}] add() is wrong."),
        cwm("bash", "git diff > fix.patch"),
        cwm("submit", "fix.patch"),
        "<think>\nDone.\n</think>\n## Issue Summary\nFixed add().",
    ]
    return [reply(step, tokens) for step in steps]


def repro_script(name: str, code: str) -> list[dict]:
    steps = [
        cwm("create", "test_issue.py\n" + code, f"[script:{name}] A script for the issue."),
        cwm("bash", "python3 test_issue.py"),
        cwm("submit", "test_issue.py"),
        "<think>\nDone.\n</think>\nThe script checks add().",
    ]
    return [reply(step, 7) for step in steps]


GOOD = """from mathlib.ops import add
print("Issue resolved" if add(2, 3) == 5 else "Issue reproduced")
"""
GOOD_RESTYLED = '''"""Reproduce the issue: add() subtracts."""
from mathlib.ops import add  # the function under test

print('Issue resolved' if add(2, 3)==5 else 'Issue reproduced')
'''
GOOD_TOO = """from mathlib.ops import add

if add(1, 1) == 2:
    print('Issue resolved')
else:
    print('Issue reproduced')
"""
BOGUS = 'print("Issue resolved" if True else "Issue reproduced")\n'
FIXES = {
    "right-spaced": fix_script("right-spaced", "    return a + b", 20),
    "right-tight": fix_script("right-tight", "    return a+b", 10),
    "wrong": fix_script("wrong", "    return a * b", 5),
    "nothing": [reply("[script:nothing] I cannot fix this.", 3), reply("No.", 3)],
}
TESTS = {
    "t1": repro_script("t1", GOOD),
    "t2": repro_script("t2", GOOD_TOO),
    "t3": repro_script("t3", GOOD_RESTYLED),  # t1 again, restyled: one group of two, run once
    "t4": repro_script("t4", BOGUS),
}


class Conversations:
    """Each new conversation takes the next script of its kind; later turns continue it."""

    def __init__(self) -> None:
        self.waiting = {"fix": list(FIXES), "repro": list(TESTS)}
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> dict | None:
        messages = body["messages"]
        kind = "repro" if "Issue reproduced" in messages[1]["content"] else "fix"
        said = [m for m in messages if m["role"] == "assistant"]
        if not said:
            with self.lock:
                name = self.waiting[kind].pop(0)
        else:
            name = re.search(r"\[script:([\w-]+)\]", json.dumps(said[0])).group(1)
        script = {**FIXES, **TESTS}[name]
        return script[len(said)] if len(said) < len(script) else None


@pytest.fixture
def python_path(monkeypatch):
    monkeypatch.setenv("PATH", VENV_BIN + os.pathsep + os.environ["PATH"])


@pytest.fixture
def repo(buggy_repo):
    """buggy_repo plus a test that passes on the base (test_add fails there: the issue)."""
    (buggy_repo / "tests" / "test_scale.py").write_text(SCALE_TEST)
    git(buggy_repo, "add", "-A")
    git(buggy_repo, "commit", "-q", "-m", "a test of scale")
    return buggy_repo


def settings_for(server: ScriptedServer, repo: Path, tmp_path: Path, **scaling: Any) -> RunSettings:
    return RunSettings(
        repo=repo,
        model=ModelSettings("m", server.base_url, max_retries=0),
        agent=AgentConfig(max_steps=8, max_format_errors=2, timeout=60),
        scaling=ScalingSettings(**scaling),
        traj_path=tmp_path / "runs" / "run.json",
    )


def scripts_of(test_row: dict) -> str:
    """The scripted conversation a reproduction rollout followed."""
    text = Path(test_row["trajectory"]).read_text()
    return re.search(r"\[script:([\w-]+)\]", text).group(1)


def runs_of(selection: dict, group: str, check: str | None = None) -> list[dict]:
    runs = selection["stages"]["execute"]["runs"]
    return [r for r in runs if r["group"] == group and check in (None, r["check"])]


def test_the_right_fix_is_selected_and_each_check_runs_once_per_change(
    repo, tmp_path, python_path, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with ScriptedServer(Conversations()) as server:
        settings = settings_for(
            server, repo, tmp_path, attempts=4, test_cmd=TEST_CMD, early_stop=False
        )
        outcome = run_with_attempts(settings, "add() subtracts")
    sel = outcome.selection
    result = outcome.result
    assert result.exit_code == 0 and "+    return a+b" in result.patch  # fewer tokens than a + b
    rows = sel["rollouts"]
    assert sorted(r["status"] for r in rows) == [
        "format_errors", "submitted", "submitted", "submitted"
    ]  # fmt: skip
    right = next(r for r in rows if r["selected"])
    wrong = next(r for r in rows if r["votes"] == 1)
    assert right["votes"] == 2 and right["tokens"] == 4 * 110
    # The checks: the one existing test that passes on the base, two reproducing scripts.
    assert right["checks"] == {
        "status": "ran", "passed": 3, "total": 3, "regressions": [], "reason": ""
    }  # fmt: skip
    assert (wrong["checks"]["passed"], wrong["checks"]["total"]) == (1, 3)
    groups = {g["key"]: g for g in sel["groups"]}
    assert groups[wrong["group"]]["execute"]["existing_passed"] == 1
    assert groups[wrong["group"]]["execute"]["repro_passed"] == 0
    assert sel["chosen"]["decided_by"] == "tests passed"
    assert sel["reason"] == (
        f"attempt {right['attempt']} selected by tests passed: passes 3 of 3 checks; the "
        "next best passes 1 (2 of 4 attempts produced this change)."
    )
    assert result.reason == sel["reason"] and sel["selected"]["attempt"] == right["attempt"]
    assert sel["order"].startswith("tests passed, then reward score, then votes, then tokens")
    execute = sel["stages"]["execute"]
    assert (execute["test_command"], execute["base_passing"]) == (TEST_CMD, 1)
    (base_tests,) = runs_of(sel, "base", "existing")
    assert base_tests["tests"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 0}
    assert execute["reset"] == "verified" and execute["runtimes"] == 1
    # Reproduction tests: submitted as files; t1 and its restyled copy t3 are one script
    # (two votes); the bogus one prints "Issue resolved" on the base and does not count.
    tests = sel["reproduction_tests"]
    assert all(t["path"] == "test_issue.py" and t["normalized"] == "ast" for t in tests)
    pair = [t for t in tests if scripts_of(t) in ("t1", "t3")]
    assert len({t["test_hash"] for t in pair}) == 1  # different text, one program
    bogus = next(t for t in tests if scripts_of(t) == "t4")
    assert (bogus["base_outcome"], bogus["counted"]) == ("resolved", False)
    assert all(t["base_outcome"] == "reproduced" and t["counted"] for t in tests if t != bogus)
    # most votes first; among single votes, sample order (which sample wrote which: a race)
    assert sorted(((s["votes"], s["counted"]) for s in execute["scripts"]), reverse=True) == [
        (2, True), (1, True), (1, False)
    ]  # fmt: skip
    # On the base: the tests and each script once; each change: applied, then each check
    # that counts once (the twin patches are one group, run once).
    assert len(runs_of(sel, "base")) == 1 + 3
    for group in (right["group"], wrong["group"]):
        checks = [r["check"] for r in runs_of(sel, group)]
        assert checks[:2] == ["apply", "existing"] and len(set(checks)) == len(checks) == 4
    assert execute["cost"]["test_runs"] == 4 + 2 * 3
    # Records: every rollout's trajectory and selection.json next to them.
    folder = tmp_path / "runs" / "run"
    assert outcome.path == folder / "selection.json"
    assert json.loads(outcome.path.read_text())["reason"] == sel["reason"]
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"attempt-{i}.json" for i in range(1, 5)] + [
        f"repro-{i}.json" for i in range(1, 5)
    ] + ["selection.json"]  # fmt: skip


@pytest.mark.parametrize("command", ["best-of", "run"])
def test_cli_with_early_stop(command, repo, cli_env, tmp_path):
    cli_env["PATH"] = VENV_BIN + os.pathsep + cli_env["PATH"]
    folder = tmp_path / "records"
    with ScriptedServer(Conversations()) as server:
        args = [command, str(repo), "--issue", "add() subtracts", "--model", "m"]
        args += ["--base-url", server.base_url, "--max-steps", "8", "--max-format-errors", "2"]
        args += ["--early-stop", "--json"]
        if command == "run":  # --traj run.json: the records go to the folder run/
            args += ["--attempts", "4", "--traj", str(folder) + ".json"]
        else:
            args += ["--traj-dir", str(folder)]
        result = run_cli(args, cli_env)  # the default: pytest on the impacted test files
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    sel = doc["selection"]
    assert doc["status"] == "submitted" and "+    return a+b" in doc["patch"]
    execute = sel["stages"]["execute"]
    assert execute["test_command"] == "python3 -m pytest -q -p no:cacheprovider -rA"
    assert sorted(execute["tests"]) == ["tests/test_ops.py", "tests/test_scale.py"]
    assert execute["base_passing"] == 1 and execute["early_stopped"] is True
    wrong = next(r for r in sel["rollouts"] if r["votes"] == 1)
    assert wrong["checks"]["status"] == "not_run"
    assert wrong["checks"]["reason"].startswith("early stop: ")
    assert runs_of(sel, wrong["group"]) == []
    assert len(runs_of(sel, "base")) == 3 + 1  # the tests, each script
    assert doc["selection_file"] == str(folder / "selection.json")
    assert "<- selected" in result.stderr  # the rollouts table
    assert "not_run (early stop)" in result.stderr


def test_every_attempt_failing_raises_the_model_error(buggy_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    refuse = {"status": 400, "body": {"error": {"message": "bad model"}}}
    with ScriptedServer(lambda body: refuse) as server:
        with pytest.raises(ModelError):
            settings = settings_for(server, buggy_repo, tmp_path, attempts=2, repro_tests=0)
            run_with_attempts(settings, "x")
    selection = json.loads((tmp_path / "runs" / "run" / "selection.json").read_text())
    assert selection["selected"] is None and selection["chosen"] is None
    assert [r["exit_code"] for r in selection["rollouts"]] == [3, 3]
    assert selection["reason"] == "none of the 2 attempts produced a valid patch."


def test_attempts_need_sampling(buggy_repo, tmp_path):
    settings = RunSettings(
        repo=buggy_repo,
        model=ModelSettings("m", temperature=0.0),
        scaling=ScalingSettings(attempts=3),
    )
    with pytest.raises(UsageError, match="--temperature is 0"):
        run_with_attempts(settings, "x")


def test_a_scaled_run_over_completions_sends_no_chat_request(buggy_repo, cli_env):
    """Fix and reproduction rollouts both use --api completions (they once drifted apart)."""
    reply = {"text": "I am not sure what to do.\n</think>\nNo tool call here."}
    with ScriptedServer(lambda body: reply) as server:
        args = ["run", str(buggy_repo), "--issue", "add() subtracts", "--model", "m"]
        args += ["--base-url", server.base_url, "--api", "completions", "--attempts", "2"]
        args += ["--repro-tests", "2", "--max-format-errors", "1", "--test-cmd", ""]
        result = run_cli(args, cli_env)
    assert result.returncode == 1, result.stderr  # no attempt produced a patch
    posts = [r for r in server.requests if r.method == "POST"]
    assert {r.path for r in posts} == {"/v1/completions"}
    prompts = [r.body["prompt"] for r in posts]
    repro = [p for p in prompts if "Issue reproduced" in p]
    assert len(repro) == 2 and len(prompts) - len(repro) == 2  # 2 fix + 2 test rollouts


def test_ctrl_c_during_best_of_finishes_every_rollout_and_leaves_nothing(
    buggy_repo, cli_env, tmp_path
):
    """Rollouts inside a long command stop at once and close their runtimes: every
    trajectory says interrupted (they stayed `running`, or ended `crashed` when the exit
    closed their runtimes under them), no false warning, no temporary folder left."""
    import signal
    import subprocess
    import time

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**cli_env, "TMPDIR": str(tmp)}
    traj_dir = tmp_path / "rollouts"
    with ScriptedServer(lambda body: cwm("bash", "sleep 60; echo done")) as server:
        args = [sys.executable, "-m", "cwm_agent", "best-of", str(buggy_repo), "--issue", "x"]
        args += ["--model", "m", "--base-url", server.base_url, "--attempts", "2"]
        args += ["--traj-dir", str(traj_dir)]
        proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(server.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # both fix rollouts are inside `sleep 60`
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - started < 8
    for bad in ("session is closed", "check that git works", "crashed", "Traceback"):
        assert bad not in stderr
    records = [json.loads(p.read_text()) for p in traj_dir.glob("*-*.json")]
    assert len(records) >= 2
    assert {r["exit_status"] for r in records} == {"interrupted"}
    assert os.listdir(tmp) == []


def test_ctrl_c_during_verification_ends_the_run_and_leaves_nothing(repo, cli_env, tmp_path):
    """Ctrl-C while the warm runtime runs the tests: exit 130 at once, the rollouts'
    trajectories as they ended, no runtime or temporary folder left behind."""
    import signal
    import subprocess
    import time

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**cli_env, "TMPDIR": str(tmp)}
    traj_dir = tmp_path / "rollouts"
    plan = Conversations()
    plan.waiting["fix"] = ["right-spaced", "wrong"]
    with ScriptedServer(plan) as server:
        args = [sys.executable, "-m", "cwm_agent", "best-of", str(repo), "--issue", "x"]
        args += ["--model", "m", "--base-url", server.base_url, "--attempts", "2"]
        args += ["--repro-tests", "0", "--test-cmd", "sleep 60", "--traj-dir", str(traj_dir)]
        proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # the stage has started: its base run sleeps
            seen.append(line)
            if "verifying the patches" in line:
                break
        time.sleep(1.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    stderr = "".join(seen) + rest
    assert proc.returncode == 130, stderr
    assert time.monotonic() - started < 8
    assert "Traceback" not in stderr
    records = [json.loads(p.read_text()) for p in traj_dir.glob("attempt-*.json")]
    assert {r["exit_status"] for r in records} == {"submitted"}  # they had ended
    assert not (traj_dir / "selection.json").exists()  # no choice was made
    assert os.listdir(tmp) == []
