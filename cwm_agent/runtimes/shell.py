"""A persistent bash session with CWM's bash-tool semantics.

Layers: a byte ``Transport`` (here a local process over pipes; a container
runtime can supply its own) and ``ShellSession`` on top, which owns the
sentinel protocol, timeouts, session restarts and output truncation.
"""

from __future__ import annotations

import os
import re
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Protocol

from ..errors import RuntimeFailure
from ..redaction import is_secret_name
from ..types import CommandResult
from .lifetime import WATCHDOG, start_tied
from .reaper import kill_marked

CHUNK = 65536
_POLL = 0.1  # seconds between looks at STOPPING while a command runs
# Set when the whole process winds down (a batch or a scaled run after Ctrl-C): every
# running command of an interruptible session is killed and its thread gets
# KeyboardInterrupt, the way the agent's own Ctrl-C handling expects.
STOPPING = threading.Event()


def stop_commands() -> None:
    """End every running command of this process now (see STOPPING)."""
    STOPPING.set()


STARTUP_TIMEOUT = 120.0  # seconds the shell's start-up commands may take
_MAX_PATH = 4096  # the longest $PWD the status line carries (Linux PATH_MAX)
# Variables that would point the agent's git at some other repository, or
# make a non-interactive bash source a startup file despite --norc.
_SCRUBBED = frozenset(
    "GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_COMMON_DIR GIT_OBJECT_DIRECTORY GIT_NAMESPACE "
    "GIT_PREFIX BASH_ENV ENV".split()
)
# Variables that hand over the user's sessions on this machine: agents, buses, displays,
# engines, terminal multiplexers (most name a Unix socket). The sandbox hides those
# sockets; no command of any runtime is told where they are.
HOST_SESSIONS = frozenset(
    "SSH_AUTH_SOCK SSH_AGENT_PID GPG_AGENT_INFO DBUS_SESSION_BUS_ADDRESS "
    "DBUS_SYSTEM_BUS_ADDRESS XDG_RUNTIME_DIR WAYLAND_DISPLAY DISPLAY XAUTHORITY "
    "DOCKER_HOST CONTAINER_HOST PULSE_SERVER TMUX TMUX_PANE STY KITTY_LISTEN_ON "
    "GNOME_KEYRING_CONTROL KRB5CCNAME HYPRLAND_INSTANCE_SIGNATURE".split()
)
_SOCKET_NAME = re.compile(r"SOCK(ET)?$")  # I3SOCK, SWAYSOCK, NIRI_SOCKET, ...
# Nothing may wait on a terminal or a pager, or paint escape codes into the output.
QUIET_ENV = {
    "PAGER": "cat",
    "GIT_PAGER": "cat",
    "MANPAGER": "cat",
    "SYSTEMD_PAGER": "",
    "TERM": "dumb",
    "NO_COLOR": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "DEBIAN_FRONTEND": "noninteractive",
    "PIP_NO_INPUT": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}


# Every process started in a local session inherits this variable, so the ones that
# leave the shell's process group (setsid, daemons) can still be found and killed.
MARK_VAR = "CWM_AGENT_SESSION"


def session_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a session starts with: ours, minus what would misdirect or leak."""
    # Credentials the model's commands have no business seeing (their output goes to the
    # model server and into the trajectory).
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUBBED
        and k not in HOST_SESSIONS
        and not is_secret_name(k)
        and not _SOCKET_NAME.search(k)
    }
    env.update(QUIET_ENV)
    env.update(extra or {})
    return env


class Transport(Protocol):
    """A bash process the session talks to, byte by byte."""

    def run_script(self, path: str, script: bytes, line: bytes) -> None:
        """Put ``script`` at ``path`` where the shell sees it, then send ``line`` (which
        sources that file) to the shell. OSError if the shell is gone."""
        ...

    def read(self, timeout: float) -> bytes | None:
        """Output bytes; b"" if none arrived in time; None once the shell is gone."""
        ...

    def kill_group(self) -> None: ...

    def close(self) -> int | None:
        """Kill what is left, reap, and return the shell's exit status."""
        ...


BASH = ("bash", "--noprofile", "--norc")


class PipeTransport:
    """`bash` as a local child leading its own process group, output merged on one pipe.

    ``argv`` may wrap it (the sandbox); the group is the wrapper's."""

    def __init__(
        self, cwd: str, env: Mapping[str, str], argv: tuple[str, ...] | list[str] = BASH
    ) -> None:
        self.mark = secrets.token_hex(8)
        # Tied to this process: a harness killed outright takes the shell along, and the
        # watchdog what the shell started (lifetime.py).
        self._proc = start_tied(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**env, MARK_VAR: self.mark},
            start_new_session=True,
            bufsize=0,
        )
        self.pid = self.pgid = self._proc.pid
        WATCHDOG.watch(self.mark, self.pgid, f"{MARK_VAR}={self.mark}", cwd)
        self._out = self._proc.stdout.fileno()  # type: ignore[union-attr]
        # A pidfd tells us the shell died even while an orphaned background job keeps
        # the pipe open (no EOF would ever come).
        self._pidfd: int | None = os.pidfd_open(self.pgid) if hasattr(os, "pidfd_open") else None
        self._closed = False

    def run_script(self, path: str, script: bytes, line: bytes) -> None:
        try:
            overwrite_file(path, script)
        except FileNotFoundError:  # a command removed the session's folder (`rm -rf /tmp/*`)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            overwrite_file(path, script)
        self.write(line)

    def write(self, data: bytes) -> None:
        self._proc.stdin.write(data)  # type: ignore[union-attr]

    def read(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while True:
            fds = [self._out] if self._pidfd is None else [self._out, self._pidfd]
            ready, _, _ = select.select(fds, [], [], max(0.0, deadline - time.monotonic()))
            if self._out in ready:
                return os.read(self._out, CHUNK) or None
            if not ready:
                return b""
            # The shell exited but something still holds the pipe: end its group so
            # EOF follows once the buffered output is read.
            self.kill_group()
            os.close(self._pidfd)  # type: ignore[arg-type]
            self._pidfd = None

    def alive(self) -> bool:
        if self._closed or self._proc.returncode is not None:
            return False
        # Not reaped (WNOWAIT): while the dead shell is a zombie its pid, our group id, is
        # no one else's, so close() still kills the right group.
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False

    def kill_group(self) -> None:
        # Safe while the shell is unreaped: its pid (our pgid) cannot be reused yet.
        if not self._closed:
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            kill_marked(f"{MARK_VAR}={self.mark}".encode())

    def close(self) -> int | None:
        if self._closed:
            return self._proc.returncode
        self.kill_group()
        WATCHDOG.forget(self.mark)
        self._closed = True
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return self._proc.wait()


class _Capture:
    """Keeps the first ``head`` and the last ``tail`` bytes of a stream, counts the rest."""

    def __init__(self, head: int, tail: int) -> None:
        self.head_limit, self.tail_limit = head, tail
        self.head, self.tail, self.cut = bytearray(), bytearray(), 0

    def add(self, data: bytes) -> None:
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            excess = len(self.tail) - self.tail_limit
            if excess > 0:
                del self.tail[:excess]
                self.cut += excess

    def text(self) -> str:
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if self.cut:
            return f"{head}\n[... {self.cut} bytes of output cut ...]\n{tail}"
        return head + tail


def _exit_code(status: int | None) -> int | None:
    # Report a signal death the way bash does (128 + signal number).
    return 128 - status if status is not None and status < 0 else status


def overwrite_file(path: str, data: bytes) -> None:
    """Replace a file's content. Truncating at open costs ~3 ms on a busy ext4 disk (it
    forces the old blocks out); writing over them and cutting the rest costs ~0.01 ms."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


class ShellSession:
    """One long-lived bash; ``run`` executes a command in it, like CWM's bash tool."""

    def __init__(
        self,
        cwd: str,
        *,
        env: Mapping[str, str] | None = None,
        head_bytes: int = 64 * 1024,
        tail_bytes: int = 64 * 1024,
        tmp_dir: str | None = None,
        transport_factory: Callable[[str, Mapping[str, str]], Transport] = PipeTransport,
        startup: str = "",
        interruptible: bool = True,
    ) -> None:
        self.root = cwd
        # A running command ends at once when the process is stopping (stop_commands);
        # internal sessions (file access, diffs) that the clean-up needs are not.
        self.interruptible = interruptible
        # Run quietly at the start of every shell, restarts included (e.g. activating a
        # conda env); its last outcome, for the record.
        self.startup = startup
        self.startup_result: CommandResult | None = None
        self.cwd = cwd  # the shell's current directory after the last command
        self.env = session_env(env)
        self.head_bytes, self.tail_bytes = head_bytes, tail_bytes
        self._factory = transport_factory
        # The command file lives outside the repository so it never shows in a diff.
        self._tmp = tempfile.mkdtemp(prefix="cwm-shell-", dir=tmp_dir)
        self._cmd_file = os.path.join(self._tmp, "cmd")
        self._res = _Resources(self._tmp)
        self._finalizer = weakref.finalize(self, self._res.release)
        self._pending = b""  # output that arrived after the last sentinel
        self._start()

    @property
    def transport(self) -> Transport:
        if not self._finalizer.alive:
            raise RuntimeFailure("the shell session is closed", hint="start a new runtime")
        assert self._res.transport is not None
        return self._res.transport

    def _start(self) -> None:
        try:
            self._res.transport = self._factory(self.root, self.env)
        except OSError as exc:
            raise RuntimeFailure(
                f"cannot start bash in {self.root}: {exc}",
                hint="check that bash is installed and the directory exists",
            ) from exc
        self._pending = b""
        self.cwd = self.root
        if self.startup:
            self.startup_result = self._startup()

    def _startup(self) -> CommandResult:
        line, sentinel = _sentinel(self._cmd_file)
        text = f"{self.startup}\nbuiltin cd -- {shlex.quote(self.root)}\n"  # start in the root
        script = text.encode("utf-8", "surrogateescape")
        start = time.monotonic()
        try:
            self.transport.run_script(self._cmd_file, script, line)
            capture = _Capture(4096, 4096)
            outcome = self._collect(capture, sentinel, start + STARTUP_TIMEOUT)
        except OSError:
            outcome, capture = "eof", _Capture(0, 0)
        if outcome == "stopped":
            raise KeyboardInterrupt
        if not isinstance(outcome, int):
            raise RuntimeFailure(
                f"the shell's start-up commands ({self.startup!r}) "
                + ("did not finish" if outcome == "timeout" else "ended the shell"),
                hint="fix or unset --shell-init (set it to '' to run nothing)",
            )
        return CommandResult(capture.text(), outcome, duration=time.monotonic() - start)

    def ensure_running(self) -> None:
        """Restart the shell if it has died since its last command."""
        alive = getattr(self.transport, "alive", None)
        if alive is not None and not alive():
            self._restart()

    def restart(self) -> None:
        """A fresh shell in the root (the old one's processes killed)."""
        self._restart()

    def _restart(self) -> int | None:
        status = self.transport.close()
        try:
            self._start()
        except RuntimeFailure as exc:  # it started before: what changed is the commands' doing
            raise RuntimeFailure(
                f"the shell session ended and could not start again: {exc.message}",
                hint="a command may have removed bash or the working directory, or used up "
                "the memory or processes it needs; the trajectory and accepted submissions "
                "are kept",
            ) from exc
        return _exit_code(status)

    def run(self, command: str, timeout: float) -> CommandResult:
        start = time.monotonic()
        transport, restarted = self.transport, False  # raises if closed
        line, sentinel = _sentinel(self._cmd_file)
        text = command if command.endswith("\n") else command + "\n"
        script = text.encode("utf-8", "surrogateescape")
        try:
            transport.run_script(self._cmd_file, script, line)
        except OSError:  # the shell died between calls (e.g. a background `kill $$`)
            self._restart()
            restarted = True
            self.transport.run_script(self._cmd_file, script, line)
        capture = _Capture(self.head_bytes, self.tail_bytes)
        outcome = self._collect(capture, sentinel, start + timeout)
        if outcome == "stopped":  # the whole process is stopping (stop_commands)
            self._restart()
            raise KeyboardInterrupt
        timed_out, exit_code = outcome == "timeout", None
        if isinstance(outcome, int):
            exit_code = outcome
        else:  # timeout or the shell is gone: kill what is left, start afresh in the root
            status = self._restart()
            exit_code = None if timed_out else status
            restarted = True
        return CommandResult(
            output=capture.text(),
            exit_code=exit_code,
            timed_out=timed_out,
            cut_bytes=capture.cut,
            duration=time.monotonic() - start,
            session_restarted=restarted,
        )

    def _collect(
        self, capture: _Capture, sentinel: re.Pattern[bytes], deadline: float
    ) -> int | str:
        """Feed output to ``capture`` until the sentinel (its status), "eof" or "timeout".

        The last ``hold`` bytes stay back between reads so that a sentinel split
        across chunks is still found and never leaks into the output.
        """
        hold = len(sentinel.pattern) + _MAX_PATH  # longer than any match
        buf, self._pending = self._pending, b""
        while True:
            match = sentinel.search(buf)
            if match:
                capture.add(buf[: match.start()])
                self._pending = buf[match.end() :]
                self.cwd = os.fsdecode(match.group(2)) or self.cwd
                return int(match.group(1))
            if len(buf) > hold:
                capture.add(buf[:-hold])
                buf = buf[-hold:]
            remaining = deadline - time.monotonic()
            stop = self.interruptible and STOPPING.is_set()
            if remaining <= 0 or stop:
                capture.add(buf)
                return "stopped" if stop else "timeout"
            data = self.transport.read(min(remaining, _POLL) if self.interruptible else remaining)
            if data is None:
                capture.add(buf)
                return "eof"
            buf += data

    def close(self) -> None:
        """Kill the shell's whole process group, reap it, remove temp files. Idempotent."""
        self._finalizer()

    def __enter__(self) -> ShellSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Resources:
    """What ``close`` (or the garbage collector, via weakref.finalize) must release."""

    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.transport: Transport | None = None

    def release(self) -> None:
        if self.transport is not None:
            self.transport.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _sentinel(cmd_file: str) -> tuple[bytes, re.Pattern[bytes]]:
    """The line that runs the command file, and the pattern of the status it prints.

    The command text never goes through bash's stdin, so a syntax error in it ends
    only the `source`, never this line. (`source` rather than `eval`: bash's messages
    then quote true line numbers.) A fresh nonce per call means no output can fake it.
    Redirecting fd 1 through fd 3 makes bash restore fds 1 and 2 after the `source`, so
    a command's `exec >/dev/null` or `exec 1>&-` cannot swallow the status line.
    """
    prefix, suffix = f"\x1e__CWM_{secrets.token_hex(8)}_", "__\x1e"
    line = (
        f"builtin source {shlex.quote(cmd_file)} 3>&1 1>&3 3>&- </dev/null 2>&1; "
        f'builtin printf \'{prefix}%d:%s{suffix}\' "$?" "$PWD"\n'
    )
    pattern = re.escape(prefix.encode()) + rb"(\d{1,3}):(.*?)" + re.escape(suffix.encode())
    return line.encode(), re.compile(pattern, re.DOTALL)
