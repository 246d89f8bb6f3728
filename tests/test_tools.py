"""Tool semantics on a real temp git repository through a minimal Runtime."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cwm_agent.errors import ToolError
from cwm_agent.protocol import parse_cwm_reply
from cwm_agent.tools import execute, submit_patch
from cwm_agent.types import Action, CommandResult, FileTooLarge, TreeDrift

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


class DirRuntime:
    """The Runtime protocol's file side on a directory, commands via subprocess (no session)."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.cwd = self.root  # where relative tool paths start (a test may move it)

    def _path(self, path: str) -> Path:
        full = (Path(self.root) / path).resolve()
        if not full.is_relative_to(Path(self.root).resolve()):
            raise ToolError(f"{path} is outside the repository")
        return full

    def run(self, command: str, timeout: float) -> CommandResult:
        start = time.monotonic()
        proc = subprocess.Popen(
            ["bash", "-c", command], cwd=self.root, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return CommandResult(out.decode(), None, timed_out=True, session_restarted=True)
        return CommandResult(out.decode(), proc.returncode, duration=time.monotonic() - start)

    def read_file(self, path: str, limit: int | None = None) -> bytes:
        data = self._path(path).read_bytes()
        if limit is not None and len(data) > limit:
            raise FileTooLarge(len(data), limit)
        return data

    def write_file(self, path: str, data: bytes) -> None:
        full = self._path(path)
        if not full.parent.is_dir():
            raise ToolError(f"the directory of {path} does not exist")
        full.write_bytes(data)

    def exists(self, path: str) -> bool:
        return self._path(path).exists()

    def diff(self, exclude: tuple[str, ...] = ()) -> str:
        self.run("git add -A -N .", 10)
        specs = " ".join(f"':(exclude,literal){path}'" for path in exclude)
        return self.run(f"git diff --binary -- . {specs}", 10).output

    def outside_changes(self) -> TreeDrift:
        return TreeDrift()

    def close(self) -> None:
        pass


APP = "".join(f"line {i}\n" for i in range(1, 31))


@pytest.fixture
def rt(tmp_path: Path) -> DirRuntime:
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "app.py").write_text(APP)
    (root / "pkg" / "dup.py").write_text("x = 1\ny = 2\nx = 1\ny = 2\n")
    (root / "pkg" / "indent.py").write_text("def f():\n    if True:\n        return 1\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "base"]):
        subprocess.run(["git", *args], cwd=root, env=GIT_ENV, check=True)
    return DirRuntime(root)


def base_of(rt: DirRuntime) -> str:
    return rt.run("git rev-parse HEAD", 10).output.strip()


def run(rt, tool: str, tool_format: str = "cwm", **args: str):
    return execute(Action(tool, args), rt, timeout=5, max_output=2000, tool_format=tool_format)


# ------------------------------------------------------------------------------- bash


def test_bash_output_is_exactly_what_the_command_wrote(rt):
    """The cwm format: final newline kept, no exit-code line, empty output empty."""
    obs = run(rt, "bash", command="echo out; echo err >&2; exit 3")
    assert obs.output == "out\nerr\n"
    assert (obs.ok, obs.exit_code) == (False, 3)
    assert run(rt, "bash", command="printf 'no newline'").output == "no newline"
    assert (run(rt, "bash", command="true").output, run(rt, "bash", command="true").ok) == (
        "",
        True,
    )


def test_bash_openai_format_adds_the_exit_code_and_no_output(rt):
    obs = run(rt, "bash", tool_format="openai", command="echo out; echo err >&2; exit 3")
    assert obs.output == "out\nerr\n[exit code: 3]"
    assert run(rt, "bash", tool_format="openai", command="true").output == "(no output)"


TIMEOUT_NOTICE = (
    "The command did not finish within 0.3 seconds and was killed, which ended the shell "
    "session. A new session was started in the default working directory, {root}; "
    "earlier cd and export settings are gone."
)


def test_bash_timeout_says_what_happened(rt):
    obs = execute(Action("bash", {"command": "sleep 5"}), rt, timeout=0.3, max_output=100)
    assert obs.timed_out and not obs.ok
    assert obs.output == TIMEOUT_NOTICE.format(root=rt.root)
    partial = execute(
        Action("bash", {"command": "printf half; sleep 5"}), rt, timeout=0.3, max_output=100
    )
    assert partial.output == "half\n" + TIMEOUT_NOTICE.format(root=rt.root)


def test_bash_long_output_is_cut_in_the_middle(rt):
    obs = run(rt, "bash", command="seq 1 100000")
    assert obs.output.startswith("1\n2\n") and obs.output.endswith("99999\n100000\n")
    assert "characters (" in obs.output and len(obs.output) < 2200


# ------------------------------------------------------------------------------- edit


def test_edit_success_shows_numbered_context(rt):
    obs = run(rt, "edit", path="pkg/app.py", search="line 15\nline 16\n", replace="fifteen\n")
    assert obs.ok
    lines = APP.replace("line 15\nline 16\n", "fifteen\n").splitlines()
    # CWM's range: 8 lines before, 8 after plus one per line break of the replacement.
    snippet = "\n".join(f"{n:6d}\t{lines[n - 1]}" for n in range(7, 25))
    assert obs.output == (
        f"Edited pkg/app.py: replaced the text at lines 15-16. The region now reads:\n{snippet}"
    )
    assert (Path(rt.root) / "pkg/app.py").read_text() == "\n".join(lines) + "\n"


def test_edit_through_the_cwm_parser(rt):
    body = (
        "pkg/indent.py\n<<<<<<< SEARCH\n        return 1\n"
        "=======\n        return 2\n>>>>>>> REPLACE"
    )
    _, action = parse_cwm_reply(f"</think>\n<tool: edit>\n{body}\n</tool>")
    obs = execute(action, rt, timeout=5, max_output=2000)
    assert obs.ok, obs.output
    assert (Path(rt.root) / "pkg/indent.py").read_text().endswith("        return 2\n")


def test_a_malformed_cwm_edit_body_is_the_edit_result(rt):
    _, action = parse_cwm_reply("</think>\n<tool: edit>\npkg/app.py\nline 1\n</tool>")
    obs = execute(action, rt, timeout=5, max_output=2000)
    assert not obs.ok
    assert obs.output.startswith(
        "No change was made: the edit body has no '<<<<<<< SEARCH' line.\n\nExpected edit format:"
    )
    assert (Path(rt.root) / "pkg/app.py").read_text() == APP


def test_the_search_may_end_mid_line_as_in_cwm(rt):
    path = Path(rt.root) / "pkg/ops.py"
    path.write_text("def add(a, b):\n    return a - b\n")
    obs = run(rt, "edit", path="pkg/ops.py", search="def add(a, b)", replace="def add(a, b, c=0)")
    assert obs.ok, obs.output
    assert path.read_text() == "def add(a, b, c=0):\n    return a - b\n"
    inside = run(rt, "edit", path="pkg/ops.py", search="a - b", replace="x")
    assert inside.output == (
        "No change was made: the search text was not found in pkg/ops.py. It occurs within "
        "line 2, but the search text must start at the beginning of a line: include the "
        "start of that line, indentation included."
    )


def test_edit_errors(rt):
    missing = run(rt, "edit", path="nope.py", search="a\n", replace="b\n")
    assert (missing.ok, missing.output) == (
        False,
        "No change was made: the path nope.py does not exist.",
    )
    twice = run(rt, "edit", path="pkg/dup.py", search="x = 1\ny = 2\n", replace="z\n")
    assert twice.output == (
        "No change was made: the search text occurs 2 times in pkg/dup.py (at lines 1, 3). "
        "Add neighbouring lines to the search text so that it matches exactly once."
    )
    loose = run(rt, "edit", path="pkg/indent.py", search="if True:\n  return 1\n", replace="")
    assert loose.output == (
        "No change was made: the search text was not found in pkg/indent.py. It matches at "
        "line 2 only when indentation and surrounding whitespace are ignored: copy those "
        "lines exactly, including their indentation (see `cat -n pkg/indent.py`)."
    )
    partial = run(rt, "edit", path="pkg/app.py", search="line 3\nline 5\n", replace="")
    assert "Its first line appears at line 3, but the lines after it differ" in partial.output
    empty = run(rt, "edit", path="pkg/app.py", search="", replace="x\n")
    assert empty.output.startswith("No change was made: the search text is empty.")
    directory = run(rt, "edit", path="pkg", search="a\n", replace="b\n")
    assert directory.output.startswith("No change was made: cannot read pkg")
    assert (Path(rt.root) / "pkg/dup.py").read_text() == "x = 1\ny = 2\nx = 1\ny = 2\n"


def test_edit_single_line_message(rt):
    obs = run(rt, "edit", path="pkg/app.py", search="line 1\n", replace="one\ntwo\n")
    assert obs.output.startswith(
        "Edited pkg/app.py: replaced the text at line 1. The region now reads:\n"
        "     1\tone\n     2\ttwo\n     3\tline 2\n"
    )


def test_edit_search_starts_at_a_line_start(rt):
    obs = run(rt, "edit", path="pkg/app.py", search="ine 1\n", replace="x\n")
    assert not obs.ok and "not found" in obs.output


def test_edit_keeps_crlf_and_missing_final_newline(rt):
    path = Path(rt.root) / "win.txt"
    path.write_bytes(b"a\r\nb\r\nc")
    obs = run(rt, "edit", path="win.txt", search="b\nc", replace="B\nC\nD")
    assert obs.ok, obs.output
    assert path.read_bytes() == b"a\r\nB\r\nC\r\nD"
    assert run(rt, "edit", path="win.txt", search="C\r\nD", replace="C").ok
    assert path.read_bytes() == b"a\r\nB\r\nC"


def test_edit_deletes_lines_and_keeps_other_bytes(rt):
    path = Path(rt.root) / "latin.txt"
    path.write_bytes(b"caf\xe9\nremove me\nend\n")
    assert run(rt, "edit", path="latin.txt", search="remove me\n", replace="").ok
    assert path.read_bytes() == b"caf\xe9\nend\n"


def test_relative_paths_start_at_the_sessions_directory(rt):
    """As in CWM, whose tools run inside the session: after `cd pkg`, `app.py` is pkg/app.py."""
    rt.cwd = str(Path(rt.root) / "pkg")
    assert run(rt, "edit", path="app.py", search="line 2\n", replace="two\n").ok
    assert "two\n" in (Path(rt.root) / "pkg/app.py").read_text()
    assert run(rt, "create", path="sub.py", content="x\n").ok
    assert (Path(rt.root) / "pkg/sub.py").read_text() == "x\n"
    missing = run(rt, "edit", path="pkg/app.py", search="a", replace="b")
    assert missing.output == (
        "No change was made: the path pkg/app.py does not exist (relative to the current "
        f"directory {rt.cwd})."
    )
    # The fence is the repository: a path that leaves it is refused wherever the shell is.
    assert "outside the repository" in run(rt, "create", path="../../x.py", content="").output
    assert run(rt, "edit", path=str(Path(rt.root) / "pkg/app.py"), search="two", replace="2").ok


# ------------------------------------------------------------------------------ create


def test_create_writes_the_content_as_given(rt):
    obs = run(rt, "create", path="pkg/new.py", content="a = 1\nb = 2")
    assert (obs.ok, obs.output) == (True, "Created pkg/new.py (2 lines, no newline at the end).")
    assert (Path(rt.root) / "pkg/new.py").read_text() == "a = 1\nb = 2"
    obs = run(rt, "create", path="pkg/newline.py", content="a = 1\n")
    assert (obs.output, (Path(rt.root) / "pkg/newline.py").read_text()) == (
        "Created pkg/newline.py (1 line).",
        "a = 1\n",
    )
    exists = run(rt, "create", path="pkg/app.py", content="x")
    assert exists.output == (
        "No file was created: pkg/app.py already exists. Change it with edit, "
        "or remove it with bash first."
    )
    orphan = run(rt, "create", path="no/such/dir.py", content="x")
    assert orphan.output == (
        "No file was created: the directory no/such does not exist. "
        "Create it first (`mkdir -p no/such`)."
    )
    outside = run(rt, "create", path="../escape.py", content="x")
    assert not outside.ok and "outside the repository" in outside.output


# ------------------------------------------------------------------------------ submit


def test_submit_patch_file_excludes_itself(rt):
    base = base_of(rt)
    run(rt, "edit", path="pkg/app.py", search="line 5\n", replace="line five\n")
    run(rt, "create", path="pkg/new.py", content="x = 1\n")
    rt.run("git add -N pkg/new.py && git diff > fix.patch && git add -N fix.patch", 10)
    obs, patch = submit_patch(rt, "fix.patch", rt.root, base)
    assert obs.ok, obs.output
    assert "fix.patch" not in patch and "+line five" in patch and "b/pkg/new.py" in patch
    assert obs.output == (
        "Your submission of fix.patch was accepted: a valid patch changing 2 files "
        f"(pkg/app.py, pkg/new.py).\n\n<submission>\n{patch}\n</submission>\n\n"
        "Check that this change resolves the issue. You may keep working and submit again "
        "(the last valid submission counts), or reply without a tool call to finish with "
        "your summary."
    )
    # The working-tree diff now holds fix.patch too; submitting it by absolute path drops it.
    obs2, patch2 = submit_patch(rt, str(Path(rt.root) / "fix.patch"), rt.root, base)
    assert patch2 == patch


def test_submit_working_tree_diff(rt):
    base = base_of(rt)
    obs, patch = submit_patch(rt, None, rt.root, base)
    assert not obs.ok and patch is None
    assert "the working tree has no changes against the base" in obs.output
    run(rt, "edit", path="pkg/app.py", search="line 5\n", replace="line five\n")
    obs, patch = submit_patch(rt, None, rt.root, base)
    assert obs.ok and patch.startswith("diff --git a/pkg/app.py b/pkg/app.py\n")
    assert "Note:" not in obs.output
    # A leftover patch file is pointed out, and can be excluded by the caller.
    rt.run("git diff > fix.patch", 10)
    obs, patch = submit_patch(rt, None, rt.root, base)
    assert "b/fix.patch" in patch
    assert "\nNote: the patch adds fix.patch; if that is not part of the fix, delete it" in (
        obs.output
    )
    obs, patch = submit_patch(rt, None, rt.root, base, exclude=("fix.patch",))
    assert obs.ok and "fix.patch" not in patch and "Note:" not in obs.output


def test_submit_rejections_explain_the_fix(rt):
    base = base_of(rt)
    obs, patch = submit_patch(rt, "missing.patch", rt.root, base)
    assert patch is None
    assert obs.output.startswith(
        "Submission rejected: the patch file missing.patch does not exist "
        f"(relative to the current directory {rt.root})."
    )
    (Path(rt.root) / "chat.patch").write_text("Here is my fix:\n--- a/x\n+++ b/x\n")
    obs, patch = submit_patch(rt, "chat.patch", rt.root, base)
    assert patch is None and not obs.ok
    assert obs.output == (
        "Submission rejected: the patch starts with text that is not part of a diff "
        "(line 1: 'Here is my fix:'); the file must hold only diff output, without "
        "explanations or ``` fences.\nTo fix: make the patch file with `git diff > fix.patch` "
        "from the repository root; new files must be added first (`git add -N FILE`) to "
        "appear in `git diff`. Then submit again."
    )
    stale = "--- a/pkg/app.py\n+++ b/pkg/app.py\n@@ -1 +1 @@\n-nope\n+yes\n"
    (Path(rt.root) / "stale.patch").write_text(stale)
    obs, patch = submit_patch(rt, "stale.patch", rt.root, base)
    assert patch is None and "`git apply --check` failed" in obs.output
    assert "error: patch failed: pkg/app.py:1" in obs.output


def test_submit_resolves_against_the_sessions_directory(rt):
    base = base_of(rt)
    run(rt, "edit", path="pkg/app.py", search="line 5\n", replace="line five\n")
    rt.run("git diff > pkg/fix.patch", 10)
    rt.cwd = str(Path(rt.root) / "pkg")
    obs, patch = submit_patch(rt, "fix.patch", rt.root, base)
    assert obs.ok, obs.output
    assert "+line five" in patch and "fix.patch" not in patch  # the file itself is left out
    rt.cwd = rt.root
    obs, patch = submit_patch(rt, "fix.patch", rt.root, base)
    assert patch is None and "does not exist" in obs.output
    # Outside the repository nothing is read, and the model is told why.
    obs, patch = submit_patch(rt, "/etc/hostname", rt.root, base)
    assert patch is None
    assert "cannot be read: /etc/hostname is outside the repository" in obs.output
