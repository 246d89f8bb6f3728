"""Open a runtime in a thread while the caller does CPU work (loading the model client).

Opening a runtime is mostly waiting: git subprocesses for the local copy, the Docker
engine creating and starting a container. Importing the openai SDK is ~0.4 s of pure CPU.
Done one after the other they add up; done side by side the wait hides in the import.

Whatever happens in the caller (an error, Ctrl-C, SIGTERM), a runtime that gets opened
is closed: ``discard()`` waits for the thread before closing it, so no container or
private copy is left behind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BackgroundOpen(Generic[T]):
    """``opener()`` runs in a daemon thread from construction on."""

    def __init__(self, opener: Callable[[], T], closer: Callable[[T], None]) -> None:
        self._opener, self._closer = opener, closer
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="cwm-open-runtime", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._opener()
        except BaseException as exc:  # re-raised in the caller's thread by result()
            self._error = exc

    def _join(self) -> bool:
        """Wait for the opener; True if Ctrl-C (or SIGTERM) came meanwhile. It is held
        until the opener is done: abandoning a half-opened runtime would leak it (a
        container, a copy). Opening is bounded by git's and the engine's own time-outs."""
        interrupted = False
        while self._thread.is_alive():
            try:
                self._thread.join()
            except KeyboardInterrupt:
                interrupted = True
        return interrupted

    def result(self) -> T:
        """The opened value, or the opener's exception (or the held interrupt) raised here.
        After an exception, call ``discard()``."""
        if self._join():
            raise KeyboardInterrupt
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        assert self._value is not None
        return self._value

    def discard(self) -> None:
        """Wait for the opener and close what it opened (nothing if it failed). The caller
        is already ending the run, so an interrupt meanwhile only hurries nothing."""
        self._join()
        value, self._value = self._value, None
        if value is not None:
            self._closer(value)
