"""A local session's processes live no longer than the harness, however it ends.

Closing a session kills what it started (``shell.py``, ``reaper.py``). A harness killed
outright (SIGKILL, the out-of-memory killer) closes nothing, so two things hold without
it:

- ``start_tied`` starts the shell with a parent-death signal (Linux's PR_SET_PDEATHSIG,
  SIGKILL): the kernel kills it when its parent goes. That signal follows the *thread*
  that started the child, not the process, so every shell is started from one thread
  that lives as long as the process (a batch worker that restarted a shell and then
  ended would otherwise take the shell along).
- The shell's children do not inherit the signal: ``WATCHDOG``, a small process reading
  a pipe that only the harness holds, sees end-of-file when the harness is gone and
  sweeps every session still registered (``reaper.py`` run as a script): their process
  groups (unless the id now names another group: the shell's start time tells),
  everything carrying their marker, everything working in their copy.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from . import reaper

_PR_SET_PDEATHSIG = 1


def start_tied(argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv, **popen)`` whose child dies with this process (see above).
    Interrupted while it starts (Ctrl-C), the child started all the same is killed."""
    return _SPAWNER.call(
        lambda: subprocess.Popen(argv, preexec_fn=_die_with_parent(), **popen), undo=_end
    )


def _end(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


class _Spawner:
    """Runs calls in one daemon thread that lives as long as the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def call(self, fn: Callable[[], Any], undo: Callable[[Any], None] | None = None) -> Any:
        """``fn()`` in the thread. Should the caller be interrupted while it waits, ``fn``
        runs on all the same: ``undo`` gets its result (nothing is left half-made)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():  # first use, or a fork
                self._jobs = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._serve, args=(self._jobs,), name="cwm-spawner", daemon=True
                )
                self._thread.start()
            jobs = self._jobs
        done: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        jobs.put((fn, done))
        try:
            ok, value = done.get()
        except BaseException:  # Ctrl-C while waiting
            ok, value = _wait_out(done)
            if ok and undo is not None:
                undo(value)
            raise
        if ok:
            return value
        raise value

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[Any]) -> None:
        while True:
            fn, done = jobs.get()
            try:
                done.put((True, fn()))
            except BaseException as exc:  # handed to the caller
                done.put((False, exc))


def _wait_out(done: queue.SimpleQueue[tuple[bool, Any]]) -> tuple[bool, Any]:
    """The result of a call already under way, whatever else interrupts the wait (a start
    takes milliseconds; the interruption is raised once it is undone)."""
    while True:
        try:
            return done.get()
        except BaseException:  # a second Ctrl-C: keep waiting (the first is raised after)
            continue


_SPAWNER = _Spawner()


def _die_with_parent() -> Callable[[], None] | None:
    """For ``preexec_fn``: arm SIGKILL on the parent's death (None where there is no prctl)."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def in_the_child() -> None:  # between fork and exec: nothing that allocates much
        prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)  # 9: SIGKILL
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return in_the_child


@functools.lru_cache(maxsize=1)
def _prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # lazy: only local sessions need it

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


class Watchdog:
    """The helper process that sweeps the registered sessions once the harness is gone.

    Its pipe is close-on-exec, so no child of ours keeps it open: end-of-file means the
    harness ended, however it ended. Started on the first ``watch``; in its own session
    (terminal signals do not reach it), with no environment, stdout or stderr of ours (a
    pipeline reading our stdout is never held open by it). A failure to start it or to
    talk to it is not an error: it is a safety net.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def watch(self, key: str, pgid: int, mark: str, directory: str) -> None:
        """Register a session; ``pgid``'s leader (the shell, not reaped yet) is recorded
        with its start time, so that a group id reused later is not swept."""
        started = reaper.started(pgid)
        self._send({"watch": key, "pgid": pgid, "started": started, "mark": mark, "dir": directory})

    def forget(self, key: str) -> None:
        self._send({"forget": key}, start=False)

    def _send(self, message: dict[str, Any], start: bool = True) -> None:
        line = (json.dumps(message) + "\n").encode()
        with self._lock:
            for _ in range(2):  # once more with a fresh watchdog if this one died
                if self._proc is None or self._proc.poll() is not None:
                    if not start or not self._start():
                        return
                try:
                    self._proc.stdin.write(line)  # type: ignore[union-attr]
                    self._proc.stdin.flush()  # type: ignore[union-attr]
                    return
                except OSError:
                    self._proc = None

    def _start(self) -> bool:
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(reaper.__file__)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                env={},
                start_new_session=True,
            )
        except OSError:
            self._proc = None
        return self._proc is not None


WATCHDOG = Watchdog()
