"""The user edits the working tree while a run works on an overlay of it (issue 21, item 7).

The overlay's lower layer is the user's live tree, so the agent's copy shows the edits.
They must never become part of the agent's patch (its working-tree diff, or a patch file
its own `git diff` wrote), and the user is told. Needs the sandbox's overlay: skipped
without bubblewrap (failed under CWM_REQUIRE_SANDBOX=1).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import cwm, require_sandbox, run_cli
from test_run_e2e import FIX_EDIT

from cwm_agent.runtimes.local import LocalRuntime
from cwm_agent.scripted_server import ScriptedServer


@pytest.fixture(autouse=True)
def _needs_the_overlay():
    require_sandbox("these tests (bubblewrap's overlay)")


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:  # in place, as many editors write
        f.write(text)


def _files_of(patch: str) -> list[str]:
    return [line.split(" b/", 1)[1] for line in patch.splitlines() if line.startswith("diff --")]


def test_the_users_edits_during_a_run_stay_out_of_the_agents_diff(buggy_repo: Path) -> None:
    with LocalRuntime.create(buggy_repo, sandbox="bwrap") as runtime:
        if not runtime.view.startswith("/proc/"):
            pytest.skip("no overlay here: the copy is a checkout, which the user's edits miss")
        runtime.run("echo '# the agent' >> mathlib/ops.py; mkdir new && echo n > new/a.py", 10)
        # the user: an edit, a new file, a deletion; then a file both change
        _append(buggy_repo / "tests" / "test_ops.py", "# the user\n")
        (buggy_repo / "notes.txt").write_text("the user's\n")
        (buggy_repo / ".gitignore").unlink()
        _append(buggy_repo / "mathlib" / "__init__.py", "USER = 1\n")
        runtime.run("echo 'AGENT = 2' >> mathlib/__init__.py", 10)
        patch = runtime.diff()
        again = runtime.diff()
        notices = list(runtime.notices)
    assert _files_of(patch) == ["mathlib/__init__.py", "mathlib/ops.py", "new/a.py"]
    assert again == patch
    user_only = [n for n in notices if "left out of its patch" in n]
    assert len(user_only) == 1  # said once, not at every diff
    for path in ("tests/test_ops.py", "notes.txt", ".gitignore"):
        assert path in user_only[0]
    both = [n for n in notices if "the agent changed them too" in n]
    assert len(both) == 1 and "mathlib/__init__.py" in both[0]
    assert "mathlib/__init__.py" not in user_only[0]


def test_a_patch_file_the_models_git_diff_wrote_drops_the_users_edit(
    buggy_repo: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Through the real CLI: the user edits a test file while the model works; the model's
    `git diff > fix.patch` catches it; the printed patch holds the model's fix only and
    applies to the user's tree as it now is."""
    traj = tmp_path / "t.json"
    script = [
        cwm("edit", FIX_EDIT),
        cwm("bash", "git diff > fix.patch; git diff --stat"),
        cwm("submit", "fix.patch"),
        "<think>\nDone.\n</think>\n## Issue Summary\nadd() subtracted.",
    ]

    def reply(body: dict) -> object:
        reply.n += 1  # type: ignore[attr-defined]
        if reply.n == 2:  # between the model's edit and its `git diff`: the user types
            _append(buggy_repo / "tests" / "test_ops.py", "# the user's own test\n")
        return script[reply.n - 1] if reply.n <= len(script) else None

    reply.n = 0  # type: ignore[attr-defined]
    out = tmp_path / "fix.patch"
    with ScriptedServer(reply) as server:
        args = ["run", str(buggy_repo), "--issue", "add() is wrong", "--model", "m", "--json"]
        args += ["--base-url", server.base_url, "--traj", str(traj), "--sandbox", "bwrap"]
        result = run_cli([*args, "-o", str(out)], cli_env)
    assert result.returncode == 0, result.stderr
    if "full checkout" in result.stderr:
        pytest.skip("no overlay here: the copy is a checkout, which the user's edits miss")
    data = json.loads(traj.read_text())
    seen = data["steps"][1]["observation"]["output"]
    assert "tests/test_ops.py" in seen  # the model's copy did show the user's edit
    patch = out.read_text()
    assert _files_of(patch) == ["mathlib/ops.py"]
    assert "tests/test_ops.py" in result.stderr and "left out of its patch" in result.stderr
    assert any("tests/test_ops.py" in n for n in data["config"]["runtime_notices"])
    assert any("tests/test_ops.py" in n for n in json.loads(result.stdout)["notices"])
    check = subprocess.run(["git", "apply", "--check", "-"], cwd=buggy_repo, input=patch, text=True)
    assert check.returncode == 0  # onto the user's tree with the user's edit in it
