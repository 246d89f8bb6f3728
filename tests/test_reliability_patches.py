"""Patches as real systems saved them, in our own small examples.

The kinds seen in model_patches_malformed.jsonl (prose with a fenced diff, a
``<patch>`` wrapper, prose with a code block but no headers, a placeholder ``diff
--git`` header with no hunks) plus the ways a hand-made diff goes wrong. Every one is
rejected with a message that names the problem; test_patches.py holds the basic
cases, benchmarks/bench_patches.py runs the real data.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CliResult, cwm, git, run_cli

from cwm_agent.errors import PatchError
from cwm_agent.patches import check_structure
from cwm_agent.scripted_server import ScriptedServer

HUNK = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n"
GIT = "diff --git a/x.py b/x.py\nindex 1111111..2222222 100644\n" + HUNK
NOT_A_DIFF = "the file must hold only diff output, without explanations or ``` fences"

CASES = [
    # (id, text, words the message must hold)
    ("patch-xml-wrapper", f"<patch>\n{GIT}</patch>\n", ["line 1: '<patch>'", NOT_A_DIFF]),
    (
        "markdown-heading-and-fence",
        f"# Patch for the bug\n\nBased on the analysis:\n\n```patch\n{HUNK}```\n",
        ["line 1: '# Patch for the bug'"],
    ),
    ("fence-only", f"```diff\n{GIT}```\n", ["line 1: '```diff'"]),
    (
        "prose-then-git-diff",
        f"I'll fix it.\n\n{GIT}",
        ["starts with text that is not part of a diff", 'line 1: "I\'ll fix it."'],
    ),
    (
        "code-block-without-headers",
        "# Patch\n\n```python\n-    return a - b\n+    return a + b\n```\n",
        ["no diff headers found", "starts with '# Patch'"],
    ),
    (
        "lines-indented-by-markdown",
        "    " + HUNK.replace("\n", "\n    ").rstrip(" "),
        ["no diff headers found", "'    --- a/x.py'"],
    ),
    (
        "placeholder-git-header",
        "diff --git a/src b/src\n+ // Certified Fix v1.1.0 (proj__proj-1)\n",
        ["the diff for 'src' (line 1) has no hunks"],
    ),
    (
        "git-header-without-changes",
        "diff --git a/x.py b/x.py\nindex 1111111..2222222 100644\n",
        ["the diff for 'x.py' (line 1) has no hunks"],
    ),
    (
        "chatter-between-files",
        HUNK + "Now the second file:\n" + HUNK.replace("x.py", "y.py"),
        ["line 6 is not part of a diff ('Now the second file:')"],
    ),
    ("trailing-explanation", HUNK + "\nThis fixes the bug.\n", ["line 7 is not part of a diff"]),
    (
        "truncated-hunk",  # a reply cut at the token limit mid-patch
        "--- a/x.py\n+++ b/x.py\n@@ -1,4 +1,4 @@\n a\n-b\n+c\n",
        ["bad hunk '@@ -1,4 +1,4 @@'", "fewer lines than its @@ header counts"],
    ),
    (
        "broken-hunk-header",
        "--- a/x.py\n+++ b/x.py\n@@ -1 +1\n-a\n+b\n",
        ["line 3 ('@@ -1 +1') is not a valid hunk header"],
    ),
    (
        "hunk-before-its-headers",
        "--- a/x.py\n@@ -1 +1 @@\n-a\n+b\n",
        ["line 2", "is not preceded by its file's '--- a/PATH' and '+++ b/PATH' header lines"],
    ),
    ("headers-only", "--- a/x.py\n+++ b/x.py\n", ["the diff for 'x.py' (line 1) has no hunks"]),
    ("byte-order-mark", "\ufeff" + HUNK, ["no diff headers found", "\\ufeff--- a/x.py"]),
    (
        "terminal-colours",
        "\x1b[1mdiff --git a/x.py b/x.py\x1b[m\n" + HUNK,
        ["starts with text that is not part of a diff", "\\x1b[1mdiff"],
    ),
    ("only-a-newline", "\n", ["the patch is empty"]),
]


@pytest.mark.parametrize(("text", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_kind_is_rejected_with_the_problem_named(text, words):
    with pytest.raises(PatchError) as caught:
        check_structure(text)
    for word in words:
        assert word in caught.value.message
    assert "git diff > fix.patch" in caught.value.hint  # and how to make a good one


@pytest.mark.parametrize(
    "text",
    [
        HUNK,
        GIT,
        GIT + GIT.replace("x.py", "y.py"),
        HUNK.replace("\n", "\r\n"),  # CRLF: structure is fine; git apply decides the rest
        "\n\n" + GIT + "\n\n",  # blank lines around are trimmed
        GIT.replace("+a = 2\n", "+a = 2\n\\ No newline at end of file\n"),
    ],
    ids=["plain", "git", "two-files", "crlf", "blank-lines-around", "no-newline-marker"],
)
def test_real_shapes_are_accepted(text):
    assert check_structure(text).endswith("\n")


@pytest.mark.parametrize(
    ("case_id", "words"),
    [("patch-xml-wrapper", "'<patch>'"), ("placeholder-git-header", "has no hunks")],
)
def test_validate_command_exits_1_naming_the_problem(buggy_repo, cli_env, tmp_path, case_id, words):
    text = next(c[1] for c in CASES if c[0] == case_id)
    patch = tmp_path / "answer.patch"
    patch.write_text(text)
    result = run_cli(["validate", str(patch), "--repo", str(buggy_repo)], cli_env)
    assert result.returncode == 1  # the user's patch is bad: not a bug of ours (was 5)
    assert result.stderr.startswith("Error: ") and words in result.stderr


# ------------------------------------------------ --apply when REPO is a subdirectory


def monorepo(tmp_path: Path) -> Path:
    """A repository whose REPO argument will be its subdirectory svc/."""
    top = tmp_path / "mono"
    (top / "svc").mkdir(parents=True)
    (top / "lib").mkdir()
    (top / "svc" / "app.py").write_text("x = 1\n")
    (top / "lib" / "util.py").write_text("y = 1\n")
    git(top, "init", "-q")
    git(top, "add", "-A")
    git(top, "commit", "-q", "-m", "two folders")
    return top


# The runtime works on the enclosing repository: the patch's paths are from its top.
BOTH = 'cd "$(git rev-parse --show-toplevel)" && sed -i s/1/2/ svc/app.py lib/util.py'
SUBMIT_BOTH = [cwm("bash", f"{BOTH} && git diff > fix.patch"), cwm("submit", "fix.patch")]


def run_apply(server: ScriptedServer, top: Path, env: dict) -> CliResult:
    args = ["run", str(top / "svc"), "--issue", "bump both", "--base-url", server.base_url]
    return run_cli([*args, "--model", "m", "--apply", "--traj", str(top.parent / "t.json")], env)


def test_apply_from_a_subdirectory_applies_every_hunk(tmp_path, cli_env):
    """Was: git apply ran in svc/ and silently skipped lib/util.py, exit 0."""
    top = monorepo(tmp_path)
    with ScriptedServer([*SUBMIT_BOTH, "Done."]) as server:
        result = run_apply(server, top, cli_env)
    assert result.returncode == 0, result.stderr
    assert "diff --git a/lib/util.py" in result.stdout
    assert (top / "svc" / "app.py").read_text() == "x = 2\n"
    assert (top / "lib" / "util.py").read_text() == "y = 2\n"


def test_apply_that_cannot_apply_every_hunk_changes_nothing_and_exits_6(tmp_path, cli_env):
    """The user edits lib/util.py while the agent works: its hunk no longer applies."""
    top = monorepo(tmp_path)

    def script(body: dict) -> object:
        posts = len(server.requests)
        if posts <= len(SUBMIT_BOTH):
            return SUBMIT_BOTH[posts - 1]
        if posts == len(SUBMIT_BOTH) + 1:
            (top / "lib" / "util.py").write_text("y = 3\n")  # the user, meanwhile
            return "Done."
        return None

    with ScriptedServer(script) as server:
        result = run_apply(server, top, cli_env)
    assert result.returncode == 6, result.stderr  # the user's tree changed (was 5, "a bug")
    assert "diff --git a/svc/app.py" in result.stdout  # the patch is still printed
    message = result.stderr[result.stderr.index("Error: ") :]
    assert f"the patch could not be applied to {top}; nothing was applied" in message
    assert "lib/util.py" in message and "hint: " in message
    assert (top / "svc" / "app.py").read_text() == "x = 1\n"  # all or nothing
    assert (top / "lib" / "util.py").read_text() == "y = 3\n"
    assert git(top, "status", "--porcelain") == " M lib/util.py\n"


# ------------------------------------------------ symlinks pointing out of the repository

LINKS = "ln -s /etc/hostname host-link && ln -s ../../outside svc/up-link && ln -s app.py svc/in"
SUBMIT_LINKS = [
    cwm("bash", f'cd "$(git rev-parse --show-toplevel)" && {LINKS}'),
    cwm(
        "bash",
        'cd "$(git rev-parse --show-toplevel)" && git add -A && git diff --cached > l.patch',
    ),
    cwm("submit", "l.patch"),
    "Done.",
]


def test_apply_and_validate_warn_of_symlinks_pointing_out_of_the_repository(tmp_path, cli_env):
    """Applied all the same (a link into /usr/share can be meant), but said: what is written
    through them lands outside. A link inside is not named."""
    top = monorepo(tmp_path)
    with ScriptedServer(SUBMIT_LINKS) as server:
        result = run_apply(server, top, cli_env)
    assert result.returncode == 0, result.stderr
    assert (top / "host-link").is_symlink()  # applied
    warning = next(line for line in result.stderr.splitlines() if "symlink(s)" in line)
    assert warning.startswith("warning: ")
    assert "2 symlink(s) pointing outside the repository" in warning
    assert "host-link -> /etc/hostname" in warning and "svc/up-link -> ../../outside" in warning
    assert "svc/in" not in warning
    git(top, "reset", "-q", "--hard")
    git(top, "clean", "-qfd")
    patch = tmp_path / "links.patch"
    patch.write_text(result.stdout)
    checked = run_cli(["validate", str(patch), "--repo", str(top)], cli_env)
    assert checked.returncode == 0, checked.stderr
    assert "warning: the patch adds 2 symlink(s) pointing outside" in checked.stderr


def test_outside_links_reads_modes_and_targets():
    from cwm_agent.patch_links import outside_links

    added = "diff --git a/{p} b/{p}\nnew file mode 120000\nindex 0000000..1111111\n--- /dev/null\n"
    added += "+++ b/{p}\n@@ -0,0 +1 @@\n+{t}\n\\ No newline at end of file\n"
    retarget = "diff --git a/m b/m\nindex 1111111..2222222 120000\n--- a/m\n+++ b/m\n"
    retarget += (
        "@@ -1 +1 @@\n-x\n\\ No newline at end of file\n+/srv\n\\ No newline at end of file\n"
    )
    patch = "".join(
        added.format(p=p, t=t)
        for p, t in [("a", "/etc"), ("d/b", "../c"), ("d/e", "../../f"), ("g", "/top/repo/x")]
    )
    found = outside_links(patch + retarget, "/top/repo")
    assert found == ["a -> /etc", "d/e -> ../../f", "m -> /srv"]
    assert outside_links(GIT, "/top/repo") == []  # a file, not a link
