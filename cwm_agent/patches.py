"""Patch validation: structure first (unidiff), then ``git apply --check`` on the base.

A patch is printed only after both layers pass.  Chatter is rejected, not repaired:
a patch *file* made by ``git diff`` never has prose or code fences around it, so
guessing where a diff starts would only hide a model's mistake.
"""

from __future__ import annotations

import io
import os
import posixpath
import subprocess
import tempfile
from collections.abc import Iterator

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from .errors import PatchError
from .patch_size import PatchTooLarge, check_size

__all__ = ["BaseRepoError", "PatchTooLarge", "check_applies", "check_structure", "validate_patch"]

MAKE_PATCH_HINT = "make the patch file with `git diff > fix.patch` from the repository root"

# Lines a git (or plain unified) diff may hold outside its hunks.
_HEADER_PREFIXES = (
    "diff ", "--- ", "+++ ", "index ", "old mode ", "new mode ", "new file mode ",
    "deleted file mode ", "similarity index ", "dissimilarity index ", "rename from ",
    "rename to ", "copy from ", "copy to ", "GIT binary patch", "\\ ",
)  # fmt: skip
# Header lines that make a file diff without hunks meaningful.
_HUNKLESS_OK = (
    "new file mode ", "deleted file mode ", "old mode ", "rename from ", "copy from ",
    "GIT binary patch",
)  # fmt: skip
_GIT_TIMEOUT = 120.0


class BaseRepoError(PatchError):
    """``repo_dir`` or ``base`` is unusable: the harness's problem, not the patch's."""


def validate_patch(
    text: str,
    repo_dir: str,
    base: str,
    exclude: tuple[str, ...] = (),
    *,
    max_bytes: int | None = None,
) -> str:
    """Return ``text`` normalized (files in ``exclude`` removed, one final newline).

    (A trailing git binary patch keeps the one blank line git needs after its data.)
    Raises ``PatchError`` naming the problem: more than ``max_bytes`` (``PatchTooLarge``,
    checked first: nothing of a huge text is parsed), empty text, chatter, bad hunk
    counts, hunkless file diffs, binary diffs without data, or a ``git apply --check``
    failure against a pristine copy of ``base`` (``BaseRepoError`` when
    ``repo_dir``/``base`` themselves are the problem).
    """
    if max_bytes is not None:
        check_size(text, max_bytes)
    patch = check_structure(text, exclude)
    check_applies(patch, repo_dir, base)
    return patch


# ------------------------------------------------------------------------------ structure


def check_structure(text: str, exclude: tuple[str, ...] = ()) -> str:
    """The repository-free layer of ``validate_patch``; returns the normalized patch."""
    if not text.strip():
        raise PatchError("the patch is empty", MAKE_PATCH_HINT)
    lines = list(io.StringIO(text))  # splits on "\n" only, exactly like unidiff
    _reject_leading_chatter(lines)
    patch = _parse(lines)
    if not patch:
        raise PatchError(
            "the diff has no complete file header ('--- a/PATH' followed by '+++ b/PATH')",
            MAKE_PATCH_HINT,
        )
    hunk_lines = _hunk_line_indexes(patch)
    starts, stray = _file_starts(lines, hunk_lines)
    segments = [lines[a:b] for a, b in zip(starts, starts[1:] + [len(lines)], strict=True)]
    paths = [
        _check_file(seg, first, hunk_lines) for first, seg in zip(starts, segments, strict=True)
    ]
    if stray:  # after the per-file check: "file X has no hunks" explains more
        raise stray
    skip = {_norm(path) for path in exclude}
    kept = [
        _trim(segment, first, hunk_lines)
        for first, segment, path in zip(starts, segments, paths, strict=True)
        if _norm(path) not in skip
    ]
    if not kept:
        raise PatchError(
            f"the patch only changes files that cannot be submitted ({', '.join(exclude)})",
            "change the repository's files, then run `git diff > fix.patch` again",
        )
    return "".join(kept)


def _reject_leading_chatter(lines: list[str]) -> None:
    if not any(line.startswith(("diff --git ", "--- ")) for line in lines):
        raise PatchError(
            "no diff headers found (no 'diff --git' or '--- a/PATH' line): "
            f"the text does not look like a patch (it starts with {_quote(_first(lines))})",
            MAKE_PATCH_HINT,
        )
    number, line = next((n, s) for n, s in enumerate(lines, 1) if s.strip())
    if not line.startswith(("diff ", "--- ")):
        raise PatchError(
            f"the patch starts with text that is not part of a diff (line {number}: "
            f"{_quote(line)}); the file must hold only diff output, without explanations "
            "or ``` fences",
            MAKE_PATCH_HINT,
        )


def _parse(lines: list[str]) -> PatchSet:
    position = [0]

    def feed() -> Iterator[str]:
        for number, line in enumerate(lines, 1):
            position[0] = number  # where unidiff was when it raised
            yield line

    try:
        return PatchSet(feed())
    except UnidiffParseError as exc:
        raise PatchError(_locate(str(exc), lines, position[0]), MAKE_PATCH_HINT) from None


def _locate(problem: str, lines: list[str], number: int) -> str:
    """Turn a unidiff error into a message naming the file, hunk and line."""
    before = lines[: max(number - 1, 0)]
    hunk = next((s for s in reversed(before) if s.startswith("@@")), None)
    file = next((s for s in reversed(before) if s.startswith(("+++ ", "diff --git "))), None)
    where = f"line {number}"
    if file:
        where += f", file {_quote(file)}"
    if problem.startswith(("Unexpected hunk found", "Target without source")):
        return (
            f"cannot parse the diff at {where}: {_quote(lines[number - 1])} is not preceded by "
            "its file's '--- a/PATH' and '+++ b/PATH' header lines (in that order)"
        )
    if not problem.startswith("Hunk") or hunk is None:
        return f"cannot parse the diff at {where}: {problem.strip()}"
    if problem.startswith("Hunk is longer"):
        what = "has more lines than its @@ header counts"
    else:
        what = "has fewer lines than its @@ header counts"
        if problem.startswith("Hunk diff line expected"):
            what += f" (line {number}, {_quote(lines[number - 1])}, is not a ' ', '+' or '-' line)"
    return (
        f"bad hunk {_quote(hunk)} at {where}: the hunk {what}; "
        "hand-edited hunks usually get these counts wrong"
    )


def _hunk_line_indexes(patch: PatchSet) -> set[int]:
    """0-based indexes of every hunk header and counted hunk line."""
    indexes: set[int] = set()
    for patched_file in patch:
        for hunk in patched_file:
            numbers = [line.diff_line_no for line in hunk if line.diff_line_no is not None]
            if numbers:
                indexes.add(min(numbers) - 2)  # the @@ header just before the first line
                indexes.update(n - 1 for n in numbers)
    return indexes


def _file_starts(lines: list[str], hunk_lines: set[int]) -> tuple[list[int], PatchError | None]:
    """Index of each file diff's first line, and the error for the first stray line."""
    starts: list[int] = []
    stray: PatchError | None = None
    in_git_header = binary = False
    for index, line in enumerate(lines):
        if index in hunk_lines:
            in_git_header = False
        elif line.startswith("diff "):
            starts.append(index)
            in_git_header, binary = True, False
        elif binary or not line.strip():
            continue
        elif line.startswith("Binary files "):
            raise PatchError(
                f"line {index + 1} is a binary change without its data ({_quote(line)})",
                "make the patch with `git diff --binary > fix.patch`",
            )
        elif line.startswith("GIT binary patch"):
            binary = True
        elif line.startswith("--- "):
            if not in_git_header:
                starts.append(index)
            in_git_header = False
        elif stray is None and not line.startswith(_HEADER_PREFIXES):
            stray = _stray_line(lines, index, hunk_lines)
    return starts, stray


def _stray_line(lines: list[str], index: int, hunk_lines: set[int]) -> PatchError:
    line = lines[index]
    if index - 1 in hunk_lines and line[:1] in ("+", "-", " "):
        hunk = next(s for s in reversed(lines[:index]) if s.startswith("@@"))
        return PatchError(
            f"bad hunk {_quote(hunk)}: line {index + 1} ({_quote(line)}) continues the hunk "
            "but is not counted in its @@ header (the hunk has more lines than its header "
            "says); hand-edited hunks usually get these counts wrong",
            MAKE_PATCH_HINT,
        )
    return PatchError(
        f"line {index + 1} is not part of a diff ({_quote(line)}); "
        "the file must hold only diff output, without explanations or ``` fences",
        MAKE_PATCH_HINT,
    )


def _check_file(segment: list[str], first: int, hunk_lines: set[int]) -> str:
    """Reject a file diff that changes nothing; return its path."""
    has_hunks = any(first + i in hunk_lines for i in range(len(segment)))
    try:
        files = list(PatchSet(segment))
    except UnidiffParseError:  # cannot happen for a segment of a parsed patch
        files = []
    path = files[0].path if files else segment[0].split()[-1]
    if not has_hunks and not any(line.startswith(_HUNKLESS_OK) for line in segment):
        bad = next((i for i, line in enumerate(segment) if line.startswith("@@")), None)
        if bad is not None:
            raise PatchError(
                f"line {first + bad + 1} ({_quote(segment[bad])}) is not a valid hunk header: "
                "expected '@@ -START,COUNT +START,COUNT @@'",
                MAKE_PATCH_HINT,
            )
        raise PatchError(
            f"the diff for {_quote(path)} (line {first + 1}) has no hunks: "
            "expected '--- a/PATH' and '+++ b/PATH' headers followed by '@@ ... @@' hunks",
            MAKE_PATCH_HINT,
        )
    return path


def _trim(segment: list[str], first: int, hunk_lines: set[int]) -> str:
    """Drop trailing blank lines that are not counted hunk lines; end with one newline.

    A git binary patch keeps one trailing blank line: git needs it to end the data.
    """
    end = len(segment)
    if any(line.startswith("GIT binary patch") for line in segment):
        while end > 2 and not segment[end - 1].strip() and not segment[end - 2].strip():
            end -= 1
    else:
        while end > 1 and not segment[end - 1].strip() and first + end - 1 not in hunk_lines:
            end -= 1
    text = "".join(segment[:end])
    return text if text.endswith("\n") else text + "\n"


def _norm(path: str) -> str:
    path = posixpath.normpath(path.strip())
    return path[2:] if path.startswith("./") else path


def _first(lines: list[str]) -> str:
    return next((line for line in lines if line.strip()), "")


def _quote(line: str, limit: int = 80) -> str:
    line = line.rstrip("\r\n")
    return repr(line if len(line) <= limit else line[:limit] + "...")


# ------------------------------------------------------------------------ applicability


def check_applies(patch: str, repo_dir: str, base: str) -> None:
    """``git apply --check`` against ``base`` as a fresh checkout would see it.

    A throw-away index filled with ``git read-tree BASE`` stands in for the
    checkout, and ``git apply --cached`` checks against that index only, so the
    working tree (and whatever the agent changed in it) plays no part.
    """
    top = _toplevel(repo_dir)
    if not base or base.startswith("-"):
        raise BaseRepoError(f"invalid base commit {base!r}", "pass a commit id or ref")
    with tempfile.TemporaryDirectory(prefix="cwm-agent-index-") as tmp:
        env = _git_env(os.path.join(tmp, "index"))
        result = _git(["read-tree", base], top, env)
        if result.returncode:
            raise BaseRepoError(
                f"cannot read base commit {base!r} in {top}: {result.stderr.strip()}",
                "pass the commit the patch was made against (see `git log`)",
            )
        data = patch.encode("utf-8", "surrogateescape")
        result = _git(["apply", "--cached", "--check", "-"], top, env, data)
    if result.returncode:
        raise PatchError(
            f"`git apply --check` failed against the base commit {base[:12]}:\n"
            f"{result.stderr.strip() or '(git gave no message)'}",
            "the patch must apply to the original files: "
            f"{MAKE_PATCH_HINT} instead of writing or editing it by hand",
        )


def _toplevel(repo_dir: str) -> str:
    # git apply run from a subdirectory silently ignores paths outside it.
    if not os.path.isdir(repo_dir):
        raise BaseRepoError(f"repository directory {repo_dir!r} does not exist")
    result = _git(["rev-parse", "--show-toplevel"], repo_dir, _git_env(None))
    if result.returncode:
        raise BaseRepoError(
            f"{repo_dir!r} is not a git repository: {result.stderr.strip()}",
            "validate against the repository the patch was made for",
        )
    return result.stdout.strip()


def _git_env(index_file: str | None) -> dict[str, str]:
    # An inherited GIT_DIR/GIT_INDEX_FILE (e.g. inside a git hook) would point git elsewhere.
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE")}
    env.pop("GIT_INDEX_FILE", None)
    if index_file:
        env["GIT_INDEX_FILE"] = index_file
    env["LC_ALL"] = "C"  # git's messages are quoted back; keep them stable
    return env


def _git(
    args: list[str], cwd: str, env: dict[str, str], data: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, env=env, input=data, capture_output=True,
            timeout=_GIT_TIMEOUT, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        raise BaseRepoError("git is not installed", "install git and retry") from None
    except subprocess.TimeoutExpired:
        raise BaseRepoError(f"git {args[0]} took longer than {_GIT_TIMEOUT:g} s") from None
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode("utf-8", "replace"),
        result.stderr.decode("utf-8", "replace"),
    )
