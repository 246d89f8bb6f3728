"""`cwm-agent run` end to end: the real CLI, real git repos, the model scripted over HTTP."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import SECRET_KEY, cwm, git, run_cli, snapshot

from cwm_agent.scripted_server import ScriptedServer

FIX_EDIT = (
    "mathlib/ops.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE"
)


FIXING_SCRIPT = [
    cwm("bash", "cat -n mathlib/ops.py", "Let me read the module first."),
    cwm("edit", FIX_EDIT, "add() subtracts; fix it."),
    cwm("bash", "python3 -c 'from mathlib.ops import add; assert add(2, 3) == 5' && echo ok"),
    cwm("bash", "git diff > fix.patch"),
    cwm("submit", "fix.patch"),
    "<think>\nDone.\n</think>\n## Issue Summary\nadd() subtracted.",
]


def run_agent(server: ScriptedServer, repo: Path, env: dict, *extra: str, issue="add() is wrong"):
    args = ["run", str(repo), "--issue", issue, "--base-url", server.base_url, "--model", "m"]
    return run_cli([*args, *extra], env)


def assert_fixes(patch: str, repo: Path, tmp_path: Path) -> None:
    """The patch applies to a pristine clone and the bug is gone there."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    subprocess.run(["git", "apply", "-"], cwd=clone, input=patch, text=True, check=True)
    check = subprocess.run(
        ["python3", "-c", "from mathlib.ops import add; assert add(2, 3) == 5"], cwd=clone
    )
    assert check.returncode == 0
    assert "fix.patch" not in patch


def test_fixes_bug_and_prints_only_the_patch(buggy_repo, cli_env, tmp_path):
    before = snapshot(buggy_repo)
    traj = tmp_path / "traj.json"
    with ScriptedServer(FIXING_SCRIPT) as server:
        result = run_agent(server, buggy_repo, cli_env, "--traj", str(traj))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("diff --git a/mathlib/ops.py b/mathlib/ops.py")
    assert_fixes(result.stdout, buggy_repo, tmp_path)
    assert snapshot(buggy_repo) == before
    data = json.loads(traj.read_text())
    assert data["exit_status"] == "submitted" and data["exit_code"] == 0
    assert data["patch"] == result.stdout
    assert [s["action"]["tool"] for s in data["steps"][:5]] == [
        "bash", "edit", "bash", "bash", "submit",
    ]  # fmt: skip
    assert data["usage"]["total_tokens"] > 0
    for text in (result.stdout, result.stderr, traj.read_text()):
        assert SECRET_KEY not in text
    # What reached the server: auth from the env, the tool result in CWM's shape.
    first = server.requests[0]
    assert first["headers"].get("authorization") == f"Bearer {SECRET_KEY}"
    tool_msg = server.requests[1]["body"]["messages"][3]
    assert tool_msg["role"] == "tool"
    assert tool_msg["content"].startswith("<output>\n")
    assert "<budget>\n* Remaining turns: 127\n" in tool_msg["content"]


def test_openai_tool_format(buggy_repo, cli_env, tmp_path):
    script = [
        {"tool_calls": [{"name": "bash", "arguments": {"command": "cat mathlib/ops.py"}}]},
        {
            "tool_calls": [
                {
                    "name": "edit",
                    "arguments": {
                        "path": "mathlib/ops.py",
                        "search": "    return a - b",
                        "replace": "    return a + b",
                    },
                }
            ]
        },
        {"tool_calls": [{"name": "submit", "arguments": {}}]},
        {"content": "Fixed add()."},
    ]
    with ScriptedServer(script) as server:
        result = run_agent(server, buggy_repo, cli_env, "--tool-format", "openai")
    assert result.returncode == 0, result.stderr
    assert_fixes(result.stdout, buggy_repo, tmp_path)
    body = server.requests[1]["body"]
    assert [t["function"]["name"] for t in body["tools"]] == ["bash", "edit", "create", "submit"]
    tool_msg = body["messages"][-1]
    assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"]


def test_malformed_replies_are_survived(buggy_repo, cli_env, tmp_path):
    script = [
        "I think the bug is in add.",  # no tool call at all
        cwm("bash", "ls") + "\n" + cwm("bash", "pwd"),  # two calls
        "<think>a</think><think>b</think>",  # two </think>
        cwm("frobnicate", "x"),  # unknown tool
        *FIXING_SCRIPT,
    ]
    with ScriptedServer(script) as server:
        result = run_agent(server, buggy_repo, cli_env)
    assert result.returncode == 0, result.stderr
    assert_fixes(result.stdout, buggy_repo, tmp_path)
    feedback = [m for m in server.requests[4]["body"]["messages"] if m["role"] == "user"][1:]
    assert len(feedback) == 4
    assert all(m["content"].startswith("FormatError:") for m in feedback)


def test_too_many_format_errors_end_the_run(buggy_repo, cli_env):
    with ScriptedServer(["no tool here"] * 3) as server:
        result = run_agent(server, buggy_repo, cli_env, "--max-format-errors", "3")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "format errors in a row" in result.stderr


def test_hanging_command_is_killed_at_timeout(buggy_repo, cli_env):
    script = [cwm("bash", "sleep 1000"), cwm("bash", "pwd"), *FIXING_SCRIPT]
    with ScriptedServer(script) as server:
        result = run_agent(server, buggy_repo, cli_env, "--timeout", "1")
    assert result.returncode == 0, result.stderr
    observation = server.requests[1]["body"]["messages"][-1]["content"]
    assert "did not finish within 1 seconds and was killed" in observation
    pwd_output = server.requests[2]["body"]["messages"][-1]["content"]
    assert "cwm-agent-" in pwd_output  # the session restarted in the private copy's root


def test_step_limit_without_submission_keeps_the_diff(buggy_repo, cli_env, tmp_path):
    script = [cwm("edit", FIX_EDIT), cwm("bash", "true")]
    traj = tmp_path / "t.json"
    with ScriptedServer(script) as server:
        result = run_agent(server, buggy_repo, cli_env, "--max-steps", "2", "--traj", str(traj))
    assert result.returncode == 1
    assert result.stdout == ""
    data = json.loads(traj.read_text())
    assert data["exit_status"] == "limit"
    assert "+    return a + b" in data["working_tree_diff"]


def test_submit_on_limit_emits_the_working_tree_diff(buggy_repo, cli_env, tmp_path):
    script = [cwm("edit", FIX_EDIT), cwm("bash", "true")]
    with ScriptedServer(script) as server:
        result = run_agent(server, buggy_repo, cli_env, "--max-steps", "2", "--submit-on-limit")
    assert result.returncode == 0, result.stderr
    assert_fixes(result.stdout, buggy_repo, tmp_path)


def test_model_failure_exits_3_with_trajectory(buggy_repo, cli_env, tmp_path):
    traj = tmp_path / "t.json"
    script = [cwm("bash", "ls")] + [{"status": 500, "body": {"error": {"message": "boom"}}}] * 8
    with ScriptedServer(script) as server:
        result = run_agent(server, buggy_repo, cli_env, "--traj", str(traj))
    assert result.returncode == 3, result.stderr
    assert "Error:" in result.stderr and "500" in result.stderr
    assert json.loads(traj.read_text())["exit_code"] == 3


def test_json_document(buggy_repo, cli_env):
    with ScriptedServer(FIXING_SCRIPT) as server:
        result = run_agent(server, buggy_repo, cli_env, "--json")
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    assert doc["status"] == "submitted" and doc["patch"].startswith("diff --git")
    assert Path(doc["trajectory"]).is_file()


def test_apply_writes_the_users_repo(buggy_repo, cli_env):
    with ScriptedServer(FIXING_SCRIPT) as server:
        result = run_agent(server, buggy_repo, cli_env, "--apply")
    assert result.returncode == 0
    assert "return a + b" in (buggy_repo / "mathlib" / "ops.py").read_text()


def test_uncommitted_state_is_the_base(buggy_repo, cli_env, tmp_path):
    """The patch applies to the user's working tree as it is, uncommitted edits included."""
    ops = buggy_repo / "mathlib" / "ops.py"
    ops.write_text(ops.read_text() + "\n\ndef double(x):\n    return 2 * x\n")
    (buggy_repo / "notes.txt").write_text("untracked\n")
    with ScriptedServer(FIXING_SCRIPT) as server:
        result = run_agent(server, buggy_repo, cli_env)
    assert result.returncode == 0, result.stderr
    check = subprocess.run(
        ["git", "apply", "--check", "-"], cwd=buggy_repo, input=result.stdout, text=True
    )
    assert check.returncode == 0
    assert git(buggy_repo, "status", "--porcelain").splitlines() == [
        " M mathlib/ops.py",
        "?? notes.txt",
    ]


def test_usage_errors_exit_2(buggy_repo, cli_env):
    no_issue = run_cli(["run", str(buggy_repo), "--model", "m"], cli_env)
    assert no_issue.returncode == 2 and "issue" in no_issue.stderr
    no_model = run_cli(["run", str(buggy_repo), "--issue", "x"], cli_env)
    assert no_model.returncode == 2 and "--model" in no_model.stderr


def test_issue_from_stdin(buggy_repo, cli_env):
    with ScriptedServer(FIXING_SCRIPT) as server:
        args = ["run", str(buggy_repo), "--base-url", server.base_url, "--model", "m"]
        result = run_cli(args, cli_env, stdin="add() returns a - b")
    assert result.returncode == 0, result.stderr
    user = server.requests[0]["body"]["messages"][1]["content"]
    assert "<issue_description>\nadd() returns a - b\n</issue_description>" in user


def test_replay_reproduces_the_patch_without_a_model(buggy_repo, cli_env, tmp_path):
    traj = tmp_path / "t.json"
    with ScriptedServer(FIXING_SCRIPT) as server:
        result = run_agent(server, buggy_repo, cli_env, "--traj", str(traj))
    assert result.returncode == 0
    replayed = run_cli(["replay", str(traj)], cli_env)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == result.stdout
    assert "the same patch as recorded" in replayed.stderr
    # A different repository state gives a different patch, and replay says so.
    (buggy_repo / "mathlib" / "ops.py").write_text("def add(a, b):\n    return a - b\n")
    differs = run_cli(["replay", str(traj)], cli_env)
    assert differs.returncode == 1
    assert "DIFFERENT" in differs.stderr


def test_validate_command(buggy_repo, cli_env, tmp_path):
    good = tmp_path / "good.patch"
    with ScriptedServer(FIXING_SCRIPT) as server:
        good.write_text(run_agent(server, buggy_repo, cli_env).stdout)
    ok = run_cli(["validate", str(good), "--repo", str(buggy_repo)], cli_env)
    assert ok.returncode == 0 and "valid patch" in ok.stderr
    chatty = tmp_path / "chatty.patch"
    chatty.write_text("Here is the fix:\n" + good.read_text())
    bad = run_cli(["validate", str(chatty), "--repo", str(buggy_repo)], cli_env)
    assert bad.returncode == 1
    assert "Error:" in bad.stderr and "not part of a diff" in bad.stderr


def test_json_with_output_writes_the_document_to_stdout_and_the_patch_to_the_file(
    buggy_repo, cli_env, tmp_path
):
    patch_file = tmp_path / "fix.diff"
    with ScriptedServer(FIXING_SCRIPT) as server:
        result = run_agent(server, buggy_repo, cli_env, "--json", "-o", str(patch_file))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert patch_file.read_text() == doc["patch"] and doc["patch"].startswith("diff --git")
