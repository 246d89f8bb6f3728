"""Hold Ctrl-C and SIGTERM across a block that must not be interrupted midway.

Used around importing the openai SDK (~0.4 s, the longest stretch of a run's start).
CPython 3.11 marks a KeyboardInterrupt that passes through ``exec()`` of a string as
unhandled even when it is caught later (dataclasses, typing and pydantic exec strings
while modules import), and then ends the process by SIGINT instead of with the exit code
chosen (130). Held signals are delivered again as soon as the block ends, outside any
``exec``, so the usual handlers run there: a delay of at most the import.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_HELD = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Signal handlers live in the main thread; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {signum: signal.signal(signum, lambda s, _f: arrived.append(s)) for signum in _HELD}
    try:
        yield
    finally:
        for signum, handler in previous.items():  # None: set outside Python, so default
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(arrived):
            signal.raise_signal(signum)  # the restored handler runs here
