"""Instances through the cascade on ``--workers`` threads; each record stored as it ends.

Every thread shares one ``Plan`` (one verifier client and its request pool: at most
``--verifier-workers`` requests at a time across all instances). What one instance raises
is reported and leaves no record, so a resume runs it again; the others go on.

Ctrl-C / SIGTERM: no new instance starts; the running ones get ``STOP_GRACE`` seconds to
finish (their records are kept), then the run ends with exit 130.
"""

from __future__ import annotations

import collections
import threading
import time
import traceback
from collections.abc import Callable
from typing import Protocol

from cwm_agent.errors import CwmError, Interrupted
from cwm_agent.select.stages import PlanSpec
from cwm_agent.select.store import SelectionStore
from cwm_agent.select.summary import Tally
from cwm_agent.verification.cascade import Outcome, Plan, Task, select_instance

STOP_GRACE = 10.0


class Display(Protocol):
    def ended(self, outcome: Outcome) -> None: ...
    def message(self, text: str) -> None: ...


class Recorder:
    """The driver's side of one instance, whichever executor ran it."""

    def __init__(self, store: SelectionStore, tally: Tally, display: Display) -> None:
        self.store = store
        self.tally = tally
        self.display = display
        self.failed = 0

    def begin(self, task: Task) -> None:
        self.tally.start(task.instance_id)

    def end(self, outcome: Outcome) -> None:
        self.store.record(outcome.record)
        self.tally.end(outcome)
        self.display.ended(outcome)

    def fail(self, task: Task, text: str) -> None:
        self.failed += 1
        self.tally.running.discard(task.instance_id)
        self.display.message(f"{task.instance_id}: FAILED, will run again on resume: {text}")


def interrupted() -> Interrupted:
    return Interrupted(
        "selection interrupted", hint="finished instances are kept; re-run the same command"
    )


class ThreadRunner:
    def __init__(self, spec: PlanSpec, recorder: Recorder) -> None:
        self.spec = spec
        self.recorder = recorder
        self.stop = threading.Event()
        self._queue: collections.deque[Task] = collections.deque()
        self._lock = threading.Lock()
        self._alive = 0

    def run(self, tasks: list[Task], workers: int) -> None:
        plan = self.spec.build()
        self._queue.extend(tasks)
        self._alive = min(workers, len(tasks))
        try:
            for n in range(self._alive):
                threading.Thread(
                    target=self._work, args=(plan,), name=f"select-{n}", daemon=True
                ).start()
            self._wait(None)
        except KeyboardInterrupt:
            self.stop.set()
            self.recorder.display.message("stopping: finished instances are kept")
            try:
                self._wait(time.monotonic() + STOP_GRACE)
            except KeyboardInterrupt:
                pass
            raise interrupted() from None
        finally:
            if plan.reward is not None:
                plan.reward.close()

    def _wait(self, deadline: float | None) -> None:
        while self._alive and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.05)

    def _next(self) -> Task | None:
        with self._lock:
            return None if self.stop.is_set() or not self._queue else self._queue.popleft()

    def _note(self, instance_id: str) -> Callable[[str], None]:
        """What a stage says as it goes (the execution stage's runs), on the display."""
        display = self.recorder.display
        return lambda text: display.message(f"{instance_id}: {text}")

    def _work(self, plan: Plan) -> None:
        try:
            while (task := self._next()) is not None:
                self.recorder.begin(task)
                try:
                    note = self._note(task.instance_id)
                    outcome = select_instance(task, plan, note)
                except CwmError as exc:
                    self.recorder.fail(task, str(exc))
                    continue
                except Exception:  # noqa: BLE001 - a bug in one instance must not stop the rest
                    self.recorder.fail(task, traceback.format_exc())
                    continue
                self.recorder.end(outcome)
        finally:
            with self._lock:
                self._alive -= 1
