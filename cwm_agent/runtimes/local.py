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
agent's changes against the base, and applies to the user's working tree; edits the user
makes to the tree during the run, which an overlay shows, are left out of it and said
(``drift.py``). The file tools reach the copy through ``confined.py``: a command racing
them cannot turn a path outside the copy.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
import weakref
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from ..types import CommandResult, TreeDrift
from . import drift
from . import local_setup as setup
from .baseline import Base, locate, make_base, object_stores, stage_all
from .confined import Confined
from .freeze import frozen
from .gitcmd import GIT_IDENTITY, run_git
from .leftovers import PREFIX, claim
from .reaper import kill_inside
from .sandbox import SandboxSpec, SandboxTransport, read_only
from .shell import PipeTransport, ShellSession, Transport
from .snapshot import remove_tree

__all__ = ["GIT_IDENTITY", "LocalRuntime", "run_git"]

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
        self._told: set[str] = set()  # paths the notices named already (outside_changes)
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
        tmp_size: int | None = None,
        shell_init: str = "",
        env: Mapping[str, str] | None = None,
        head_bytes: int = 64 * 1024,
        tail_bytes: int = 64 * 1024,
    ) -> LocalRuntime:
        """``sandbox``: "auto" (bubblewrap where it works, else none, said once in the
        notices), "bwrap" (required) or "none"; ``network`` and ``tmp_size`` (bytes for
        each of its private tmpfs) only matter in the sandbox."""
        user = locate(repo)
        top = os.path.realpath(tempfile.mkdtemp(prefix=PREFIX))
        try:
            claim(top)  # whose it is, for `cwm-agent cleanup` should this process be killed
            notices = setup.repo_notices(user)
            found = object_stores(user)
            stores, notices = found.paths, notices + list(found.notices)
            base = make_base(user, top, read_only(stores))
            notices += setup.submodule_notice(user, base)
            root = os.path.join(top, user.top.name or "repo")
            os.mkdir(root)
            sandboxed = setup.use_sandbox(sandbox, notices, tmp_size)
            plain = SandboxSpec(root, (top, *stores), network, tmp_size=tmp_size)

            def session(factory: Callable[[str, Mapping[str, str]], Transport]) -> ShellSession:
                return ShellSession(
                    root, env=env, head_bytes=head_bytes, tail_bytes=tail_bytes,
                    tmp_dir=top, transport_factory=factory, startup=shell_init,
                )  # fmt: skip

            shell = None
            if sandboxed:
                shell = setup.overlay_session(session, user, base, top, plain, stores, notices)
            if shell is None:
                setup.check_out(user, base, root)
                if sandboxed:
                    shell = session(lambda cwd, e: SandboxTransport(plain, cwd, e))
                else:
                    shell = session(PipeTransport)
        except BaseException:
            remove_tree(top)
            raise
        return cls(root, base, top, shell, notices, stores)

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

    def read_file(self, path: str, limit: int | None = None) -> bytes:
        return self._files().read(path, limit)

    def write_file(self, path: str, data: bytes) -> None:
        self._files().write(path, data)

    def exists(self, path: str) -> bool:
        return self._files().exists(path)

    def diff(self, exclude: tuple[str, ...] = ()) -> str:
        """The agent's changes against the base as a git patch ("" if none).

        Staged in a throw-away index with the harness's repository, so neither the
        model's git state nor anything it did to ``.git`` plays a part. Decoded with
        surrogateescape: bytes that are not UTF-8 survive ``.encode("utf-8",
        "surrogateescape")``.
        """
        exclude = (*exclude, *self.outside_changes().foreign)  # (ensures the shell runs)
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
            # The sandbox held still: git beside it must not be raced into a host folder.
            held: AbstractContextManager[None] = nullcontext()
            if isinstance(transport, SandboxTransport):
                held = frozen(transport.pid)
            with held:
                stage_all(cwd, self.view, env, prefix=prefix)
                out = run_git(
                    cwd, "diff", *_DIFF_FLAGS, self.base, "--", ".", *specs, env=env, prefix=prefix
                )
        finally:
            os.unlink(index)
        return out.decode("utf-8", errors="surrogateescape")

    def outside_changes(self) -> TreeDrift:
        """The user's edits during the run, which an overlay shows (``drift.py``); each
        new one is added to the notices. A checked-out copy does not follow the tree."""
        self.shell.ensure_running()  # the sandbox's view lives as long as its shell
        transport = self.shell.transport
        if not isinstance(transport, SandboxTransport) or transport.spec.lower is None:
            return TreeDrift()
        tree = transport.spec.lower
        paths = drift.user_changes(tree, self.baseline, self._top)
        found = drift.classify(paths, Confined(self.view, self.root), Confined(tree, tree))
        self.notices.extend(drift.notices(found, self._told))
        return found

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

    def _files(self) -> Confined:
        """The copy's files as the commands see them (the view lives with the shell)."""
        self.shell.ensure_running()
        return Confined(self.view, self.root)


def _cleanup(shell: ShellSession, top: str) -> None:
    shell.close()
    kill_inside(top)  # stragglers of an unsandboxed session that left its group and env
    remove_tree(top)
