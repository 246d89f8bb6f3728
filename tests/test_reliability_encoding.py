"""Text that is not clean UTF-8, end to end: server replies, issues, files, patches.

JSON ``\\ud800`` escapes in a reply decode to lone surrogates; bytes that are not
UTF-8 come from files and from the command line. None of it may crash a run, and
a patch must keep the file's bytes exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import cwm, git, run_cli

from cwm_agent.scripted_server import ScriptedServer


def test_lone_surrogates_in_the_servers_json_do_not_crash_the_run(buggy_repo, cli_env, tmp_path):
    traj = tmp_path / "t.json"
    reply = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "reasoning_content": "half a pair: \ud83d",
                    "content": "</think>\n<tool: bash>\necho caf\udce9 \ud800\n</tool>",
                },
            }
        ]
    }
    raw = {"raw": json.dumps(reply)}  # ensure_ascii: the surrogates travel as \\u escapes
    with ScriptedServer([raw, "no tool call", "no tool call"]) as server:
        args = ["run", str(buggy_repo), "--issue", "x", "--base-url", server.base_url]
        result = run_cli([*args, "--model", "m", "--traj", str(traj), "--max-format-errors", "2"],
                         cli_env)  # fmt: skip
        second = server.requests[1].body
    assert result.returncode == 1, result.stderr  # ended by the format errors, not a crash
    assert "Traceback" not in result.stderr
    data = json.loads(traj.read_text(encoding="utf-8"))
    assert data["steps"][0]["observation"]["output"] == "caf\ufffd \ufffd"
    assert second["messages"][2]["content"].endswith("\ufffd\n</tool>")


def test_issue_with_invalid_utf8_bytes(buggy_repo, cli_env, tmp_path):
    issue = os.fsdecode(b"add() is wrong \xff\xfe")  # how Python hands over such an argv
    with ScriptedServer(["no tool call"] * 2) as server:
        args = ["run", str(buggy_repo), "--issue", issue, "--base-url", server.base_url]
        result = run_cli([*args, "--model", "m", "--max-format-errors", "2"], cli_env)
    assert "Traceback" not in result.stderr
    assert result.returncode == 1


def test_patch_touching_a_latin1_file_keeps_its_bytes(tmp_path, cli_env):
    repo = tmp_path / "legacy"
    repo.mkdir()
    (repo / "names.txt").write_bytes(b"Jos\xe9\nMar\xeda\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "latin-1 data")
    script = [
        cwm(
            "bash", "printf 'Jos\\xe9\\nMar\\xeda\\nZo\\xeb\\n' > names.txt && git diff > fix.patch"
        ),
        cwm("submit", "fix.patch"),
        "Done.",
    ]
    with ScriptedServer(script) as server:
        args = ["run", str(repo), "--issue", "add Zoe", "--base-url", server.base_url]
        proc = subprocess.run(
            [sys.executable, "-m", "cwm_agent", *args, "--model", "m"],
            env=cli_env,
            capture_output=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    assert b"+Zo\xeb\n" in proc.stdout
    check = subprocess.run(["git", "apply", "--check", "-"], cwd=repo, input=proc.stdout)
    assert check.returncode == 0
