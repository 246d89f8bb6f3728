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

    def _wait(self) -> None:
        # A second Ctrl-C must not abandon a half-opened runtime: it would leak a
        # container. Opening is bounded (the engine's and git's own time-outs).
        while self._thread.is_alive():
            try:
                self._thread.join()
            except KeyboardInterrupt:
                continue

    def result(self) -> T:
        """The opened value, or the opener's exception raised here."""
        self._wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        assert self._value is not None
        return self._value

    def discard(self) -> None:
        """Wait for the opener and close what it opened (nothing if it failed)."""
        self._wait()
        value, self._value = self._value, None
        if value is not None:
            self._closer(value)
