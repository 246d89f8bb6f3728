"""LocalRuntime: the agent works on a private, git-baselined copy of the user's repository.

The copy holds the user's working tree as it is on disk (tracked files with their
uncommitted changes, plus untracked files git does not ignore) committed as a
fresh baseline, so ``diff()`` is exactly the agent's changes and applies to the
user's working tree. The user's repository is only ever read.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path

from ..errors import RuntimeFailure, ToolError
from ..types import CommandResult
from .reaper import kill_inside
from .shell import ShellSession, overwrite_file

# A fixed identity and date: the baseline needs no git config, and the same tree
# always gets the same base commit.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "cwm-agent",
    "GIT_AUTHOR_EMAIL": "cwm-agent@localhost",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z",
    "GIT_COMMITTER_NAME": "cwm-agent",
    "GIT_COMMITTER_EMAIL": "cwm-agent@localhost",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z",
}
# Local config of the copy, so the agent's own `git commit` works anywhere and no
# hook, signing prompt or background gc of the user's setup runs in the sandbox.
_COPY_CONFIG = """[user]
\tname = cwm-agent
\temail = cwm-agent@localhost
[commit]
\tgpgsign = false
[core]
\thooksPath = /dev/null
\tfsmonitor = false
[gc]
\tauto = 0
"""
# Byproducts of running Python that must not end up in a patch as new files.
_DEFAULT_EXCLUDES = "__pycache__/\n*.py[cod]\n.pytest_cache/\n"
BASE_REF = "refs/cwm-agent/base"


def _git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # No inherited GIT_DIR & co. (they could aim a command at the user's repo);
    # optional locks off so read-only commands never rewrite the user's index.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_IDENTITY, GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0")
    env.update(extra or {})
    return env


def run_git(cwd: str, *args: str, env: Mapping[str, str] | None = None) -> bytes:
    try:
        proc = subprocess.run(
            ["git", "-c", "core.fsmonitor=false", *args],
            cwd=cwd,
            env=_git_env(env),
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
    except OSError as exc:
        raise RuntimeFailure(f"cannot run git: {exc}", hint="install git and retry") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise RuntimeFailure(
            f"git {args[0]} failed in {cwd}: {err}", hint="check that git works in that directory"
        )
    return proc.stdout


def _locate(repo: str | Path) -> tuple[Path, Path]:
    """The work tree's top directory and its info/exclude file (read-only git calls)."""
    path = Path(repo).expanduser()
    if not path.is_dir():
        raise RuntimeFailure(
            f"repository not found: {path}",
            hint="pass the path of a git working tree (REPO defaults to '.')",
        )
    try:
        out = run_git(str(path), "rev-parse", "--show-toplevel", "--git-path", "info/exclude")
    except RuntimeFailure as exc:
        raise RuntimeFailure(
            f"{path} is not a git working tree: {exc.message}",
            hint="run `git init` there, or pass the repository's path",
        ) from exc
    top, exclude = os.fsdecode(out).splitlines()[:2]
    return Path(top), path / exclude


def _copy_files(src: Path, dst: Path, names: list[str]) -> None:
    """Copy the listed paths (files and symlinks, with their modes) from src to dst."""
    made: set[str] = set()
    links: set[str] = set()
    for rel in dict.fromkeys(names):  # unmerged entries repeat a path
        parent = os.path.dirname(rel)
        # Never write through a symlink copied earlier (it may point anywhere).
        if links and any(p in links for p in _ancestors(parent)):
            continue
        try:
            st = os.lstat(src / rel)
        except (FileNotFoundError, NotADirectoryError):
            continue  # tracked but deleted on disk: the baseline leaves it out too
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            continue  # submodules, nested repositories, sockets, fifos
        if parent not in made:
            os.makedirs(dst / parent, exist_ok=True)
            made.add(parent)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src / rel), dst / rel)
            links.add(rel)
        else:
            shutil.copy2(src / rel, dst / rel, follow_symlinks=False)


def _ancestors(parent: str) -> list[str]:
    parts = parent.split("/") if parent else []
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _baseline(root: str, user_exclude: Path) -> str:
    """git-init the copy, commit everything in it, return the commit's sha."""
    run_git(root, "init", "-q", "--template=")
    git_dir = Path(root, ".git")
    with open(git_dir / "config", "a", encoding="utf-8") as f:
        f.write(_COPY_CONFIG)
    (git_dir / "info").mkdir(exist_ok=True)
    rules = user_exclude.read_text(errors="replace") if user_exclude.is_file() else ""
    (git_dir / "info" / "exclude").write_text(rules + "\n" + _DEFAULT_EXCLUDES)
    # --force: every copied file belongs to the baseline, even one a global ignore
    # rule matches, or the agent's edits to it would be missing from the diff.
    run_git(root, "add", "-A", "--force")
    run_git(root, "commit", "-q", "--no-verify", "--allow-empty", "-m", "cwm-agent baseline")
    sha = run_git(root, "rev-parse", "HEAD").decode().strip()
    run_git(root, "update-ref", BASE_REF, sha)  # keeps the base alive whatever the agent does
    return sha


class LocalRuntime:
    """A Runtime over a private temp copy of a repository (see module docstring)."""

    description = "bash"

    def __init__(self, root: str, base: str, top: str, shell: ShellSession) -> None:
        self.root = root
        self.notices: list[str] = []
        self.base = base
        self.base_dir = root  # the git repository that holds ``base``
        self._top = top
        self.shell = shell
        self._finalizer = weakref.finalize(self, _cleanup, shell, top)

    @classmethod
    def create(
        cls,
        repo: str | Path,
        *,
        env: Mapping[str, str] | None = None,
        head_bytes: int = 64 * 1024,
        tail_bytes: int = 64 * 1024,
    ) -> LocalRuntime:
        src, user_exclude = _locate(repo)
        listing = run_git(str(src), "ls-files", "-z", "--cached", "--others", "--exclude-standard")
        names = [os.fsdecode(n) for n in listing.split(b"\0") if n]
        # Harness files (command file, temp index) go in `top`, next to but outside root.
        top = os.path.realpath(tempfile.mkdtemp(prefix="cwm-agent-"))
        root = os.path.join(top, src.name or "repo")
        try:
            os.mkdir(root)
            _copy_files(src, Path(root), names)
            base = _baseline(root, user_exclude)
            shell = ShellSession(
                root, env=env, head_bytes=head_bytes, tail_bytes=tail_bytes, tmp_dir=top
            )
        except BaseException:
            _remove_tree(top)
            raise
        return cls(root, base, top, shell)

    def run(self, command: str, timeout: float) -> CommandResult:
        return self.shell.run(command, timeout)

    @property
    def cwd(self) -> str:
        return self.shell.cwd

    def _resolve(self, path: str) -> str:
        try:
            full = os.path.realpath(os.path.join(self.root, path))
        except ValueError:  # a NUL byte; lone surrogates
            raise ToolError(f"{path!r}: refused, not a valid file path") from None
        if full != self.root and not full.startswith(self.root + os.sep):
            raise ToolError(
                f"{path}: refused, the path is outside the repository "
                f"({self.root}); only files inside it can be read or written"
            )
        return full

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

        Staged in a throwaway copy of the index so the agent's own git state is
        untouched. Decoded with surrogateescape: bytes that are not UTF-8 survive
        ``diff.encode("utf-8", "surrogateescape")``.
        """
        fd, index = tempfile.mkstemp(prefix="index-", dir=self._top)
        os.close(fd)
        try:
            real_index = os.path.join(self.root, ".git", "index")
            if os.path.isfile(real_index):
                # copy2 keeps the index file's mtime too: git tells "racily clean" entries
                # (a file changed within the same second, same size) by comparing with it.
                shutil.copy2(real_index, index)  # keeps stat data: `add` hashes less
            else:
                os.unlink(index)
            env = {"GIT_INDEX_FILE": index}
            run_git(self.root, "add", "-A", env=env)
            specs = [
                f":(exclude,literal){rel}"
                for rel in map(self._relative, exclude)
                if rel != ".." and not rel.startswith("../")
            ]
            out = run_git(
                self.root,
                "diff",
                "--cached",
                "--binary",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                "--no-renames",
                "--src-prefix=a/",
                "--dst-prefix=b/",
                self.base,
                "--",
                ".",
                *specs,
                env=env,
            )
        finally:
            if os.path.exists(index):
                os.unlink(index)
        return out.decode("utf-8", errors="surrogateescape")

    def _relative(self, path: str) -> str:
        full = os.path.normpath(os.path.join(self.root, path))
        return os.path.relpath(full, self.root)

    def close(self) -> None:
        """Stop the shell and delete the copy. Idempotent."""
        self._finalizer()

    def __enter__(self) -> LocalRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cleanup(shell: ShellSession, top: str) -> None:
    shell.close()
    kill_inside(top)  # stragglers that left both the group and the environment behind
    _remove_tree(top)


def _remove_tree(path: str) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError:
        # The agent may have left read-only directories behind; open them up and retry.
        for dirpath, dirnames, _ in os.walk(path):
            for name in dirnames:
                if not os.path.islink(os.path.join(dirpath, name)):
                    os.chmod(os.path.join(dirpath, name), 0o700)
        os.chmod(path, 0o700)
        shutil.rmtree(path, ignore_errors=True)
