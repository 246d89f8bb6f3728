"""Patch validation on real temp git repositories (and, when present, real model patches)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import SHARED_DATA, git
from hypothesis import given, settings
from hypothesis import strategies as st

from cwm_agent.errors import PatchError
from cwm_agent.patches import BaseRepoError, check_applies, check_structure, validate_patch

DATA = SHARED_DATA
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "app.py").write_text("".join(f"line {i}\n" for i in range(1, 21)))
    (root / "pkg" / "util.py").write_text("def f():\n    return 1\n")
    (root / "logo.bin").write_bytes(bytes(range(256)))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    return root


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def diff_of_changes(repo: Path) -> str:
    """Change, add, delete and a binary edit; return `git diff --binary` and reset."""
    (repo / "pkg" / "app.py").write_text(
        (repo / "pkg" / "app.py").read_text().replace("line 5\n", "line five\n")
    )
    (repo / "pkg" / "new.py").write_text("x = 1\n")
    (repo / "pkg" / "util.py").unlink()
    (repo / "logo.bin").write_bytes(bytes(range(255, -1, -1)))
    git(repo, "add", "-N", "pkg/new.py")
    patch = git(repo, "diff", "--binary")
    git(repo, "reset", "-q", "--hard")
    (repo / "pkg" / "new.py").unlink(missing_ok=True)  # reset --hard drops intent-to-add files
    return patch


def test_real_git_diff_passes_unchanged(repo):
    patch = diff_of_changes(repo)
    assert "GIT binary patch" in patch and "new file mode" in patch
    assert validate_patch(patch, str(repo), head(repo)) == patch


def test_checks_the_base_not_the_working_tree(repo):
    base = head(repo)
    patch = diff_of_changes(repo)
    # The working tree already has the change: applying there would fail, on the base it works.
    git(repo, "apply", input=patch.encode())
    assert validate_patch(patch, str(repo), base) == patch
    # Committed on top: still judged against the given base commit.
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "later")
    assert validate_patch(patch, str(repo), base) == patch
    with pytest.raises(PatchError, match="git apply --check` failed against the base commit"):
        validate_patch(patch, str(repo), head(repo))


def test_agrees_with_a_fresh_checkout(repo, tmp_path):
    base = head(repo)
    good = diff_of_changes(repo)
    stale = good.replace("-line 5\n", "-line 55\n")
    creates_existing = (
        "diff --git a/pkg/util.py b/pkg/util.py\nnew file mode 100644\nindex 0000000..e69de29\n"
        "--- /dev/null\n+++ b/pkg/util.py\n@@ -0,0 +1 @@\n+y = 2\n"
    )
    deletes_missing = (
        "diff --git a/gone.py b/gone.py\ndeleted file mode 100644\nindex 1234567..0000000\n"
        "--- a/gone.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n"
    )
    touches_untracked = "--- a/untracked.py\n+++ b/untracked.py\n@@ -1 +1 @@\n-dirty\n+clean\n"
    trailing_space = good.replace("+line five\n", "+line five   \n")
    (repo / "untracked.py").write_text("dirty\n")
    (repo / "pkg" / "app.py").write_text("uncommitted\n")
    on_dirty_tree = "--- a/pkg/app.py\n+++ b/pkg/app.py\n@@ -1 +1 @@\n-uncommitted\n+x\n"
    checkout = tmp_path / "fresh"
    git(repo, "worktree", "add", "-q", "--detach", str(checkout), base)
    cases = (good, stale, creates_existing, deletes_missing, touches_untracked, trailing_space)
    verdicts = []
    for patch in (*cases, on_dirty_tree):
        fresh = subprocess.run(
            ["git", "apply", "--check", "-"], cwd=checkout, input=patch.encode(),
            capture_output=True, check=False,
        )  # fmt: skip
        try:
            check_applies(patch, str(repo), base)
            ours = True
        except PatchError:
            ours = False
        assert ours == (fresh.returncode == 0)
        verdicts.append(ours)
    assert verdicts == [True, False, False, False, False, True, False]


def test_git_failure_quotes_git(repo):
    patch = diff_of_changes(repo).replace("-line 5\n", "-line 55\n")
    with pytest.raises(PatchError) as caught:
        validate_patch(patch, str(repo), head(repo))
    assert "error: patch failed: pkg/app.py:2" in caught.value.message
    assert "git diff > fix.patch" in caught.value.hint


def test_repo_dir_in_a_subdirectory_still_checks_every_path(repo):
    patch = diff_of_changes(repo).replace("-line 5\n", "-line 55\n")
    with pytest.raises(PatchError):
        validate_patch(patch, str(repo / "pkg"), head(repo))


def test_exclude_drops_the_submitted_patch_file(repo):
    patch = diff_of_changes(repo)
    git(repo, "apply", input=patch.encode())
    (repo / "fix.patch").write_text(patch)
    git(repo, "add", "-N", "pkg/new.py")
    git(repo, "add", "-N", "fix.patch")
    with_self = git(repo, "diff", "--binary")
    assert "b/fix.patch" in with_self
    result = validate_patch(with_self, str(repo), head(repo), exclude=("./fix.patch",))
    assert "fix.patch" not in result
    assert result == patch


def test_excluding_everything_is_an_error():
    patch = "--- a/f.patch\n+++ b/f.patch\n@@ -1 +1 @@\n-a\n+b\n"
    with pytest.raises(PatchError, match="only changes files that cannot be submitted"):
        check_structure(patch, exclude=("f.patch",))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the patch is empty"),
        ("  \n\t\n", "the patch is empty"),
        (
            "I fixed the bug by changing add().",
            "no diff headers found (no 'diff --git' or '--- a/PATH' line): the text does not "
            "look like a patch (it starts with 'I fixed the bug by changing add().')",
        ),
        (
            "Here is the patch:\n```diff\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n```\n",
            "the patch starts with text that is not part of a diff (line 1: 'Here is the "
            "patch:'); the file must hold only diff output, without explanations or ``` fences",
        ),
        (
            "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n```\nThis fixes it.\n",
            "line 6 is not part of a diff ('```'); the file must hold only diff output, "
            "without explanations or ``` fences",
        ),
        (
            "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n",
            "bad hunk '@@ -1,3 +1,3 @@' at line 7, file '+++ b/x.py': the hunk has fewer lines "
            "than its @@ header counts; hand-edited hunks usually get these counts wrong",
        ),
        (
            "--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n```\n",
            "bad hunk '@@ -1,3 +1,3 @@' at line 7, file '+++ b/x.py': the hunk has fewer lines "
            "than its @@ header counts (line 7, '```', is not a ' ', '+' or '-' line); "
            "hand-edited hunks usually get these counts wrong",
        ),
        (
            "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n a\n-b\n+c\n",
            "bad hunk '@@ -1 +1 @@': line 5 ('-b') continues the hunk but is not counted in "
            "its @@ header (the hunk has more lines than its header says); hand-edited hunks "
            "usually get these counts wrong",
        ),
        (
            "--- a/x.py\n+++ b/x.py\n@@ -1,2 +1 @@\n a\n+c\n-b\n",
            "bad hunk '@@ -1,2 +1 @@' at line 5, file '+++ b/x.py': the hunk has more lines "
            "than its @@ header counts; hand-edited hunks usually get these counts wrong",
        ),
        (
            "diff --git a/src b/src\n+ // Certified Fix\n",
            "the diff for 'src' (line 1) has no hunks: expected '--- a/PATH' and '+++ b/PATH' "
            "headers followed by '@@ ... @@' hunks",
        ),
        (
            "--- a/x.py\n",
            "the diff has no complete file header ('--- a/PATH' followed by '+++ b/PATH')",
        ),
        (
            "diff --git a/l.bin b/l.bin\nindex 1..2 100644\n"
            "Binary files a/l.bin and b/l.bin differ\n",
            "line 3 is a binary change without its data ('Binary files a/l.bin and b/l.bin "
            "differ')",
        ),
    ],
)
def test_structural_problems_are_named(text, message):
    with pytest.raises(PatchError) as caught:
        check_structure(text)
    assert caught.value.message == message


def test_normalizes_final_newlines_but_keeps_counted_blank_context():
    body = "--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n-a\n+b\n\n"  # last "\n" = empty context
    assert check_structure(body + "\n\n") == body
    assert check_structure("\n\n" + body) == body  # leading blank lines dropped too
    assert check_structure("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b") == (
        "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"
    )


def test_hunkless_git_headers_are_fine():
    rename = "diff --git a/a.py b/b.py\nsimilarity index 100%\nrename from a.py\nrename to b.py\n"
    mode = "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n"
    empty = "diff --git a/e.txt b/e.txt\nnew file mode 100644\nindex 0000000..e69de29\n"
    assert check_structure(rename + mode + empty) == rename + mode + empty


def test_repo_and_base_problems(repo, tmp_path):
    patch = diff_of_changes(repo)
    with pytest.raises(BaseRepoError, match="does not exist"):
        validate_patch(patch, str(tmp_path / "nope"), "HEAD")
    (tmp_path / "plain").mkdir()
    with pytest.raises(BaseRepoError, match="is not a git repository") as caught:
        validate_patch(patch, str(tmp_path / "plain"), "HEAD")
    assert caught.value.hint
    with pytest.raises(BaseRepoError, match="cannot read base commit 'deadbeef'"):
        validate_patch(patch, str(repo), "deadbeef")
    with pytest.raises(BaseRepoError, match="invalid base commit"):
        validate_patch(patch, str(repo), "--help")


DIFF_PIECES = [
    "diff --git a/x b/x\n", "--- a/x\n", "+++ b/x\n", "@@ -1 +1 @@\n", "@@ -1,2 +1 @@\n",
    "-a\n", "+b\n", " c\n", "\n", "\\ No newline at end of file\n", "GIT binary patch\n",
    "literal 3\n", "new file mode 100644\n", "--- /dev/null\n", "-- x\n", "\r\n", "\x00",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(DIFF_PIECES), st.text(max_size=10)), max_size=25))
def test_fuzz_structure_raises_only_patch_errors(pieces):
    try:
        result = check_structure("".join(pieces))
    except PatchError as exc:
        assert exc.message
    else:
        assert result.endswith("\n")


# ------------------------------------------------------------------ real data (optional)


def _rows(name: str) -> list[dict]:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_real_malformed_patches_are_all_rejected():
    for row in _rows("model_patches_malformed.jsonl"):
        with pytest.raises(PatchError) as caught:
            check_structure(row["model_patch"])
        assert caught.value.message, row["instance_id"]


def test_real_model_patches_pass_structurally():
    rows = _rows("model_patches.jsonl")
    accepted = 0
    for row in rows:
        text = row["model_patch"]
        if not text.strip():  # the data set holds a few empty predictions
            with pytest.raises(PatchError, match="the patch is empty"):
                check_structure(text)
            continue
        result = check_structure(text)
        assert result.endswith("\n") and not result.endswith("\n\n\n")
        accepted += 1
    assert accepted >= 190


def test_binary_patch_at_the_end_keeps_its_blank_line(repo):
    base = head(repo)
    (repo / "logo.bin").write_bytes(b"\x00\x01new")
    patch = git(repo, "diff", "--binary")
    assert patch.endswith("\n\n")
    assert validate_patch(patch + "\n\n", str(repo), base) == patch
    with pytest.raises(PatchError, match="corrupt binary patch"):
        validate_patch(patch[:-1], str(repo), base)
