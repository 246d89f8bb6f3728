"""A self-contained snapshot of the user's working tree, for copying into a container.

The docker runtime copies the repository into its container, so the snapshot must stand
alone: the tracked files with their uncommitted changes and the untracked files git does
not ignore, in a fresh repository whose one commit is the base. (The local runtime needs
none of this: it borrows the user's objects and shows the tree copy-on-write.)
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import weakref
from pathlib import Path

from .baseline import BASE_REF, DEFAULT_EXCLUDES, locate
from .gitcmd import run_git

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
    (git_dir / "info" / "exclude").write_text(rules + "\n" + DEFAULT_EXCLUDES)
    # --force: every copied file belongs to the baseline, even one a global ignore
    # rule matches, or the agent's edits to it would be missing from the diff.
    run_git(root, "add", "-A", "--force")
    run_git(root, "commit", "-q", "--no-verify", "--allow-empty", "-m", "cwm-agent baseline")
    sha = run_git(root, "rev-parse", "HEAD").decode().strip()
    run_git(root, "update-ref", BASE_REF, sha)  # keeps the base alive whatever the agent does
    return sha


class Snapshot:
    """The copy at ``root`` (its own ``.git`` holds ``base``); removed by ``close``."""

    def __init__(self, repo: str | Path) -> None:
        user = locate(repo)
        listing = run_git(
            str(user.top), "ls-files", "-z", "--cached", "--others", "--exclude-standard"
        )
        names = [os.fsdecode(n) for n in listing.split(b"\0") if n]
        self._top = os.path.realpath(tempfile.mkdtemp(prefix="cwm-snapshot-"))
        self._finalizer = weakref.finalize(self, remove_tree, self._top)
        self.root = os.path.join(self._top, user.top.name or "repo")
        try:
            os.mkdir(self.root)
            _copy_files(user.top, Path(self.root), names)
            self.base = _baseline(self.root, user.common_dir / "info" / "exclude")
        except BaseException:
            self.close()
            raise
        self.base_dir = self.root

    def close(self) -> None:
        self._finalizer()


def remove_tree(path: str) -> None:
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
