"""LocalRuntime: the agent works on a private working copy of the user's repository.

The copy is the user's working tree as it is on disk (uncommitted changes and untracked
files included) with the repository's history (HEAD's ancestors, one ref), and nothing
is copied to make it:

- the base (``baseline.make_base``) is a harness-owned repository borrowing the user's
  objects, committed with only the user's changed files hashed; it lives outside the
  sandbox's writable area, so nothing a command does can lose or falsify it;
- in the sandbox (``sandbox.py``, bubblewrap on Linux) the copy is an overlay over the
  user's tree (copy-on-write: disk grows with the changes only); where the overlay cannot
  be mounted, or without a sandbox, the base is checked out into a private folder.

The user's repository and object store are only ever read. ``diff()`` is exactly the
agent's changes against the base, and applies to the user's working tree.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path

from ..errors import RuntimeFailure, ToolError
from ..types import CommandResult
from .baseline import (
    Base,
    UserRepo,
    locate,
    make_base,
    make_model_git,
    object_stores,
    stage_all,
    submodules,
)
from .gitcmd import GIT_IDENTITY, run_git
from .leftovers import PREFIX, claim
from .reaper import kill_inside
from .sandbox import (
    SandboxError,
    SandboxSpec,
    SandboxTransport,
    prepare_layers,
    read_only,
    works,
)
from .shell import PipeTransport, ShellSession, Transport, overwrite_file
from .snapshot import remove_tree

__all__ = ["GIT_IDENTITY", "LocalRuntime", "run_git"]

_MAX_LINKS = 40  # symlinks followed resolving one path, as the kernel allows
_DIFF_FLAGS = (
    "--cached", "--binary", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames",
    "--src-prefix=a/", "--dst-prefix=b/",
)  # fmt: skip


class LocalRuntime:
    """A Runtime over a private working copy of a repository (see module docstring)."""

    description = "bash"

    def __init__(
        self,
        root: str,
        base: Base,
        top: str,
        shell: ShellSession,
        notices: list[str],
        stores: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self._stores = stores  # the user's object stores, kept read-only for our git
        self.baseline = base
        self.notices = notices
        self._top = top
        self.shell = shell
        self._finalizer = weakref.finalize(self, _cleanup, shell, top)

    @classmethod
    def create(
        cls,
        repo: str | Path,
        *,
        sandbox: str = "auto",
        network: bool = False,
        shell_init: str = "",
        env: Mapping[str, str] | None = None,
        head_bytes: int = 64 * 1024,
        tail_bytes: int = 64 * 1024,
    ) -> LocalRuntime:
        """``sandbox``: "auto" (bubblewrap where it works, else none, said once in the
        notices), "bwrap" (required) or "none"; ``network`` only matters in the sandbox."""
        user = locate(repo)
        top = os.path.realpath(tempfile.mkdtemp(prefix=PREFIX))
        try:
            claim(top)  # whose it is, for `cwm-agent cleanup` should this process be killed
            notices = _repo_notices(user)
            stores = object_stores(user)
            base = make_base(user, top, read_only(stores))
            notices += _submodule_notice(user, base)
            root = os.path.join(top, user.top.name or "repo")
            os.mkdir(root)
            sandboxed = _use_sandbox(sandbox, notices)

            def session(factory: Callable[[str, Mapping[str, str]], Transport]) -> ShellSession:
                return ShellSession(
                    root, env=env, head_bytes=head_bytes, tail_bytes=tail_bytes,
                    tmp_dir=top, transport_factory=factory, startup=shell_init,
                )  # fmt: skip

            shell = None
            if sandboxed:
                shell = _overlay_session(session, user, base, top, root, network, notices)
            if shell is None:
                _check_out(user, base, root)
                if sandboxed:
                    spec = SandboxSpec(root, (top, *stores), network)
                    shell = session(lambda cwd, e: SandboxTransport(spec, cwd, e))
                else:
                    shell = session(PipeTransport)
        except BaseException:
            remove_tree(top)
            raise
        return cls(root, base, top, shell, notices, tuple(stores))

    # -- the Runtime protocol -----------------------------------------------------------
    @property
    def base(self) -> str:
        return self.baseline.commit

    @property
    def base_dir(self) -> str:
        return self.baseline.repo

    @property
    def cwd(self) -> str:
        return self.shell.cwd

    @property
    def sandboxed(self) -> bool:
        return isinstance(self.shell.transport, SandboxTransport)

    @property
    def view(self) -> str:
        """Where this machine sees the working copy as the commands do."""
        transport = self.shell.transport
        return transport.view if isinstance(transport, SandboxTransport) else self.root

    def run(self, command: str, timeout: float) -> CommandResult:
        return self.shell.run(command, timeout)

    def read_file(self, path: str) -> bytes:
        full = self._resolve(path)
        try:
            with open(full, "rb") as f:
                return f.read()
        except OSError as exc:
            raise ToolError(f"{path}: cannot read: {exc.strerror}") from exc

    def write_file(self, path: str, data: bytes) -> None:
        full = self._resolve(path)
        if not os.path.isdir(os.path.dirname(full)):
            raise ToolError(f"{path}: the parent directory does not exist; create it first")
        try:
            overwrite_file(full, data)
        except OSError as exc:
            raise ToolError(f"{path}: cannot write: {exc.strerror}") from exc

    def exists(self, path: str) -> bool:
        return os.path.exists(self._resolve(path))

    def diff(self, exclude: tuple[str, ...] = ()) -> str:
        """The agent's changes against the base as a git patch ("" if none).

        Staged in a throw-away index with the harness's repository, so neither the
        model's git state nor anything it did to ``.git`` plays a part. Decoded with
        surrogateescape: bytes that are not UTF-8 survive ``.encode("utf-8",
        "surrogateescape")``.
        """
        self.shell.ensure_running()  # the sandbox's view lives as long as its shell
        transport = self.shell.transport
        overlay = isinstance(transport, SandboxTransport) and transport.spec.layers is not None
        if isinstance(transport, SandboxTransport) and overlay:
            prefix = transport.beside(self.root)  # where the overlay is, stores read-only
        else:
            prefix = read_only(self._stores)
        fd, index = tempfile.mkstemp(prefix="index-", dir=self._top)
        os.close(fd)
        try:
            # copy2 keeps the index's mtime too: git tells "racily clean" entries (changed
            # within the same second, same size) by comparing with it.
            shutil.copy2(self.baseline.index, index)
            env = {
                "GIT_DIR": os.path.join(self.baseline.repo, ".git"),
                "GIT_WORK_TREE": self.root,
                "GIT_INDEX_FILE": index,
            }
            specs = [
                f":(exclude,literal){rel}"
                for rel in map(self._relative, exclude)
                if rel != ".." and not rel.startswith("../")
            ]
            cwd = self._top if overlay else self.root
            stage_all(cwd, self.view, env, prefix=prefix)
            out = run_git(
                cwd, "diff", *_DIFF_FLAGS, self.base, "--", ".", *specs, env=env, prefix=prefix
            )
        finally:
            os.unlink(index)
        return out.decode("utf-8", errors="surrogateescape")

    def close(self) -> None:
        """Stop the shell (the sandbox with it) and delete the copy. Idempotent."""
        self._finalizer()

    def __enter__(self) -> LocalRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paths ------------------------------------------------------------------------
    def _relative(self, path: str) -> str:
        full = posixpath.normpath(posixpath.join(self.root, path))
        return posixpath.relpath(full, self.root)

    def _resolve(self, path: str) -> str:
        """The file ``path`` names (relative: to the root) as this machine reaches it;
        refused when it resolves outside the repository, symlinks included."""
        self.shell.ensure_running()
        view = self.view
        outer = view[: -len(self.root)] if view != self.root else ""
        try:
            if "\0" in path:
                raise ValueError("a NUL byte")
            os.fsencode(path)  # lone surrogates that stand for no byte
            real = _real_path(posixpath.join(self.root, path), outer)
        except (ValueError, OSError):  # a NUL byte, lone surrogates, a symlink loop
            raise ToolError(f"{path!r}: refused, not a valid file path") from None
        if real != self.root and not real.startswith(self.root + "/"):
            raise ToolError(
                f"{path}: refused, the path is outside the repository "
                f"({self.root}); only files inside it can be read or written"
            )
        return outer + real


def _real_path(path: str, outer: str) -> str:
    """``os.path.realpath`` as seen from inside the mount namespace at ``outer`` (its
    ``/proc/PID/root``; "" for this machine's own): symlinks are resolved against that
    root, not against ours. Raises OSError on a loop."""
    pending = [p for p in path.split("/") if p][::-1]
    current, links = "/", 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            current = posixpath.dirname(current)
            continue
        candidate = posixpath.join(current, part)
        if os.path.islink(outer + candidate):
            links += 1
            if links > _MAX_LINKS:
                raise OSError("too many levels of symbolic links")
            target = os.readlink(outer + candidate)
            pending.extend([p for p in target.split("/") if p][::-1])
            current = "/" if target.startswith("/") else current
            continue
        current = candidate
    return current


# -- set-up ----------------------------------------------------------------------------


def _use_sandbox(choice: str, notices: list[str]) -> bool:
    if choice == "none":
        return False
    why_not = works()
    if why_not is None:
        return True
    if choice == "bwrap":
        raise RuntimeFailure(
            f"the sandbox was asked for, but {why_not}",
            hint="install bubblewrap (apt-get install bubblewrap), or pass --sandbox none",
        )
    notices.append(
        f"no sandbox: {why_not}; the agent's commands run with your rights "
        "(install bubblewrap, or pass --sandbox none to silence this)"
    )
    return False


def _overlay_session(
    session: Callable[[Callable[[str, Mapping[str, str]], Transport]], ShellSession],
    user: UserRepo,
    base: Base,
    top: str,
    root: str,
    network: bool,
    notices: list[str],
) -> ShellSession | None:
    """The shell over an overlay of the user's tree; None when the overlay cannot be
    mounted here (the caller checks the base out instead, and says why)."""
    layers = os.path.join(top, "layers")
    prepare_layers(layers)
    model_git = os.path.join(top, "model.git")
    make_model_git(model_git, user, base)
    shutil.copy2(base.index, os.path.join(model_git, "index"))  # git status starts clean
    gitfile = None
    if not (user.top / ".git").is_dir():  # a worktree or submodule: `.git` is a file
        gitfile = os.path.join(top, "gitfile")
        Path(gitfile).write_text(f"gitdir: {model_git}\n", encoding="utf-8")
    stores = tuple(object_stores(user))
    spec = SandboxSpec(
        root, (top, *stores), network, str(user.top), layers, model_git, gitfile, stores
    )
    try:
        return session(lambda cwd, env: SandboxTransport(spec, cwd, env))
    except SandboxError as exc:
        if not exc.overlay:
            raise
        notices.append(f"the working copy is a full checkout (no overlay here: {exc.output})")
        return None


def _check_out(user: UserRepo, base: Base, root: str) -> None:
    """The base's files in ``root``, with the model's ``.git`` and a clean index."""
    git_dir = os.path.join(root, ".git")
    make_model_git(git_dir, user, base)
    env = {"GIT_DIR": git_dir, "GIT_WORK_TREE": root, "GIT_INDEX_FILE": f"{git_dir}/index"}
    run_git(root, "read-tree", "-u", "--reset", base.commit, env=env)
    shutil.copy2(f"{git_dir}/index", base.index)  # the diff's index: these files' stat data


def _repo_notices(user: UserRepo) -> list[str]:
    if not user.subdir:
        return []
    return [
        f"{user.top / user.subdir} is inside the git repository {user.top}: the agent works "
        f"on the whole repository, and the patch's paths are relative to {user.top}"
    ]


def _submodule_notice(user: UserRepo, base: Base) -> list[str]:
    if not (user.top / ".gitmodules").is_file():
        return []
    paths = submodules(base)
    if not paths:
        return []
    shown = ", ".join(paths[:5]) + (" ..." if len(paths) > 5 else "")
    return [
        f"submodules ({shown}) are not part of the working copy's git history, and "
        "changes inside them are left out of the patch"
    ]


def _cleanup(shell: ShellSession, top: str) -> None:
    shell.close()
    kill_inside(top)  # stragglers of an unsandboxed session that left its group and env
    remove_tree(top)
