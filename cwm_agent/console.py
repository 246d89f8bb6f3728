"""What reaches the user's terminal: untrusted text shown but never obeyed, and standard
streams that may lose their reader without taking the run with them.

Text from a model, a server, a trajectory, a repository or a config file can hold
escape sequences (OSC 52 writes the clipboard, OSC 0 the window title, CSI moves the
cursor or clears the screen) and bidirectional controls (U+202E turns the rest of a
line around, so a path reads as another one). ``visible`` spells each of them out, and
``say`` is the one way a command writes a line to stderr: every message passes through
``visible`` there, so a new command cannot forget it (``test_structure`` keeps other writes
to stderr out of the package; the live displays make their own ``rich`` text visible).
``to_stdout`` writes text on stdout as it is, or made visible when stdout is a terminal.

A reader can go away: ``cwm-agent run -v 2>&1 | head -20`` closes the pipe after twenty
lines. ``guard_streams`` makes stdout and stderr survive that: the first failed write
points the stream at /dev/null (the interpreter's last flush too, which would otherwise
turn the exit status into 120), and the run goes on to its end and its own exit code.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from typing import Any

# C0 controls but tab and newline, DEL, C1 controls; bidirectional embeddings, overrides,
# isolates and marks; the Unicode line and paragraph separators (a terminal may break
# lines there). Zero-width joiners stay: emoji sequences need them and they move nothing.
_ACTIVE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def _spelled(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` made safe for a terminal: every escape or control character spelled out
    (``\\x1b``, ``\\u202e``), tabs and newlines kept, ``\\r\\n`` read as a newline.

    The one function for every untrusted string on its way to a terminal (idempotent:
    what it returns holds nothing it would change).
    """
    if not isinstance(text, str):
        text = str(text)
    return _ACTIVE.sub(_spelled, text.replace("\r\n", "\n"))


def say(text: str) -> None:
    """``text`` as one message on stderr, every escape and bidirectional control spelled
    out (``visible``): notes, warnings, tables, errors of every command."""
    stream = sys.stderr
    if stream is None:
        return
    stream.write(visible(text) + "\n")
    stream.flush()


def to_stdout(text: str) -> None:
    """``text`` and a newline on stdout: exactly as it is into a file or a pipe (it is the
    command's product), made visible when stdout is a terminal (a model's text there must
    not drive it)."""
    stream = sys.stdout
    if stream is None:
        return
    terminal = getattr(stream, "isatty", lambda: False)()
    stream.write((visible(text) if terminal else text) + "\n")
    stream.flush()


# The reader went away: a closed pipe, a socket reset, a terminal hung up.
_READER_GONE = frozenset({errno.EPIPE, errno.ESHUTDOWN, errno.ECONNRESET, errno.EIO})


class _Guarded:
    """A text or binary stream whose writes do not fail when its reader goes away: on
    that error its file descriptor is pointed at /dev/null, ``lost`` is set, and
    everything after is dropped quietly. ``any_error``: every OSError counts (stderr: a
    log that cannot be written must not end the run; stdout, the product, still raises
    on a full disk)."""

    def __init__(
        self, stream: Any, state: dict[str, bool] | None = None, any_error: bool = False
    ) -> None:
        self._stream = stream
        self._state = state if state is not None else {"lost": False}
        self._any_error = any_error

    @property
    def lost(self) -> bool:
        return self._state["lost"]

    @property
    def buffer(self) -> _Guarded:
        return _Guarded(self._stream.buffer, self._state, self._any_error)

    def write(self, data: Any) -> int:
        try:
            return int(self._stream.write(data) or 0)
        except OSError as exc:
            self._give_up(exc)
            return len(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            self._give_up(exc)

    def _give_up(self, exc: OSError) -> None:
        if not self._any_error and exc.errno not in _READER_GONE:
            raise exc
        self._state["lost"] = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
            self._stream.flush()  # what was buffered now goes nowhere, without an error
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_streams() -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` survive a reader that goes away (see the
    module docstring). Idempotent; ``stdout_lost`` tells whether stdout's reader went."""
    if sys.stdout is not None and not isinstance(sys.stdout, _Guarded):
        sys.stdout = _Guarded(sys.stdout)
    if sys.stderr is not None and not isinstance(sys.stderr, _Guarded):
        sys.stderr = _Guarded(sys.stderr, any_error=True)


def stdout_lost() -> bool:
    """Whether something meant for stdout could not be written (its reader went away)."""
    return isinstance(sys.stdout, _Guarded) and sys.stdout.lost
