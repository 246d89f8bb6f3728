"""Helpers shared by the test_reliability_* files (no tests here).

Process checks read /proc: a process counts as left behind when it is alive (not a
zombie waiting for a reaper) and either sits in a given process group or works in
a given directory (the private copy, even after it was deleted).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from conftest import git


def small_repo(path: Path) -> Path:
    """A committed repository with one text file and one subdirectory."""
    (path / "pkg").mkdir(parents=True)
    (path / "pkg" / "mod.py").write_text("def f():\n    return 1\n")
    (path / "README").write_text("hello\n")
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, pgid) of a process, None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return fields[0].decode(), int(fields[2])


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _environ_has(pid: int, tag: bytes) -> bool:
    try:
        return tag in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def left_behind(
    pgids: tuple[int, ...] = (), under: str | None = None, tag: str | None = None
) -> list[str]:
    """Live processes in one of ``pgids``, working inside ``under`` or whose environment
    holds ``tag`` (``NAME=VALUE``), described."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        stat = _stat(int(name))
        if stat is None or stat[0] == "Z":
            continue
        cwd = _cwd(int(name))
        inside = under is not None and (cwd == under or cwd.startswith(under.rstrip("/") + "/"))
        tagged = tag is not None and _environ_has(int(name), tag.encode())
        if stat[1] in pgids or inside or tagged:
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                cmdline = b"?"
            found.append(f"pid {name} pgid {stat[1]} cwd {cwd}: {cmdline.decode(errors='replace')}")
    return found


def wait_none_left(
    pgids: tuple[int, ...] = (),
    under: str | None = None,
    tag: str | None = None,
    limit: float = 10.0,
) -> list[str]:
    """``left_behind`` after giving the kernel up to ``limit`` s to finish the kills."""
    deadline = time.monotonic() + limit
    while (found := left_behind(pgids, under, tag)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found
