"""The base of a local run and the model's own repository, made without copying the tree.

- ``locate``: the user's work tree, git directory and object store (read-only from here on).
- ``make_base``: a harness-owned repository (out of the commands' reach) whose object store
  borrows the user's (alternates) and whose base commit is the user's HEAD, or, when the
  working tree has uncommitted or untracked changes, a commit of that state on top of HEAD.
  Staging starts from a copy of the user's index, so git hashes only what the user changed.
- ``make_model_git``: the ``.git`` the model's commands see: HEAD's ancestors and nothing
  else (one ref), borrowing objects the same way; writable, disposable.

Nothing here writes to the user's repository or object store: new objects go to the
harness repository, the index is a copy.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import RuntimeFailure
from .gitcmd import run_git

BASE_REF = "refs/cwm-agent/base"
# Byproducts of running Python that must not end up in a patch as new files.
DEFAULT_EXCLUDES = "__pycache__/\n*.py[cod]\n.pytest_cache/\n"
# The model's repository: its own `git commit` works anywhere, nothing of the user's setup
# (hooks, signing, fsmonitor, background gc) runs in it; stat data is compared the way
# that holds across the sandbox's view (its uids and inode numbers may differ).
MODEL_CONFIG = {
    "user.name": "cwm-agent",
    "user.email": "cwm-agent@localhost",
    "commit.gpgsign": "false",
    "core.hooksPath": "/dev/null",
    "core.fsmonitor": "false",
    "core.checkStat": "minimal",
    "gc.auto": "0",
}


@dataclass(frozen=True)
class UserRepo:
    """Where the user's repository lives (only ever read)."""

    top: Path  # the work tree's top directory
    git_dir: Path  # its git directory (a worktree's own one)
    common_dir: Path  # the directory with objects/, shallow, info/
    head: str | None  # HEAD's commit; None before the first commit
    branch: str | None  # refs/heads/NAME when HEAD is on a branch
    subdir: str  # REPO relative to top ("" when REPO is the top)

    @property
    def objects(self) -> Path:
        return self.common_dir / "objects"


@dataclass(frozen=True)
class Base:
    """The pristine base: ``commit`` in the repository at ``repo`` (an empty work tree)."""

    repo: str
    commit: str
    index: str  # the base tree staged, with the stat data of the files it came from


def locate(repo: str | Path) -> UserRepo:
    path = Path(repo).expanduser().resolve()
    if not path.is_dir():
        raise RuntimeFailure(
            f"repository not found: {path}",
            hint="pass the path of a git working tree (REPO defaults to '.')",
        )
    try:
        out = run_git(
            str(path), "rev-parse", "--show-toplevel", "--absolute-git-dir", "--git-common-dir"
        )
    except RuntimeFailure as exc:
        raise RuntimeFailure(
            f"{path} is not a git working tree: {exc.message}",
            hint="run `git init` there, or pass the repository's path",
        ) from exc
    top, git_dir, common = os.fsdecode(out).splitlines()[:3]
    head = _maybe(path, "rev-parse", "-q", "--verify", "HEAD^{commit}")
    branch = _maybe(path, "symbolic-ref", "-q", "HEAD")
    subdir = os.path.relpath(path, top)
    return UserRepo(
        Path(top),
        Path(git_dir),
        (path / common).resolve(),
        head,
        branch,
        "" if subdir == "." else subdir,
    )


def _maybe(cwd: Path, *args: str) -> str | None:
    try:
        return os.fsdecode(run_git(str(cwd), *args)).strip() or None
    except RuntimeFailure:
        return None


def make_base(user: UserRepo, top: str, prefix: tuple[str, ...] = ()) -> Base:
    """The harness's base repository at ``top/base`` (see the module docstring). ``prefix``
    runs the git commands that read the user's objects (``sandbox.read_only``)."""
    repo = os.path.join(top, "base")
    os.mkdir(repo)
    git_dir = os.path.join(repo, ".git")
    run_git(repo, "init", "-q", "--template=")
    run_git(repo, "config", "core.checkStat", "minimal")  # see MODEL_CONFIG
    _borrow(git_dir, user, extra_alternates=())
    index = os.path.join(top, "base.index")
    env = {"GIT_DIR": git_dir, "GIT_WORK_TREE": str(user.top), "GIT_INDEX_FILE": index}
    user_index = user.git_dir / "index"
    try:
        if user_index.is_file():
            shutil.copy2(user_index, index)  # its stat data: only changed files are hashed
        stage_all(str(user.top), str(user.top), env, prefix)
    except RuntimeFailure:  # e.g. a split index, whose shared part is not copied: start over
        if os.path.exists(index):
            os.unlink(index)
        stage_all(str(user.top), str(user.top), env, prefix)
    out = run_git(repo, "write-tree", env={"GIT_INDEX_FILE": index}, prefix=prefix)
    tree, commit = os.fsdecode(out).strip(), user.head
    if commit is None or _tree_of(repo, commit) != tree:
        parents = ("-p", commit) if commit else ()
        message = "cwm-agent baseline: the working tree's uncommitted and untracked changes"
        out = run_git(repo, "commit-tree", tree, *parents, "-m", message, prefix=prefix)
        commit = os.fsdecode(out).strip()
    run_git(repo, "update-ref", BASE_REF, commit)
    return Base(repo, commit, index)


def stage_all(cwd: str, view: str, env: dict[str, str], prefix: tuple[str, ...] = ()) -> None:
    """``git add -A`` of the work tree (seen at ``view`` from here), leaving out untracked
    nested repositories: they are not the project's files, and git refuses those without
    a commit."""
    out = run_git(
        cwd, "ls-files", "-z", "--others", "--exclude-standard", "--directory", env=env,
        prefix=prefix,
    )  # fmt: skip
    nested = [
        name
        for name in (os.fsdecode(n) for n in out.split(b"\0"))
        if name.endswith("/") and os.path.lexists(os.path.join(view, name, ".git"))
    ]
    specs = [f":(exclude,literal){name}" for name in nested]
    # First compare without writing: `add` would write an object for every file it hashes
    # (the racily clean ones too) where the user's store, read-only to us, has it already.
    try:
        run_git(cwd, "update-index", "-q", "--refresh", env=env, prefix=prefix)
    except RuntimeFailure:  # "needs update" for changed files: exactly what add is for
        pass
    run_git(cwd, "add", "-A", "--", ":/", *specs, env=env, prefix=prefix)


def _tree_of(repo: str, commit: str) -> str:
    return os.fsdecode(run_git(repo, "rev-parse", f"{commit}^{{tree}}")).strip()


def make_model_git(git_dir: str, user: UserRepo, base: Base) -> None:
    """The model's ``.git`` at ``git_dir``: one ref at the base, history through alternates."""
    run_git(os.path.dirname(git_dir) or ".", "init", "-q", "--bare", "--template=", git_dir)
    for key, value in {"core.bare": "false", **MODEL_CONFIG}.items():
        run_git(git_dir, "config", key, value, env={"GIT_DIR": git_dir})
    _borrow(git_dir, user, extra_alternates=(os.path.join(base.repo, ".git", "objects"),))
    env = {"GIT_DIR": git_dir}
    if user.branch:
        run_git(git_dir, "update-ref", user.branch, base.commit, env=env)
        run_git(git_dir, "symbolic-ref", "HEAD", user.branch, env=env)
    else:
        run_git(git_dir, "update-ref", "--no-deref", "HEAD", base.commit, env=env)


def _borrow(git_dir: str, user: UserRepo, extra_alternates: tuple[str, ...]) -> None:
    """Objects from the user's store (read-only), shallow history as the user has it, and
    the user's own ignore rules plus ours."""
    info = os.path.join(git_dir, "objects", "info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "alternates"), "w", encoding="utf-8") as f:
        f.write("".join(f"{p}\n" for p in (*extra_alternates, str(user.objects))))
    shallow = user.common_dir / "shallow"
    if shallow.is_file():
        shutil.copyfile(shallow, os.path.join(git_dir, "shallow"))
    os.makedirs(os.path.join(git_dir, "info"), exist_ok=True)
    exclude = user.common_dir / "info" / "exclude"
    rules = exclude.read_text(errors="replace") if exclude.is_file() else ""
    with open(os.path.join(git_dir, "info", "exclude"), "w", encoding="utf-8") as f:
        f.write(rules + "\n" + DEFAULT_EXCLUDES)


@dataclass(frozen=True)
class ObjectStores:
    """The user's object stores the sandbox must see, and the alternates left out."""

    paths: tuple[str, ...]
    notices: tuple[str, ...] = ()


# What an object store holds: loose objects' folders, info/, pack/, and the quarantine
# folders git makes while receiving.
_STORE_ENTRY = re.compile(r"[0-9a-f]{2}|info|pack|incoming-.+|tmp_objdir-.+")


def object_stores(user: UserRepo) -> ObjectStores:
    """The user's object directory and every one it borrows from (alternates, recursively):
    what the sandbox must see for the history to be readable there. An alternates line is
    the checkout's to write, and the sandbox binds what it names, so only real object
    stores count: ``/proc``, ``/dev``, ``/`` or ``/tmp`` there are left out, and said."""
    found: list[str] = []
    notices: list[str] = []
    pending = [(str(user.objects), "")]
    while pending and len(found) < 16:
        line, named_in = pending.pop()
        store = os.path.realpath(line)
        if store in found:
            continue
        why_not = _not_a_store(store)
        if why_not:
            if named_in:
                notices.append(
                    f"the alternate object store {line} named in {named_in} was left out "
                    f"({why_not}): only git object stores are shown to the commands"
                )
            continue
        found.append(store)
        alternates = os.path.join(store, "info", "alternates")
        if os.path.isfile(alternates):
            with open(alternates, encoding="utf-8", errors="replace") as f:
                lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
            pending += [(os.path.join(store, ln), alternates) for ln in lines]
    return ObjectStores(tuple(found), tuple(notices))


def _not_a_store(path: str) -> str:
    """Why ``path`` is no git object store ("" when it is one)."""
    if not os.path.isdir(path):
        return "not a directory"
    if not os.path.isdir(os.path.join(path, "pack")):
        return "no pack/ folder"
    try:
        odd = [name for name in os.listdir(path) if not _STORE_ENTRY.fullmatch(name)]
    except OSError as exc:
        return f"cannot be listed: {exc.strerror}"
    return f"it holds {odd[0]!r}, which an object store does not" if odd else ""


def submodules(base: Base) -> list[str]:
    """Paths of the submodules (gitlinks) in the base tree."""
    out = run_git(base.repo, "ls-tree", "-r", "-z", base.commit)
    entries = [e for e in out.split(b"\0") if e.startswith(b"160000 ")]
    return [os.fsdecode(e.split(b"\t", 1)[1]) for e in entries]
