"""One large file (issue 21 item 10): what a patch may carry and what a trajectory keeps.

A command that writes a large file puts all of it into `git diff`. Measured before the
fix (scripted model, 10 MB file, submitted): peak memory 67 -> 196 MiB, a 21.7 MB
trajectory (the patch stored twice, rewritten after every step); the issue saw 2.1 GB and
549 MB for 200 MB. Now a patch over `--max-patch-kb` (1 MiB by default) is refused before
anything parses it, the model and the user are told which files make it large, and a
working-tree diff over the limit is written beside the trajectory, not into it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading

import pytest
from conftest import cwm, run_cli, snapshot, summary

from cwm_agent.scripted_server import ScriptedServer

MB = 1 << 20
BIG = 8 * MB
FIX = "mathlib/ops.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE"


def write_file(size: int) -> str:
    lines = size // 100
    return cwm("bash", f"python3 -c \"open('big.txt','w').write(('x'*99+'\\n')*{lines})\"")


def recovering_script(size: int) -> list:
    """Submits the big file, is refused (or not), leaves it out and submits the fix."""
    return [
        write_file(size),
        cwm("bash", "git add -A && git diff --cached > fix.patch"),
        cwm("submit", "fix.patch"),
        cwm("bash", "git rm -q --cached big.txt && rm big.txt fix.patch"),
        cwm("edit", FIX),
        cwm("bash", "git diff > fix.patch"),
        cwm("submit", "fix.patch"),
        summary(),
    ]


def run_measured(script: list, repo, env, *args: str) -> tuple[int, str, str, int]:
    """The real CLI; (exit code, stdout, stderr, its peak resident memory in bytes)."""
    with ScriptedServer(script) as server:
        argv = ["run", str(repo), "--issue", "x", "--base-url", server.base_url, "--model", "m"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "cwm_agent", *argv, *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out: dict[str, bytes] = {}
        reader = threading.Thread(target=lambda: out.update(stdout=proc.stdout.read()))
        reader.start()
        stderr = proc.stderr.read()
        reader.join()
        _, status, usage = os.wait4(proc.pid, 0)  # its own rusage: ru_maxrss in KiB
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out["stdout"].decode(), stderr.decode(), usage.ru_maxrss * 1024


def test_a_large_file_is_refused_in_a_submission_and_the_run_recovers(
    buggy_repo, cli_env, tmp_path
):
    before = snapshot(buggy_repo)
    small_traj, big_traj = tmp_path / "small.json", tmp_path / "big.json"
    code, _, stderr, small_peak = run_measured(
        recovering_script(1000), buggy_repo, cli_env, "--traj", str(small_traj)
    )
    assert code == 0, stderr
    code, stdout, stderr, big_peak = run_measured(
        recovering_script(BIG), buggy_repo, cli_env, "--traj", str(big_traj)
    )
    assert code == 0, stderr
    assert stdout.startswith("diff --git a/mathlib/ops.py") and "big.txt" not in stdout
    data = json.loads(big_traj.read_text())
    refused = data["steps"][2]["observation"]["output"]
    assert re.match(  # refused by the file's size: never read (it could be 50 GB)
        r"Submission rejected: the patch file fix\.patch is 8\.\d MiB, more than the 1\.0 MiB "
        r"a patch may hold \(--max-patch-kb 1024\) \(`git diff --stat` shows which files",
        refused,
    )
    assert "git rm --cached" in refused
    assert re.search(
        r"warning: a submission \(fix.patch\) was refused: the patch file fix.patch is 8\.\d MiB",
        stderr,
    )
    assert [s["path"] for s in data["submissions"]] == ["fix.patch"]  # the refused one: not kept
    assert big_traj.stat().st_size < MB  # was 16 MB and more: the patch kept twice
    assert big_peak - small_peak < 4 * BIG  # was more than 10 times the file
    assert snapshot(buggy_repo) == before


def huge_files_script(size: str) -> list:
    """Sparse files of ``size`` (no disk used): an edit of one and a submission of the other
    are refused, then the fix goes through."""
    return [
        cwm("bash", f"truncate -s {size} huge.bin && truncate -s {size} huge.patch"),
        cwm("edit", "huge.bin\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE"),
        cwm("submit", "huge.patch"),
        cwm("bash", "rm huge.bin huge.patch"),
        cwm("edit", FIX),
        cwm("bash", "git diff > fix.patch"),
        cwm("submit", "fix.patch"),
        summary(),
    ]


def test_a_huge_file_is_refused_by_its_size_before_it_is_read(buggy_repo, cli_env, tmp_path):
    """`truncate -s 256M x; submit x` (and an edit of such a file) is refused by the file's
    size: the harness never reads it, its memory stays where a small file leaves it."""
    code, _, stderr, small_peak = run_measured(
        huge_files_script("1K"), buggy_repo, cli_env, "--traj", str(tmp_path / "small.json")
    )
    assert code == 0, stderr
    traj = tmp_path / "huge.json"
    code, stdout, stderr, huge_peak = run_measured(
        huge_files_script("256M"), buggy_repo, cli_env, "--traj", str(traj)
    )
    assert code == 0, stderr
    assert stdout.startswith("diff --git a/mathlib/ops.py") and "huge" not in stdout
    steps = json.loads(traj.read_text())["steps"]
    edit, submit = steps[1]["observation"]["output"], steps[2]["observation"]["output"]
    assert "huge.bin is 256.0 MiB, more than the 16.0 MiB edit reads" in edit
    assert submit.startswith(
        "Submission rejected: the patch file huge.patch is 256.0 MiB, more than the 1.0 MiB"
    )
    assert "warning: a submission (huge.patch) was refused" in stderr
    assert huge_peak - small_peak < 32 * MB  # was more than the file: read whole, twice


def test_a_large_working_tree_diff_goes_beside_the_trajectory(buggy_repo, cli_env, tmp_path):
    traj = tmp_path / "t.json"
    script = [write_file(BIG), cwm("bash", "git add -N big.txt")]
    with ScriptedServer(script) as server:
        args = ["run", str(buggy_repo), "--issue", "x", "--base-url", server.base_url]
        args += ["--model", "m", "--traj", str(traj), "--max-steps", "2", "--submit-on-limit"]
        result = run_cli(args, cli_env)
    assert result.returncode == 1, result.stderr  # the diff is no patch: over the limit
    assert result.stdout == ""
    beside = tmp_path / "t.working-tree.patch"
    assert re.search(
        r"working-tree diff is not a valid patch: the patch is 8\.\d MiB", result.stderr
    )
    told = r"the working-tree diff \(8\.\d MiB\) is more than --max-patch-kb 1024 allows: it is in "
    assert re.search(told + re.escape(str(beside)), result.stderr)
    data = json.loads(traj.read_text())
    assert data["working_tree_diff"] is None and data["working_tree_diff_file"] == str(beside)
    assert data["working_tree_diff_bytes"] == beside.stat().st_size > BIG
    assert traj.stat().st_size < MB
    check = subprocess.run(["git", "apply", "--check", str(beside)], cwd=buggy_repo)
    assert check.returncode == 0  # the whole diff, on disk, applies
    shown = run_cli(["show", str(traj)], cli_env)
    assert shown.returncode == 0
    assert "more than a trajectory keeps) is in this file:" in " ".join(shown.stdout.split())
    assert shown.stdout.endswith(f"\n{beside}\n")  # on a line of its own, whole


def test_the_limit_is_a_setting(buggy_repo, cli_env, tmp_path):
    """--max-patch-kb (env CWM_AGENT_MAX_PATCH_KB, config max_patch_kb) moves it both ways."""
    script = [cwm("edit", FIX), cwm("bash", "git diff > fix.patch"), cwm("submit", "fix.patch")]
    with ScriptedServer([*script, summary()]) as server:
        args = ["run", str(buggy_repo), "--issue", "x", "--base-url", server.base_url]
        env = {**cli_env, "CWM_AGENT_MAX_PATCH_KB": "0"}
        refused = run_cli([*args, "--model", "m"], env)
    assert refused.returncode == 2 and "max_patch_kb" in refused.stderr.lower().replace("-", "_")


@pytest.mark.parametrize("kind", [str, bytes])
def test_check_size_names_the_largest_files(kind):
    from cwm_agent.errors import PatchError
    from cwm_agent.patch_size import check_size

    patch = "diff --git a/s b/s\n+1\n" + "diff --git a/d/big b/d/big\n" + "+" * 3000 + "\n"
    data = patch if kind is str else patch.encode()
    check_size(data, 4096)  # under the limit: nothing
    with pytest.raises(PatchError) as caught:
        check_size(data, 2048)
    named = "(--max-patch-kb 2); its largest files: d/big (3.0 KiB), s (22 bytes)"
    assert named in str(caught.value)
