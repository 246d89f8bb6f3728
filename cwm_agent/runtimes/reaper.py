"""Finding and killing what a session started that escaped its process group (Linux /proc).

A command can leave the shell's process group (``setsid``, daemons, test suites that
spawn servers with a new session) or even drop the session's environment; killing
the group then misses it and it outlives the run. Two sweeps catch those: by the
marker variable every process of a local session inherits, and by working
directory (inside the private copy). Both only ever touch processes of our own
user that match, checked again through a pidfd right before the kill.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable


def kill_marked(mark: bytes) -> int:
    """SIGKILL our processes whose environment holds ``mark`` (``NAME=VALUE``); Linux only.

    The process group misses whatever called setsid() (``setsid``, daemons, test
    suites that spawn servers); they still carry the session's mark.
    """
    return _sweep(lambda pid: _environ_has(pid, mark))


def kill_inside(directory: str) -> int:
    """SIGKILL our terminal-less processes working in ``directory`` or below it.

    (A user's interactive shell that happens to sit there has a terminal: spared.)
    """
    return _sweep(lambda pid: _cwd_inside(pid, directory) and not _has_tty(pid))


def _sweep(match: Callable[[int], bool], rounds: int = 3) -> int:
    """Kill every process ``match`` selects; again while a fork races the scan."""
    killed = 0
    for _ in range(rounds):
        found = [pid for pid in _other_pids() if match(pid)]
        killed += sum(_kill_verified(pid, match) for pid in found)
        if not found:
            break
    return killed


def _other_pids() -> list[int]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    me = os.getpid()
    return [int(n) for n in names if n.isdigit() and int(n) != me]


def _environ_has(pid: int, mark: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return mark in f.read().split(b"\0")
    except OSError:  # gone, or not ours to read
        return False


def _cwd_inside(pid: int, directory: str) -> bool:
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return cwd == directory or cwd.startswith(directory.rstrip("/") + "/")


def _has_tty(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[4]) != 0  # tty_nr
    except (OSError, ValueError, IndexError):
        return True  # unknown: leave it alone


def _kill_verified(pid: int, match: Callable[[int], bool]) -> int:
    """Kill ``pid`` only if it still matches once pinned (the pid may have been reused)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return 0
    try:
        if not match(pid):
            return 0
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        return 1
    except OSError:
        return 0
    finally:
        os.close(pidfd)
