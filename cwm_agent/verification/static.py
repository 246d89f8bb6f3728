"""The static stage: what can be told about a candidate without running anything.

Checks, in order; the first that fails prunes the candidate, with its reason:

- ``parse``: the patch is a unified diff (unidiff) holding at least one file;
- ``nonempty``: something is left once whitespace-only hunks are dropped;
- ``non_test``: it changes code other than test infrastructure (``testinfra.py``);
- ``apply``: it applies to the base as SWE-bench's harness applies it
  (``applycmds.apply_patch``: the swebench package's ``GIT_APPLY_CMDS`` in order, the tree
  reset between them, then the harness's reverse check); a patch the base has already
  (every command fails or changes nothing) is pruned; run in a scratch tree holding only
  the touched files (``basecode.py``);
- ``compile``: every changed Python file of the code change still compiles (compiled, never
  run). A file that does not compile at the base either (another Python's syntax) is not
  held against the candidate.

A check that needs the base code when there is none is ``not_checked``, with the reason,
never passed: the candidate goes on and the record says what was not looked at.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from unidiff import PatchedFile, PatchSet
from unidiff.errors import UnidiffParseError

from cwm_agent.runtimes.gitcmd import SAFE_CONFIG, git_env
from cwm_agent.verification import pycheck
from cwm_agent.verification.applycmds import apply_patch
from cwm_agent.verification.basecode import GitBase
from cwm_agent.verification.testinfra import Split, split_patch

PASS, FAIL, NOT_CHECKED = "pass", "fail", "not_checked"
APPLY_TIMEOUT = 60.0  # seconds for one apply command (a huge patch under --fuzz)
PYTHON = f"Python {sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass, fail, not_checked
    reason: str = ""


@dataclass(frozen=True)
class StaticResult:
    checks: tuple[Check, ...]
    split: Split | None = None  # None: the patch does not parse

    @property
    def failure(self) -> Check | None:
        return next((c for c in self.checks if c.status == FAIL), None)

    @property
    def passed(self) -> bool:
        return self.failure is None

    @property
    def not_checked(self) -> list[Check]:
        return [c for c in self.checks if c.status == NOT_CHECKED]

    def row(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": {c.name: {"status": c.status, "reason": c.reason} for c in self.checks},
        }


def parse(patch: str) -> tuple[PatchSet | None, str]:
    """(the parsed patch, "") or (None, why it is not a patch)."""
    try:
        parsed = PatchSet(patch)
    except UnidiffParseError as exc:
        return None, f"not a unified diff: {exc}"
    if not len(parsed):
        return None, "holds no file change (not a unified diff)"
    return parsed, ""


def check(patch: str, base: GitBase | None, no_base: str) -> StaticResult:
    """Every static check of one candidate; ``no_base`` says why ``base`` is None."""
    parsed, problem = parse(patch)
    if parsed is None:
        return StaticResult((Check("parse", FAIL, problem),))
    split = split_patch(patch, parsed, base.text if base is not None else None)
    checks = [Check("parse", PASS)]
    meaningful = substantive_files(parsed)
    if not meaningful:
        checks.append(Check("nonempty", FAIL, "empty once whitespace-only hunks are dropped"))
        return StaticResult(tuple(checks), split)
    checks.append(Check("nonempty", PASS))
    if not meaningful & set(split.code_files):
        what = ", ".join(split.stripped) or ", ".join(sorted(meaningful))
        reason = f"changes only test infrastructure ({what}) or whitespace in code"
        checks.append(Check("non_test", FAIL, reason))
        return StaticResult(tuple(checks), split)
    checks.append(Check("non_test", PASS))
    applied = _apply(patch, parsed, base, no_base)
    checks.append(applied)
    if applied.status != FAIL:
        checks.append(_compile(parsed, split, base if applied.status == PASS else None))
    return StaticResult(tuple(checks), split)


def substantive_files(parsed: PatchSet) -> set[str]:
    """The files a patch really changes: whitespace-only hunks do not count."""
    found = set()
    for patched in parsed:
        whole = patched.is_binary_file or patched.is_added_file or patched.is_removed_file
        renamed = patched.is_rename if hasattr(patched, "is_rename") else False
        if whole or renamed or any(_changes(hunk) for hunk in patched):
            found.add(patched.path)
    return found


def _changes(hunk: Any) -> bool:
    """Not whitespace-only: the hunk's text before and after differ once trailing spaces
    and blank lines are set aside (indentation, spaces inside a line and the order of
    lines count: in Python and in strings they matter)."""
    before = [line.value.rstrip() for line in hunk if not line.is_added and line.value.strip()]
    after = [line.value.rstrip() for line in hunk if not line.is_removed and line.value.strip()]
    return before != after


def _source_paths(parsed: PatchSet) -> list[str]:
    """The base files a patch reads (what ``git apply -p1`` opens), in order."""
    paths = []
    for patched in parsed:
        for name in (patched.source_file, patched.target_file):
            if name and name != "/dev/null" and "/" in name:
                path = name.split("/", 1)[1]
                if path not in paths:
                    paths.append(path)
    return paths


def _apply(patch: str, parsed: PatchSet, base: GitBase | None, no_base: str) -> Check:
    if base is None:
        return Check("apply", NOT_CHECKED, no_base)
    paths = _source_paths(parsed)
    unsafe = [p for p in paths if p.startswith("/") or ".." in p.split("/")]
    if unsafe:
        return Check("apply", FAIL, f"a path leaves the repository: {unsafe[0]}")
    if any(base.is_symlink_path(p) for p in paths):
        return Check("apply", NOT_CHECKED, "touches a symbolic link of the base: left to execution")
    patch_file = base.scratch_file("candidate.patch")
    patch_file.write_bytes(patch.encode("utf-8", "surrogateescape"))
    base.reset(paths)
    applied = apply_patch(_Scratch(base, paths, str(patch_file)))
    changed = _changed(base, paths)
    if applied.command is not None and changed:
        return Check("apply", PASS, f"applies with `{applied.command}`")
    if applied.command is not None:  # --3way merges an applied patch to a no-op
        return Check(
            "apply", FAIL, f"already applied at the base: `{applied.command}` changes nothing"
        )
    if applied.already and not changed:
        return Check("apply", FAIL, "already applied at the base: it changes nothing")
    if applied.already:
        return Check("apply", PASS, "applied by the harness's commands, though each exited "
                     "non-zero (`git apply --check --reverse` finds it applied)")  # fmt: skip
    return Check(
        "apply", FAIL, f"does not apply to the base with any of the harness's commands: "
        f"{_last_line(applied.output)}"
    )  # fmt: skip


class _Scratch:
    """The base's scratch tree as ``applycmds.apply_patch`` applies to it."""

    def __init__(self, base: GitBase, paths: list[str], patch_file: str) -> None:
        self.base, self.paths, self.patch_file = base, paths, patch_file

    def attempt(self, command: str) -> tuple[int, str]:
        if "--3way" in command:  # a merge reads the index: it must hold the base
            self.base.index(self.paths)
        return _run(self.base, command, self.patch_file)

    def reset(self) -> None:
        self.base.reset(self.paths)


def _changed(base: GitBase, paths: list[str]) -> bool:
    """The scratch tree differs from the base in one of the patch's files."""
    for path in paths:
        file = base.work / path
        after = file.read_bytes() if file.is_file() else None
        if after != base.read(path):
            return True
        entry = base.tree.get(path)
        if after is not None and entry and (entry.mode == "100755") != os.access(file, os.X_OK):
            return True  # a mode change
    return False


def _run(base: GitBase, command: str, patch_file: str) -> tuple[int, str]:
    argv = command.split()
    if argv[0] == "git":
        argv = ["git", *SAFE_CONFIG, *argv[1:]]
    try:
        proc = subprocess.run(
            [*argv, patch_file],
            cwd=base.work,
            env=git_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=APPLY_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return -1, f"`{command}` ran past {APPLY_TIMEOUT:.0f} s"
    output = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip()
    return proc.returncode, output or f"exit {proc.returncode}"


def _last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return (lines[-1] if lines else output)[:300]


def _compile(parsed: PatchSet, split: Split, base: GitBase | None) -> Check:
    """Every changed Python file of the code change, compiled as it is after the patch."""
    code_files = set(split.code_files)
    files = [f for f in parsed if f.path.endswith(".py") and f.path in code_files]
    files = [f for f in files if not f.is_removed_file]
    unchecked = []
    for patched in files:
        after = _patched_text(patched, base)
        if after is None:
            unchecked.append(patched.path)
            continue
        before = base.read(patched.path) if base is not None else None
        error = pycheck.syntax_error(after, before, patched.path)
        if error is None:
            continue
        if before is not None and not pycheck.compiles(before, patched.path):
            unchecked.append(f"{patched.path} (does not compile at the base with {PYTHON})")
            continue
        return Check("compile", FAIL, error)
    if not files:
        return Check("compile", PASS, "no Python file changed")
    if unchecked:
        why = "no base code for " if base is None else ""
        return Check("compile", NOT_CHECKED, why + ", ".join(unchecked))
    return Check("compile", PASS, f"{len(files)} Python file(s) compile with {PYTHON}")


def _patched_text(patched: PatchedFile, base: GitBase | None) -> bytes | None:
    if base is not None:
        path = base.work / patched.path
        return path.read_bytes() if path.is_file() else None
    if patched.is_added_file:  # a new file is whole in the patch: no base needed
        text = "".join(line.value for hunk in patched for line in hunk if line.is_added)
        return text.encode("utf-8", "surrogateescape")
    return None
