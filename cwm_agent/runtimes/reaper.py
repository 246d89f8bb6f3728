"""Tying what a session starts to the harness, and killing what escapes (Linux /proc).

A command can leave the shell's process group (``setsid``, daemons, test suites that
spawn servers with a new session) or even drop the session's environment; killing
the group then misses it and it outlives the run. Two sweeps catch those: by the
marker variable every process of a local session inherits, and by working
directory (inside the private copy). Both only ever touch processes of our own
user that match, checked again through a pidfd right before the kill.

Run as a script, this file is the watchdog ``lifetime.Watchdog`` starts: it sweeps the
sessions still registered once the harness is gone (standard library only, so that it
starts without the package). ``owner`` and ``owner_state`` tell whether the process
that made a container, a folder or a trajectory still runs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, TextIO


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


def kill_sessions(pgids: set[int], marks: set[bytes], directories: set[str]) -> int:
    """SIGKILL our processes in one of ``pgids``, carrying one of ``marks`` or (without a
    terminal) working inside one of ``directories``: what sessions leave when their
    harness is gone."""

    def match(pid: int) -> bool:
        if _pgid(pid) in pgids or any(_environ_has(pid, mark) for mark in marks):
            return True
        return any(_cwd_inside(pid, d) for d in directories) and not _has_tty(pid)

    return _sweep(match) if pgids or marks or directories else 0


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


def _pgid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[2])
    except (OSError, ValueError, IndexError):
        return None


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


# -- who made it, and does it still run -------------------------------------------------


def owner() -> str:
    """Who this process is, for the record: this machine (its boot), pid and start time."""
    import socket  # lazy: only runs record an owner

    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
    except OSError:
        boot = "?"
    pid = os.getpid()
    return f"{socket.gethostname()}/{boot}/{pid}/{started(pid)}"


def started(pid: int) -> str:
    """``pid``'s start time (clock ticks since boot), "?" when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()  # starttime
    except (OSError, IndexError):
        return "?"


def owner_state(recorded: str | None) -> str:
    """ "alive" (the ``owner()`` recorded still runs here), "gone", or "elsewhere" (another
    machine or boot: cannot be checked from here). Nothing recorded (older versions): gone."""
    if not recorded:
        return "gone"
    host, boot, pid, since = (recorded.split("/") + ["", "", "", ""])[:4]
    mine_host, mine_boot = owner().split("/")[:2]
    if (host, boot) != (mine_host, mine_boot):
        return "elsewhere"
    alive = pid.isdigit() and since != "?" and started(int(pid)) == since
    return "alive" if alive else "gone"


# -- the watchdog (lifetime.Watchdog runs this file as a script) ---------------------------


def _watch(stream: TextIO) -> None:
    """The watchdog's life: keep the registry until end-of-file, then sweep what is left."""
    for name in ("SIGINT", "SIGHUP", "SIGTERM", "SIGQUIT"):  # it ends when the harness does
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    watched: dict[str, dict[str, Any]] = {}
    for line in stream:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if "watch" in message:
            watched[str(message["watch"])] = message
        else:
            watched.pop(str(message.get("forget")), None)
    sessions = list(watched.values())
    kill_sessions(
        {int(s["pgid"]) for s in sessions if _same_group(s)},
        {str(s["mark"]).encode() for s in sessions},
        {str(s["dir"]) for s in sessions},
    )


def _same_group(session: dict[str, Any]) -> bool:
    """Whether the session's group id still names its group. Its leader (the shell) may be
    gone while members keep the id, and the kernel gives no new process a pid still in use
    as a group id; so a process with that pid and another start time means the group
    emptied and the id now belongs to someone else (the user's own group, perhaps)."""
    now, then = started(int(session["pgid"])), str(session.get("started") or "?")
    return now == "?" or then == "?" or now == then


if __name__ == "__main__":
    _watch(sys.stdin)
