"""A model request that can be given up from the thread waiting for it.

A run on a worker thread (batch, `--attempts`) never sees Ctrl-C, which reaches only the
main thread, and it cannot cut a request short either: closing the SDK's client from
another thread does not end a read in progress (measured: the read went on until the
server answered, 30 s later). So the request runs on a daemon thread of its own, and the
run's thread waits for it, looking at a stop check between short waits; once the check
is true it stops waiting and the request is left to end on its own or to die with the
process. The wait costs nothing when the reply comes first (an event, not a sleep).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

STOP_POLL = 0.05  # seconds between looks at the stop check while a request is out


def abandonable(call: Callable[[], Any], stop: Callable[[], bool]) -> Any:
    """``call()``'s result (or its exception), or KeyboardInterrupt (the agent's interrupt
    path: a finished trajectory, the runtime closed) as soon as ``stop()`` is true."""
    if stop():
        raise KeyboardInterrupt
    done = threading.Event()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="model-request", daemon=True).start()
    while not done.wait(STOP_POLL):
        if stop():
            raise KeyboardInterrupt
    if "error" in box:
        raise box["error"]
    return box["value"]
