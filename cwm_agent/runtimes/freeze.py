"""Holding a sandbox still while the harness's own git reads the working copy (Linux /proc).

The harness stages the copy with its git beside the sandbox: in the outer mount namespace
(overlay mode) or on this machine, where this machine's ``/tmp`` and ``/run`` are visible,
not the sandbox's private ones. git lstat()s a path and then opens it by name, so a
sandboxed process that swaps a folder for a symlink in between (``renameat2`` in a loop)
has git read a host file into the diff, or fail (measured: 8 leaks and 195 failures in 300
diffs). Reading the copy through the sandbox's own view is not possible (the harness's
repository must stay out of its reach), so the sandbox is stopped instead: every process of
its PID namespace gets SIGSTOP, found again until none is left running (a fork that raced
the scan included: a stopped process cannot fork), and SIGCONT once git is done. Nothing in
the copy changes while git reads it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import RuntimeFailure

ROUNDS = 50  # scans for processes still running; a stopped one cannot fork, so few are needed
STOP_WAIT = 5.0  # seconds for a signalled process to reach the stopped state


@contextmanager
def frozen(leader: int) -> Iterator[None]:
    """Every process in the PID namespace of ``leader``'s children (the sandbox's) stopped
    for the block's duration; nothing is done when that namespace cannot be found (the
    sandbox is gone: nothing runs there)."""
    namespace = _child_namespace(leader)
    stopped: set[int] = set()
    try:
        if namespace is not None:
            _stop_all(namespace, stopped)
        yield
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:  # gone meanwhile
                pass


def _stop_all(namespace: str, stopped: set[int]) -> None:
    for _ in range(ROUNDS):
        # Those running now: one stopped already (by its own shell, say) stays as it was;
        # one stopped here and continued by a process not yet stopped is found again.
        found = [pid for pid in _pids() if _namespace(pid) == namespace and _running(pid)]
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGSTOP)
                stopped.add(pid)
            except OSError:
                pass
        _wait_stopped(found)
    raise RuntimeFailure(
        "the sandbox's processes could not be held still to read the working copy "
        f"(still new ones after {ROUNDS} rounds)",
        hint="a command keeps starting processes; the run cannot read its changes safely",
    )


def _wait_stopped(pids: list[int]) -> None:
    """Until each is stopped (or gone): SIGSTOP takes effect when the process is next
    scheduled, and a scan must not count one that could still fork."""
    deadline = time.monotonic() + STOP_WAIT
    waiting = list(pids)
    while waiting and time.monotonic() < deadline:
        waiting = [pid for pid in waiting if _running(pid)]
        if waiting:
            time.sleep(0.001)


def _child_namespace(leader: int) -> str | None:
    for pid in _pids():
        if _parent(pid) == leader:
            found = _namespace(pid)
            if found is not None and found != _namespace(leader):
                return found
    return None


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def _namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:  # gone, or not ours
        return None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return data[data.rfind(")") + 2 :].split()  # after the name, which may hold anything


def _running(pid: int) -> bool:
    """Not stopped, traced, dead or gone."""
    fields = _stat_fields(pid)
    return fields is not None and bool(fields) and fields[0] not in ("T", "t", "Z", "X")


def _parent(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields and len(fields) > 1 else None
