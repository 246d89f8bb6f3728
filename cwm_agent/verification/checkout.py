"""A private checkout of a record's ``base_commit``, made without touching the user's clone.

The clone in ``--repos-dir`` is only read: a temporary ``git clone --shared
--no-checkout`` borrows its objects (no copy, no worktree registered in it), and the
base commit is checked out there. LocalRuntime then copies that working tree as usual.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cwm_agent.errors import RuntimeFailure, UsageError

# Shared with the local runtime: a clean git environment (no inherited GIT_DIR, optional
# locks off so read-only commands never rewrite the user's index).
from cwm_agent.runtimes.local import run_git

_REPO_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


def check_repo_name(repo: str, where: str) -> str:
    """``repo`` when it is ``owner/name``: anything else (``../private``, ``/abs``,
    ``a/b/c``) would reach a folder outside --repos-dir."""
    parts = repo.split("/")
    if not _REPO_NAME.fullmatch(repo) or any(p in (".", "..") for p in parts):
        raise UsageError(
            f"{where}: repo {repo!r} is not owner/name",
            hint='name the repository as on GitHub (e.g. "astropy/astropy"); its clone is '
            "found in --repos-dir as owner__name, owner/name or name",
        )
    return repo


def clone_candidates(repos_dir: Path, repo: str) -> list[Path]:
    """Where a clone of ``owner/name`` may live: owner__name, owner/name, then name."""
    owner, _, name = check_repo_name(repo, "the record").partition("/")
    return [repos_dir / f"{owner}__{name}", repos_dir / owner / name, repos_dir / name]


def find_clone(repos_dir: Path, repo: str) -> Path:
    candidates = clone_candidates(repos_dir, repo)
    for path in candidates:
        if path.is_dir():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise RuntimeFailure(
        f"no clone of {repo} in {repos_dir} (looked for {looked})",
        hint=f"git clone https://github.com/{repo} {candidates[0]}",
    )


@contextmanager
def checkout_at(clone: Path, commit: str) -> Iterator[Path]:
    """A temporary working tree of ``clone`` at ``commit``; removed on exit."""
    _require_commit(clone, commit)
    top = tempfile.mkdtemp(prefix="cwm-checkout-")
    # Named like the clone, so the agent's sandbox copy carries the project's name.
    work = Path(top) / (clone.resolve().name or "repo")
    try:
        run_git(top, "clone", "-q", "--shared", "--no-checkout", str(clone.resolve()), str(work))
        run_git(str(work), "checkout", "-q", "--detach", commit)
        yield work
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _require_commit(clone: Path, commit: str) -> None:
    try:
        run_git(str(clone), "cat-file", "-e", f"{commit}^{{commit}}")
    except RuntimeFailure as exc:
        raise RuntimeFailure(
            f"commit {commit} is not in the clone {clone}",
            hint=f"fetch it there (git -C {clone} fetch origin), or check the record's "
            f"base_commit ({exc.message})",
        ) from exc
