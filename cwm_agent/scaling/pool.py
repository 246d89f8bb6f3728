"""A small thread pool whose workers are daemon threads.

Why not ``ThreadPoolExecutor``: its workers are joined at interpreter exit, so after
Ctrl-C the process would wait for every running rollout (minutes of model calls) before
exiting 130. Daemon workers die with the process; the runtimes they hold are removed by
their own ``weakref.finalize`` at exit.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_STOP = object()


class DaemonPool:
    def __init__(self, workers: int, name: str = "cwm-scaling") -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: list[Future[Any]] = []
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._pending.append(future)
        self._jobs.put((future, fn, args))
        return future

    def cancel_pending(self) -> None:
        """Cancel jobs that have not started; running ones finish on their own."""
        for future in self._pending:
            future.cancel()

    def wait_running(self, seconds: float) -> None:
        """Wait (polling: Ctrl-C-safe) up to ``seconds`` for the jobs that started to end."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(
            f.running() for f in self._pending if not f.done()
        ):
            time.sleep(0.05)

    def shutdown(self) -> None:
        self.cancel_pending()
        for _ in self._threads:
            self._jobs.put(_STOP)

    def __enter__(self) -> DaemonPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is _STOP:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # delivered to whoever calls future.result()
                future.set_exception(exc)
