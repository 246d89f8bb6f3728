"""A log reader that goes away (issue 22 item 6): `cwm-agent run … -v 2>&1 | head -20`.

The reader of stderr closes its pipe while the run goes on; every later progress line
meets EPIPE. That used to end the run with a BrokenPipeError (exit 1, the trajectory
`crashed`). Now the run goes on: the patch still goes to stdout (or `-o`), the
trajectory is finished, the exit code is the run's. With `2>&1` stdout is that same
closed pipe: the patch is then in `-o` and in the trajectory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from conftest import snapshot
from test_run_e2e import FIXING_SCRIPT

from cwm_agent.scripted_server import ScriptedServer

WAIT = 60.0


def gated(closed: threading.Event):
    """The fixing script; its second reply waits until the test has closed the pipe."""
    replies = list(FIXING_SCRIPT)

    def script(body):
        if not replies:
            return None
        if len(replies) < len(FIXING_SCRIPT):
            assert closed.wait(WAIT), "the test never closed the pipe"
        return replies.pop(0)

    return script


def start(server, repo, env, traj, *extra, **pipes):
    args = ["run", str(repo), "--issue", "add() is wrong", "--base-url", server.base_url]
    return subprocess.Popen(
        [sys.executable, "-m", "cwm_agent", *args, "--model", "m", "--traj", str(traj), *extra],
        env=env,
        stdin=subprocess.DEVNULL,
        **pipes,
    )


def read_a_line_then_close(stream, closed: threading.Event) -> bytes:
    """What `head -1` does: one line, then the pipe is closed."""
    line = stream.readline()
    stream.close()
    closed.set()
    return line


def test_stderr_closed_mid_run_the_patch_still_reaches_stdout(buggy_repo, cli_env, tmp_path):
    closed, traj, before = threading.Event(), tmp_path / "t.json", snapshot(buggy_repo)
    with ScriptedServer(gated(closed)) as server:
        proc = start(
            server, buggy_repo, cli_env, traj, "-v", stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert read_a_line_then_close(proc.stderr, closed).strip()
            stdout = proc.stdout.read().decode()
            code = proc.wait(timeout=WAIT)
        finally:
            proc.kill()
    assert code == 0
    assert stdout.startswith("diff --git a/mathlib/ops.py")
    data = json.loads(traj.read_text())
    assert (data["exit_status"], data["exit_code"], data["patch"]) == ("submitted", 0, stdout)
    assert snapshot(buggy_repo) == before


@pytest.mark.parametrize("output", [True, False], ids=["with-o", "stdout-only"])
def test_2_to_1_piped_into_head(buggy_repo, cli_env, tmp_path, output):
    """stdout and stderr on one pipe whose reader leaves after a line."""
    closed, traj, patch_file = threading.Event(), tmp_path / "t.json", tmp_path / "fix.patch"
    extra = ["-v", *(["-o", str(patch_file)] if output else [])]
    with ScriptedServer(gated(closed)) as server:
        proc = start(
            server,
            buggy_repo,
            cli_env,
            traj,
            *extra,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            assert read_a_line_then_close(proc.stdout, closed).strip()
            code = proc.wait(timeout=WAIT)
        finally:
            proc.kill()
    assert code == 0
    data = json.loads(traj.read_text())
    assert (data["exit_status"], data["exit_code"]) == ("submitted", 0)
    assert data["patch"].startswith("diff --git a/mathlib/ops.py")
    if output:
        assert patch_file.read_text() == data["patch"]
