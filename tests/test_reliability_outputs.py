"""Where results go: output paths checked before the work, and result documents read back.

`-o` into a folder that does not exist used to fail after the whole run, with a
traceback; `show` and `replay` given what `run --json` prints (a result document, not a
trajectory) crashed with a traceback. Now: exit 2 before the first model request, and
a result document is followed to the trajectory it names (a note on stderr says so).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import cwm, run_cli, snapshot

from cwm_agent.scripted_server import ScriptedServer

FIX = "mathlib/ops.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE"
FIXING = [
    cwm("edit", FIX),
    cwm("bash", "git diff > fix.patch"),
    cwm("submit", "fix.patch"),
    "Done.",
]


def model_args(server: ScriptedServer) -> list[str]:
    return ["--issue", "add() is wrong", "--base-url", server.base_url, "--model", "m"]


@pytest.mark.parametrize("command", [["run"], ["best-of", "--attempts", "2"]], ids=lambda c: c[0])
def test_output_into_a_missing_folder_is_refused_before_the_run(
    command, buggy_repo, cli_env, tmp_path
):
    target = tmp_path / "missing" / "fix.patch"
    before = snapshot(buggy_repo)
    with ScriptedServer(FIXING) as server:
        args = [*command, str(buggy_repo), *model_args(server), "-o", str(target)]
        result = run_cli(args, cli_env)
        assert server.requests == []  # refused before the first model request
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert f"the folder {target.parent} does not exist" in result.stderr
    assert f"hint: mkdir -p {target.parent}" in result.stderr
    assert not target.parent.exists() and snapshot(buggy_repo) == before


def test_output_folder_removed_during_the_run_is_a_clear_error(buggy_repo, cli_env, tmp_path):
    """Checked up front, the folder may still vanish before the patch is written."""
    folder = tmp_path / "out"
    folder.mkdir()
    traj = tmp_path / "t.json"

    def script(body: dict) -> object:
        posts = len(server.requests)
        if posts == len(FIXING):
            shutil.rmtree(folder)
        return FIXING[posts - 1] if posts <= len(FIXING) else None

    with ScriptedServer(script) as server:
        args = ["run", str(buggy_repo), *model_args(server), "-o", str(folder / "fix.patch")]
        result = run_cli([*args, "--traj", str(traj)], cli_env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"cannot write the patch to {folder / 'fix.patch'}" in result.stderr
    assert "the patch is also in the trajectory" in result.stderr
    assert "+    return a + b" in json.loads(traj.read_text())["patch"]


def test_a_traj_in_a_new_folder_is_created(buggy_repo, cli_env, tmp_path):
    """--traj (and best-of's --traj-dir) make their folders at the start, not the end."""
    traj = tmp_path / "new" / "deeper" / "t.json"
    with ScriptedServer(FIXING) as server:
        result = run_cli(
            ["run", str(buggy_repo), *model_args(server), "--traj", str(traj)], cli_env
        )
    assert result.returncode == 0, result.stderr
    assert json.loads(traj.read_text())["exit_status"] == "submitted"


def test_show_html_into_a_missing_folder_is_refused(tmp_path, cli_env):
    page = tmp_path / "missing" / "run.html"
    result = run_cli(["show", str(tmp_path / "any.json"), "--html", str(page)], cli_env)
    assert result.returncode == 2, result.stderr
    assert f"--html {page}: the folder {page.parent} does not exist" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------ result documents read back


@pytest.fixture
def result_document(buggy_repo, cli_env, tmp_path) -> Path:
    """What `run --json` printed, saved to a file, and the run's trajectory beside it."""
    traj = tmp_path / "run.json"
    with ScriptedServer(FIXING) as server:
        args = ["run", str(buggy_repo), *model_args(server), "--json", "--traj", str(traj)]
        result = run_cli(args, cli_env)
    assert result.returncode == 0, result.stderr
    doc = tmp_path / "result.json"
    doc.write_text(result.stdout)
    assert json.loads(result.stdout)["trajectory"] == str(traj)
    return doc


def test_show_follows_a_result_document_to_its_trajectory(result_document, cli_env):
    shown = run_cli(["show", str(result_document), "--width", "100"], cli_env)
    assert shown.returncode == 0, shown.stderr
    traj = json.loads(result_document.read_text())["trajectory"]
    assert f"{result_document} is a result document; showing its trajectory {traj}" in (
        shown.stderr
    )
    direct = run_cli(["show", traj, "--width", "100"], cli_env)
    assert shown.stdout == direct.stdout and "final patch (1 submission(s))" in shown.stdout


def test_replay_follows_a_result_document_to_its_trajectory(result_document, cli_env):
    replayed = run_cli(["replay", str(result_document)], cli_env)
    assert replayed.returncode == 0, replayed.stderr
    assert "is a result document; replaying its trajectory" in replayed.stderr
    assert "the same patch as recorded" in replayed.stderr
    assert "+    return a + b" in replayed.stdout


@pytest.mark.parametrize("command", ["show", "replay"])
def test_a_result_document_whose_trajectory_is_gone_is_a_usage_error(
    command, result_document, cli_env
):
    Path(json.loads(result_document.read_text())["trajectory"]).unlink()
    result = run_cli([command, str(result_document)], cli_env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{result_document} is a result document (what `run --json` prints)" in result.stderr
    assert "hint: pass the trajectory file itself" in result.stderr


@pytest.mark.parametrize("command", ["show", "replay"])
def test_other_json_is_not_a_trajectory(command, tmp_path, cli_env):
    for text in ('{"steps": 3}', "[1, 2]", '{"run_id": "r"}'):
        (tmp_path / "x.json").write_text(text)
        result = run_cli([command, str(tmp_path / "x.json")], cli_env)
        assert result.returncode == 2, (text, result.stderr)
        assert "is not a cwm-agent trajectory" in result.stderr and "Traceback" not in (
            result.stderr
        )
