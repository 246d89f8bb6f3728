"""The local sandbox's size limit (`--tmp-size`, issue 21's limitations), through the real
CLI and real bubblewrap.

Its private /tmp, /run and /dev/shm are RAM-backed; with `--tmp-size` each is a tmpfs of
that size, so a command filling one gets "No space left on device" and the run goes on;
without it the same write succeeds. A bubblewrap too old to size a tmpfs (here a wrapper
around the real one that answers as 0.5 did) is refused with a usage error.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import cwm, require_sandbox, run_cli
from test_run_e2e import FIX_EDIT, assert_fixes, run_agent

from cwm_agent.scripted_server import ScriptedServer

DONE = "<think>\nDone.\n</think>\n## Issue Summary\nadd() subtracted."
MB20 = 20 * 1024 * 1024
# 20 MB into each RAM-backed folder the commands can write; a file in /dev itself.
FILL = (
    "; ".join(
        f"head -c {MB20} /dev/zero > {folder}/big; echo {folder}=$?; wc -c < {folder}/big"
        for folder in ("/tmp", "/dev/shm", "/run")
    )
    + "; (echo x > /dev/made) 2>&1; echo dev=$?"
)


@pytest.fixture(autouse=True)
def _needs_the_sandbox():
    require_sandbox("the sandbox's limit tests")


def _fill_then_fix(buggy_repo: Path, env: dict, tmp_path: Path, *extra: str) -> str:
    """The run's first command fills the folders; then the fix is made and submitted. The
    run must succeed either way; returns the first command's output."""
    script = [
        cwm("bash", FILL),
        cwm("edit", FIX_EDIT),
        cwm("bash", "git diff > fix.patch"),
        cwm("submit", "fix.patch"),
        DONE,
    ]
    traj = tmp_path / "t.json"
    with ScriptedServer(script) as server:
        result = run_agent(
            server, buggy_repo, env, "--sandbox", "bwrap", "--traj", str(traj), *extra
        )
    assert result.returncode == 0, result.stderr
    assert_fixes(result.stdout, buggy_repo, tmp_path)
    output: str = json.loads(traj.read_text())["steps"][0]["observation"]["output"]
    return output


def test_tmp_size_bounds_the_sandboxs_memory_folders_and_the_run_goes_on(
    buggy_repo, cli_env, tmp_path
):
    output = _fill_then_fix(buggy_repo, cli_env, tmp_path, "--tmp-size", "8m")
    assert output.count("No space left on device") == 3, output
    for folder in ("/tmp", "/dev/shm", "/run"):
        assert f"{folder}=1\n{8 * 1024 * 1024}\n" in output, output
    assert "Read-only file system" in output and "dev=1" in output


def test_without_tmp_size_the_same_writes_succeed(buggy_repo, cli_env, tmp_path):
    output = _fill_then_fix(buggy_repo, cli_env, tmp_path)
    assert "No space left" not in output, output
    for folder in ("/tmp", "/dev/shm", "/run"):
        assert f"{folder}=0\n{MB20}\n" in output, output
    assert "dev=0" in output  # /dev stays as bubblewrap makes it


def _fake_bwrap(folder: Path, body: str) -> dict[str, str]:
    """A `bwrap` first on PATH: ``body`` (sh) runs before the real one is exec'd."""
    folder.mkdir()
    real = shutil.which("bwrap")
    (folder / "bwrap").write_text(f'#!/bin/sh\n{body}\nexec {real} "$@"\n')
    (folder / "bwrap").chmod(0o755)
    return {"PATH": f"{folder}:/usr/bin:/bin"}


OLD_BWRAP = """[ "$1" = --version ] && { echo 'bubblewrap 0.5.0'; exit 0; }
for a; do [ "$a" = --size ] && { echo 'bwrap: Unknown option --size' >&2; exit 1; }; done"""


@pytest.mark.parametrize("choice", ["bwrap", "auto"])
def test_a_bubblewrap_that_cannot_size_a_tmpfs_is_refused(buggy_repo, cli_env, tmp_path, choice):
    env = {**cli_env, **_fake_bwrap(tmp_path / "old", OLD_BWRAP)}
    args = ["run", str(buggy_repo), "--issue", "x", "--model", "m", "--sandbox", choice]
    args += ["--base-url", "http://127.0.0.1:9/v1", "--tmp-size", "8m"]
    result = run_cli(args, env)
    assert result.returncode == 2, result.stderr
    assert "--tmp-size needs bubblewrap 0.6 or later: bubblewrap 0.5.0" in result.stderr
    assert "hint: upgrade bubblewrap, or leave out --tmp-size" in result.stderr
    assert result.stdout == ""


def test_without_a_working_sandbox_auto_says_the_size_does_not_apply(buggy_repo, cli_env, tmp_path):
    env = {**cli_env, **_fake_bwrap(tmp_path / "broken", "echo 'no namespaces' >&2; exit 1")}
    script = [
        cwm("edit", FIX_EDIT),
        cwm("bash", "git diff > fix.patch"),
        cwm("submit", "fix.patch"),
        DONE,
    ]
    with ScriptedServer(script) as server:
        result = run_agent(server, buggy_repo, env, "--sandbox", "auto", "--tmp-size", "8m")
    assert result.returncode == 0, result.stderr
    assert "no sandbox: bwrap cannot create namespaces here: no namespaces" in result.stderr
    assert "--tmp-size does not apply" in result.stderr
    assert_fixes(result.stdout, buggy_repo, tmp_path)
