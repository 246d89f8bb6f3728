"""An instance's base code read from git objects: no checkout, and the clone never written.

The static stage needs the base's version of the few files a candidate touches, and a place
to apply the candidate the way SWE-bench's harness does. ``GitBase`` makes one scratch git
repository per instance that *borrows* the clone's objects (``objects/info/alternates``:
nothing copied), lists the base commit's tree once, and serves blobs through one
long-running ``git cat-file --batch``. Candidates are applied in the scratch work tree,
which holds only the files the candidate touches, written from the base.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from cwm_agent.errors import RuntimeFailure
from cwm_agent.runtimes.gitcmd import SAFE_CONFIG, git_env, run_git

SYMLINK = "120000"


@dataclass(frozen=True)
class TreeEntry:
    mode: str  # "100644", "100755", "120000" (symbolic link), "160000" (submodule)
    sha: str


class GitBase:
    """The tree of ``commit`` in ``clone``, and a scratch work tree to apply patches in.

    Not thread-safe by design: one instance's candidates are checked one after another.
    """

    def __init__(self, clone: Path, commit: str) -> None:
        self.clone = clone
        self.commit = commit
        self._top = Path(tempfile.mkdtemp(prefix="cwm-static-", dir=_memory_dir()))
        self.work = self._top / "work"
        self._reader: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        try:
            common = _git(clone, "rev-parse", "--path-format=absolute", "--git-common-dir")
            _git(self._top, "init", "-q", str(self.work))
            alternates = self.work / ".git" / "objects" / "info" / "alternates"
            alternates.write_text(str(Path(common.strip()) / "objects") + "\n")
            self.commit = self._resolve(commit)
            self.tree = self._list_tree()
        except BaseException:
            self.close()
            raise

    def _resolve(self, commit: str) -> str:
        try:
            return _git(self.clone, "rev-parse", "--verify", "-q", f"{commit}^{{commit}}").strip()
        except RuntimeFailure as exc:
            raise RuntimeFailure(
                f"commit {commit} is not in the clone {self.clone}",
                hint=f"fetch it there (git -C {self.clone} fetch origin), or check the "
                f"record's base_commit ({exc.message})",
            ) from exc

    def _list_tree(self) -> dict[str, TreeEntry]:
        listing = _git(self.work, "ls-tree", "-r", "-z", "--full-tree", self.commit)
        tree = {}
        for item in listing.split("\0"):
            if item:
                meta, _, path = item.partition("\t")
                mode, _kind, sha = meta.split(" ")
                tree[path] = TreeEntry(mode, sha)
        return tree

    # -- reading ----------------------------------------------------------------------
    def read(self, path: str) -> bytes | None:
        """The file's bytes at the base; None when the base has no such file."""
        entry = self.tree.get(path)
        if entry is None or entry.mode == "160000":
            return None
        return self._blob(entry.sha)

    def text(self, path: str) -> str | None:
        data = self.read(path)
        return None if data is None else data.decode("utf-8", "surrogateescape")

    def _blob(self, sha: str) -> bytes:
        with self._lock:
            reader = self._reader
            if reader is None:
                reader = subprocess.Popen(
                    ["git", *SAFE_CONFIG, "cat-file", "--batch"],
                    cwd=self.work,
                    env=git_env(),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
                self._reader = reader
            assert reader.stdin is not None and reader.stdout is not None
            reader.stdin.write(sha.encode() + b"\n")
            reader.stdin.flush()
            header = reader.stdout.readline().split()
            if len(header) != 3:
                raise RuntimeFailure(
                    f"git cat-file could not read {sha} from {self.clone}",
                    hint="check the clone with git fsck",
                )
            data = reader.stdout.read(int(header[2]))
            reader.stdout.read(1)  # the newline after the contents
            return data

    def is_symlink_path(self, path: str) -> bool:
        """The path is a symbolic link at the base, or lies below one."""
        parts = path.split("/")
        return any(
            (e := self.tree.get("/".join(parts[:n]))) is not None and e.mode == SYMLINK
            for n in range(1, len(parts) + 1)
        )

    # -- the scratch work tree --------------------------------------------------------
    def reset(self, paths: list[str]) -> None:
        """The work tree holds exactly ``paths`` as at the base (those the base has)."""
        for child in self.work.iterdir():
            if child.name != ".git":
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        for path in paths:
            data = self.read(path)
            if data is None:
                continue
            target = self.work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            if self.tree[path].mode == "100755":
                target.chmod(0o755)

    def index(self, paths: list[str]) -> None:
        """The scratch index holds ``paths`` at the base, matching the work tree (what
        ``git apply --3way`` reads: it refuses files whose stat data the index lacks)."""
        (self.work / ".git" / "index").unlink(missing_ok=True)
        lines = "".join(
            f"{self.tree[p].mode} {self.tree[p].sha}\t{p}\n" for p in paths if p in self.tree
        )
        for args in (
            ["update-index", "--add", "--index-info"],
            ["update-index", "-q", "--refresh"],
        ):
            subprocess.run(
                ["git", *SAFE_CONFIG, *args],
                cwd=self.work,
                env=git_env(),
                input=lines.encode("utf-8", "surrogateescape"),
                capture_output=True,
                check=False,
            )

    def scratch_file(self, name: str) -> Path:
        """A file beside the work tree (a patch to apply), out of the way of resets."""
        return self._top / name

    def close(self) -> None:
        if self._reader is not None:
            if self._reader.stdin is not None:
                self._reader.stdin.close()
            self._reader.wait()
            if self._reader.stdout is not None:
                self._reader.stdout.close()
            self._reader = None
        shutil.rmtree(self._top, ignore_errors=True)

    def __enter__(self) -> GitBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _memory_dir() -> str | None:
    """/dev/shm when it can be written: the scratch tree is rewritten for every candidate,
    and on a disk each rewrite costs milliseconds (measured: 4 ms a folder removed)."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


def _git(cwd: Path, *args: str) -> str:
    return run_git(str(cwd), *args).decode("utf-8", "surrogateescape")
