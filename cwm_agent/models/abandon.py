"""A model request that can be given up from the thread waiting for it.

A run on a worker thread (batch, `--attempts`) never sees Ctrl-C, which reaches only the
main thread, and it cannot cut a request short either: closing the SDK's client from
another thread does not end a read in progress (measured: the read went on until the
server answered, 30 s later). So the request runs on a daemon thread, and the run's
thread waits for it, looking at a stop check between short waits; once the check is true
it stops waiting and the request is left to end on its own or to die with the process.

The daemon thread is kept for the next request (a ``Lane``): starting one per request
cost about 0.8 ms a request here (2 cores, loaded), a hand-over to a waiting thread is
within the noise of a 2.5 ms loopback request. The wait costs nothing when the reply
comes first (an event, not a sleep).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, cast

STOP_POLL = 0.05  # seconds between looks at the stop check while a request is out
_DONE = object()  # tells a lane's thread to end (after the request it is on, if any)

Job = tuple[Callable[[], Any], threading.Event, dict[str, Any]]


class Lane:
    """A daemon thread that makes one client's requests for whoever waits on them.

    Thread-safe: a second caller while one request is out gets a thread of its own rather
    than queueing behind it. A request given up leaves its thread to finish it and end.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Job | object] | None = None
        self._busy = False

    def run(self, call: Callable[[], Any], stop: Callable[[], bool]) -> Any:
        """``call()``'s result (or its exception), or KeyboardInterrupt (the agent's interrupt
        path: a finished trajectory, the runtime closed) as soon as ``stop()`` is true."""
        if stop():
            raise KeyboardInterrupt
        with self._lock:
            shared = not self._busy
            if shared:
                self._busy = True
                self._jobs = self._jobs or _start()
                jobs = self._jobs
            else:
                jobs = _start()
        done = threading.Event()
        box: dict[str, Any] = {}
        jobs.put((call, done, box))
        try:
            while not done.wait(STOP_POLL):
                if stop():
                    raise KeyboardInterrupt
        except BaseException:
            jobs.put(_DONE)  # its thread ends once the abandoned request does
            if shared:
                with self._lock:
                    self._jobs, self._busy = None, False
            raise
        if shared:
            with self._lock:
                self._busy = False
        else:
            jobs.put(_DONE)
        if "error" in box:
            raise box["error"]
        return box["value"]


def _start() -> queue.SimpleQueue[Job | object]:
    jobs: queue.SimpleQueue[Job | object] = queue.SimpleQueue()

    def work() -> None:
        while (job := jobs.get()) is not _DONE:
            call, done, box = cast(Job, job)
            try:
                box["value"] = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                box["error"] = exc
            finally:
                done.set()

    threading.Thread(target=work, name="model-request", daemon=True).start()
    return jobs
