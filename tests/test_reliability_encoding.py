"""Text that is not clean UTF-8, end to end: server replies, issues, files, patches.

JSON ``\\ud800`` escapes in a reply decode to lone surrogates; bytes that are not
UTF-8 come from files and from the command line. None of it may crash a run, and
a patch must keep the file's bytes exactly.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys

import pytest
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
    assert data["steps"][0]["observation"]["output"] == "caf\ufffd \ufffd\n"  # as echo wrote it
    assert second["messages"][2]["content"].endswith("\ufffd\n</tool>")


def test_issue_with_invalid_utf8_bytes(buggy_repo, cli_env, tmp_path):
    issue = os.fsdecode(b"add() is wrong \xff\xfe")  # how Python hands over such an argv
    with ScriptedServer(["no tool call"] * 2) as server:
        args = ["run", str(buggy_repo), "--issue", issue, "--base-url", server.base_url]
        result = run_cli([*args, "--model", "m", "--max-format-errors", "2"], cli_env)
    assert "Traceback" not in result.stderr
    assert result.returncode == 1


LATIN1_BEFORE = b"Jos\xe9\nMar\xeda\n"
LATIN1_AFTER = b"Jos\xe9\nMar\xeda\nZo\xeb\n"


def latin1_repo(tmp_path):
    repo = tmp_path / "legacy"
    repo.mkdir()
    (repo / "names.txt").write_bytes(LATIN1_BEFORE)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "latin-1 data")
    return repo


def run_latin1(repo, cli_env, *extra):
    """A run whose patch adds a Latin-1 line to a Latin-1 file; stdout as bytes."""
    script = [
        cwm(
            "bash", "printf 'Jos\\xe9\\nMar\\xeda\\nZo\\xeb\\n' > names.txt && git diff > fix.patch"
        ),
        cwm("submit", "fix.patch"),
        "Done.",
    ]
    with ScriptedServer(script) as server:
        args = ["run", str(repo), "--issue", "add Zoe", "--base-url", server.base_url]
        return subprocess.run(
            [sys.executable, "-m", "cwm_agent", *args, "--model", "m", *extra],
            env=cli_env,
            capture_output=True,
            timeout=120,
        )


def test_patch_touching_a_latin1_file_keeps_its_bytes(tmp_path, cli_env):
    repo = latin1_repo(tmp_path)
    proc = run_latin1(repo, cli_env)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    assert b"+Zo\xeb\n" in proc.stdout
    check = subprocess.run(["git", "apply", "--check", "-"], cwd=repo, input=proc.stdout)
    assert check.returncode == 0


def test_apply_writes_the_latin1_bytes_exactly(tmp_path, cli_env):
    """Was: UnicodeEncodeError (a traceback, exit 1) after the patch was printed."""
    repo = latin1_repo(tmp_path)
    proc = run_latin1(repo, cli_env, "--apply")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    assert b"Traceback" not in proc.stderr
    assert (repo / "names.txt").read_bytes() == LATIN1_AFTER


def test_json_document_carries_the_exact_bytes_in_patch_base64(tmp_path, cli_env):
    """Was: the patch field held surrogate escapes (\\udce9): strict JSON readers refuse
    them, jq turns them into U+FFFD, and `jq -r .patch | git apply` failed. Now ``patch`` is
    valid Unicode (U+FFFD for the bytes that are not UTF-8) and ``patch_base64`` is exact."""
    repo = latin1_repo(tmp_path)
    proc = run_latin1(repo, cli_env, "--json")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    text = proc.stdout.decode("utf-8")  # strict: the document is UTF-8
    assert "\\ud" not in text  # no surrogate escape anywhere
    doc = json.loads(text)
    exact = base64.b64decode(doc["patch_base64"])
    assert b"+Zo\xeb\n" in exact and b" Jos\xe9\n" in exact
    assert doc["patch"] == exact.decode("utf-8", "replace") and "+Zo\ufffd\n" in doc["patch"]
    apply = subprocess.run(["git", "apply", "-"], cwd=repo, input=exact, capture_output=True)
    assert apply.returncode == 0, apply.stderr
    assert (repo / "names.txt").read_bytes() == LATIN1_AFTER


@pytest.mark.skipif(shutil.which("jq") is None, reason="the jq recipe needs jq")
def test_the_documented_jq_recipe_applies_the_patch(tmp_path, cli_env):
    repo = latin1_repo(tmp_path)
    proc = run_latin1(repo, cli_env, "--json")
    (tmp_path / "result.json").write_bytes(proc.stdout)
    recipe = f"jq -r .patch_base64 {tmp_path / 'result.json'} | base64 -d | git apply"
    subprocess.run(recipe, shell=True, cwd=repo, check=True)
    assert (repo / "names.txt").read_bytes() == LATIN1_AFTER


def test_a_utf8_patch_is_the_same_in_both_fields(buggy_repo, cli_env):
    fix = "mathlib/ops.py\n<<<<<<< SEARCH\n    return a - b\n=======\n"
    fix += "    return a + b  # é\n>>>>>>> REPLACE"
    script = [cwm("edit", fix), cwm("bash", "git diff > fix.patch"), cwm("submit", "fix.patch")]
    with ScriptedServer([*script, "Done."]) as server:
        args = ["run", str(buggy_repo), "--issue", "x", "--base-url", server.base_url]
        result = run_cli([*args, "--model", "m", "--json"], cli_env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert "+    return a + b  # é\n" in doc["patch"]
    assert base64.b64decode(doc["patch_base64"]) == doc["patch"].encode("utf-8")
