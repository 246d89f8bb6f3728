"""`--attempts K` end to end: real rollouts, runtimes and tests; the model scripted over HTTP.

K=4 samples: two right fixes (the same change, spelled `a + b` and `a+b`), one wrong fix
(`a * b`) and one that never submits; four reproduction rollouts submit their test files:
two distinct good tests (one of them twice, restyled: one group by normalized text) and
a bogus test that prints "Issue resolved" on the base. The repository's suite has one
test that fails on the base (the issue's) and one that passes there.
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


def runs_of(selection: dict, candidate: str, test: str) -> list[dict]:
    return [r for r in selection["test_runs"] if r["candidate"] == candidate and r["test"] == test]


def test_the_right_fix_is_selected_and_identical_patches_run_once(
    repo, tmp_path, python_path, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with ScriptedServer(Conversations()) as server:
        settings = settings_for(server, repo, tmp_path, attempts=4, test_cmd=TEST_CMD)
        outcome = run_with_attempts(settings, "add() subtracts")
    sel = outcome.selection
    result = outcome.result
    assert result.exit_code == 0 and "+    return a+b" in result.patch  # fewer tokens than a + b
    by_status = sorted(c["status"] for c in sel["candidates"])
    assert by_status == ["format_errors", "submitted", "submitted", "submitted"]
    right = next(c for c in sel["candidates"] if c["selected"])
    wrong = next(c for c in sel["candidates"] if c["votes"] == 1)
    assert right["votes"] == 2 and right["tokens"] == 4 * 110
    # The score counts tests: the one existing test that passes on the base, two kept tests.
    assert (right["tests_passed"], right["tests_total"], right["rank"]) == (3, 3, 1)
    assert (wrong["tests_passed"], wrong["tests_total"], wrong["rank"]) == (1, 3, 2)
    assert right["existing_tests"] == {
        "mode": "per_test", "passed": 1, "total": 1, "skipped": False, "regressions": [],
        "note": "",
    }  # fmt: skip
    assert wrong["existing_tests"]["passed"] == 1 and wrong["repro_passed"] == 0
    assert set(right["repro_verdicts"].values()) == {"resolved"}
    assert set(wrong["repro_verdicts"].values()) == {"reproduced"}
    assert wrong["standing"] == "fewer tests passed (1 of 3; the winner 3)"
    twin = next(c for c in sel["candidates"] if c["votes"] == 2 and not c["selected"])
    assert (
        twin["standing"] == f"the selected patch, emitted from attempt {right['attempt']} "
        "(fewest tokens)"
    )
    assert sel["reason"].startswith(f"attempt {right['attempt']} selected: it passes 3 of 3")
    assert "1 of the 1 existing tests that pass on the base" in sel["reason"]
    assert "the most of any patch (runner-up" in sel["reason"]
    assert "2 of 4 attempts produced this patch" in sel["reason"]
    assert result.reason == sel["reason"]
    existing = sel["existing_tests"]
    assert (existing["mode"], existing["counted"], existing["command"]) == ("per_test", 1, TEST_CMD)
    assert existing["base"]["tests"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 0}
    # Reproduction tests: submitted as files; t1 and its restyled copy t3 are one group;
    # the bogus one is dropped on the base.
    rows = sel["reproduction_tests"]
    assert all(t["path"] == "test_issue.py" and t["normalized"] == "ast" for t in rows)
    kept = [t for t in rows if t["kept"]]
    assert len(kept) == 3 and {t["rank"] for t in kept} == {1, 2}
    assert [(k["size"], k["rank"]) for k in sel["kept_tests"]] == [(2, 1), (1, 2)]
    pair = [t for t in rows if t["group_size"] == 2]
    assert len(pair) == 2 and pair[0]["test_hash"] == pair[1]["test_hash"]
    assert {scripts_of(t) for t in pair} == {"t1", "t3"}  # different text, one program
    bogus = next(t for t in rows if not t["kept"])
    assert scripts_of(bogus) == "t4" and bogus["base_outcome"] == "resolved"
    assert sel["cache_hits"] >= 1
    base = [r for r in sel["test_runs"] if r["candidate"] == "base"]
    assert sorted(r["outcome"] for r in base) == ["failed", "reproduced", "reproduced", "resolved"]
    # Each distinct patch ran each check exactly once: 4 on the base + 2 x (2 + 1).
    assert sel["executions"] == len(sel["test_runs"]) == 10
    for test in {r["test"] for r in sel["test_runs"] if r["candidate"] != "base"}:
        assert len(runs_of(sel, right["patch_hash"], test)) == 1
    wrong_run = runs_of(sel, wrong["patch_hash"], "existing")[0]
    assert wrong_run["outcome"] == "failed" and wrong_run["tests"]["passed"] == 1
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
        result = run_cli(args, cli_env)  # the default test command: the repo has tests/
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    sel = doc["selection"]
    assert doc["status"] == "submitted" and "+    return a+b" in doc["patch"]
    assert sel["test_cmd"] == "python3 -m pytest -q -p no:cacheprovider"
    assert sel["test_cmd_source"] == "default" and sel["existing_tests"]["counted"] == 1
    assert sel["early_stopped"] is True
    assert "stopped early" in sel["reason"]
    wrong = next(c for c in sel["candidates"] if c["votes"] == 1)
    assert wrong["existing_tests"]["skipped"] is True
    assert runs_of(sel, wrong["patch_hash"], "existing") == []
    assert sel["executions"] == 9  # 3 + 1 on the base, 2 + 1 for the winner, 2 for the other
    assert doc["selection_file"] == str(folder / "selection.json")
    assert "<- selected" in result.stderr  # the candidates table
    assert "(existing tests skipped: early stop)" in result.stderr


def test_every_attempt_failing_raises_the_model_error(buggy_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    refuse = {"status": 400, "body": {"error": {"message": "bad model"}}}
    with ScriptedServer(lambda body: refuse) as server:
        with pytest.raises(ModelError):
            settings = settings_for(server, buggy_repo, tmp_path, attempts=2, repro_tests=0)
            run_with_attempts(settings, "x")
    selection = json.loads((tmp_path / "runs" / "run" / "selection.json").read_text())
    assert selection["selected"] is None
    assert [c["exit_code"] for c in selection["candidates"]] == [3, 3]


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
