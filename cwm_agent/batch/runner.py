"""Run instances on a pool of worker threads, each isolated, each outcome stored as it ends.

Isolation: every instance is one `solve_instance` call (own runtime, own model client,
own trajectory), the function every executor runs. Whatever one instance raises is
caught and recorded; the others go on. ``Ledger`` is the driver's bookkeeping around it,
shared with the Ray executor (``ray_executor.py``).

Stopping (Ctrl-C / SIGTERM reach the main thread only): the main thread sets ``stop``;
each running agent notices at its next step or action (the progress callback raises
KeyboardInterrupt there, which the agent turns into a clean abort that closes its
runtime), and a model request in progress is given up at once (``models/abandon.py``), so
its trajectory ends as interrupted too. The main thread waits up to ``STOP_GRACE`` seconds
for that; a worker still not back (a runtime that does not close) is abandoned (daemon
threads) and its runtime is closed by the runtimes' exit finalizers. Interrupted instances
leave no result, so a resume reruns them.

Budgets: every instance's meter counts into ``meter``, the batch's (``--max-total-cost``,
``--max-batch-tokens``); once it is spent no instance starts, and the running ones end at
their next step as at a step limit (``costs.py``).
"""

from __future__ import annotations

import collections
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TextIO

from cwm_agent.batch.instances import Instance
from cwm_agent.batch.plan import BatchConfig
from cwm_agent.batch.scaled import first_trajectory, solve_scaled
from cwm_agent.batch.store import OutputStore
from cwm_agent.batch.summary import TOKEN_KEYS, Tally
from cwm_agent.costs import Limit, Meter
from cwm_agent.errors import CwmError, Interrupted
from cwm_agent.progress import StderrProgress
from cwm_agent.run import execute, patch_fields, result_document, run_meter
from cwm_agent.runtimes.shell import stop_commands
from cwm_agent.trajectory import load as load_trajectory
from cwm_agent.verification import layout

STOP_GRACE = 10.0  # seconds the running instances get to wind down after Ctrl-C
_STOP_EVENTS = ("step", "action")  # progress events at which a stopping agent aborts
LOG_NAME = layout.LOG


class Display(Protocol):
    def started(self, instance: Instance) -> None: ...
    def step(self, instance: Instance, step: int) -> None: ...
    def ended(self, instance: Instance, doc: dict[str, Any] | None) -> None: ...
    def message(self, text: str) -> None: ...
    def warning(self, text: str) -> None: ...  # said even with -q


OnEnd = Callable[[Instance, dict[str, Any] | None], None]


class Ledger:
    """The driver's side of one attempt, whichever executor runs it.

    ``begin`` before the instance runs, ``end`` with its document (None: interrupted) when
    it is back: the log markers, the crash-safe record, the totals, the display.
    """

    def __init__(
        self, store: OutputStore, tally: Tally, display: Display, on_end: OnEnd | None = None
    ) -> None:
        self.store = store
        self.tally = tally
        self.display = display
        self.on_end = on_end  # `--evaluate`: the prediction goes to the grader

    def begin(self, instance: Instance) -> Path:
        self.tally.start(instance)
        self.display.started(instance)
        folder = self.store.begin(instance)
        with open(folder / LOG_NAME, "a", encoding="utf-8") as log:
            log.write(f"=== attempt started {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n")
        return folder

    def end(self, instance: Instance, doc: dict[str, Any] | None) -> None:
        with open(self.store.instance_dir(instance) / LOG_NAME, "a", encoding="utf-8") as log:
            log.write(f"=== {'interrupted' if doc is None else doc['status']} ===\n")
        if doc is not None:
            self.store.record(instance, doc)
        self.tally.end(instance, doc)
        self.store.write_summary(self.tally.summary())
        self.display.ended(instance, doc)
        if self.on_end is not None:
            self.on_end(instance, doc)


class BatchRunner:
    """``--executor thread``: a pool of worker threads in this process."""

    def __init__(
        self,
        config: BatchConfig,
        store: OutputStore,
        tally: Tally,
        display: Display,
        on_end: OnEnd | None = None,
        meter: Meter | None = None,
    ) -> None:
        self.config = config
        self.ledger = Ledger(store, tally, display, on_end)
        self.tally = tally
        self.display = display
        self.meter = meter  # the batch's budget; every instance counts into it
        self.budget_spent: Limit | None = None  # why no more instances started
        self.stop = threading.Event()
        self._queue: collections.deque[Instance] = collections.deque()
        self._queue_lock = threading.Lock()
        self._alive = 0  # worker threads not yet ended

    def run(self, instances: list[Instance], workers: int) -> None:
        """Run them all; raises Interrupted on Ctrl-C/SIGTERM after winding down."""
        _preload(self.config.runtime)
        self._queue.extend(instances)
        self._alive = min(workers, len(instances))
        for n in range(self._alive):
            threading.Thread(target=self._work, name=f"batch-worker-{n}", daemon=True).start()
        try:
            self._wait(deadline=None)
        except KeyboardInterrupt:
            self._wind_down()
            raise Interrupted(
                "batch interrupted",
                hint="finished instances are kept; re-run the same command to resume",
            ) from None

    def _wait(self, deadline: float | None) -> None:
        # Polling with sleep, not Thread.join: a KeyboardInterrupt landing inside join()
        # can leave CPython believing a live thread has stopped (bpo-45274's fix).
        while self._alive and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.05)

    def _wind_down(self) -> None:
        self.stop.set()
        self.tally.mark_interrupted()
        stop_commands()  # a worker in a long command stops now, not at its next step
        running = len(self.tally.counts()["running"])
        self.display.message(f"stopping: {running} running instance(s), finished ones are kept")
        try:
            self._wait(deadline=time.monotonic() + STOP_GRACE)
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: stop waiting
        if self._alive:
            self.display.message(
                f"{self._alive} worker(s) did not stop within {STOP_GRACE:g} s: abandoned "
                "(their runtimes are removed at exit)"
            )

    def _next(self) -> Instance | None:
        with self._queue_lock:
            if self.stop.is_set() or not self._queue:
                return None
            spent = self.meter.exhausted() if self.meter is not None else None
            if spent is not None:
                self.budget_spent = self.budget_spent or spent
                return None
            return self._queue.popleft()

    def _work(self) -> None:
        try:
            while (instance := self._next()) is not None:
                try:
                    self._attempt(instance)
                except BaseException:  # noqa: BLE001 - a worker must never die silently
                    if not self.stop.is_set():
                        self.display.message(
                            f"{instance.instance_id}: internal error\n{traceback.format_exc()}"
                        )
        finally:
            with self._queue_lock:
                self._alive -= 1

    def _attempt(self, instance: Instance) -> None:
        folder = self.ledger.begin(instance)
        meter = run_meter(self.config.base, self.meter)
        self.tally.watch(instance, meter)
        with open(folder / LOG_NAME, "a", encoding="utf-8", buffering=1) as log:
            doc = solve_instance(
                self.config,
                instance,
                folder,
                log,
                self._on_step(instance),
                self.stop.is_set,
                lambda text: self.display.warning(f"{instance.instance_id}: warning: {text}"),
                meter,
            )
        self.ledger.end(instance, doc)

    def _on_step(self, instance: Instance) -> Callable[[int], None]:
        def on_step(step: int) -> None:
            self.tally.step(instance, step)
            self.display.step(instance, step)

        return on_step


def solve_instance(
    config: BatchConfig,
    instance: Instance,
    folder: Path,
    log: TextIO,
    on_step: Callable[[int], None] | None = None,
    stopping: Callable[[], bool] | None = None,
    on_warning: Callable[[str], None] | None = None,
    meter: Meter | None = None,
) -> dict[str, Any] | None:
    """One instance, isolated: its result document, or None if it was interrupted.

    The per-instance function of every executor. It writes the trajectory (or, with
    ``--attempts``, the scaled run's records) into ``folder`` and its progress to ``log``;
    whatever it raises is caught and recorded. ``stopping`` is polled at every step and
    action and while a model request is out: when it turns true the agent aborts the way
    Ctrl-C makes it (runtime closed). ``on_warning`` gets the run's warnings too (e.g. the
    image's HEAD is not the record's base_commit), for the batch's own display. ``meter``:
    the instance's budget (counting into the batch's); by default its own.
    """
    started = time.monotonic()
    model = config.base.model.name
    scaled = config.base.scaling.enabled
    traj_path = first_trajectory(folder) if scaled else folder / layout.TRAJECTORY
    try:
        if stopping is not None and stopping():
            return None
        with config.repository(instance) as repo:
            settings = config.settings(instance, repo, folder / layout.TRAJECTORY)
            if scaled:
                issue = instance.problem_statement
                facts = {"instance_id": instance.instance_id, **instance.facts}
                instance_facts = (instance.instance_id, facts)
                doc = solve_scaled(settings, issue, folder, log, meter, stopping,
                                   instance=instance_facts, on_warning=on_warning)  # fmt: skip
            else:
                progress = _progress(log, on_step, stopping, on_warning)
                issue = instance.problem_statement
                result, traj = execute(settings, issue, progress, stop=stopping, meter=meter)
                doc = result_document(result, traj)
        doc["prediction"] = _prediction(instance, model, doc["patch"])
        doc["error"] = None
    except (Interrupted, KeyboardInterrupt):
        return None
    except CwmError as exc:
        log.write(f"Error: {exc}\n")
        doc = _error_document(exc, traj_path, {"type": type(exc).__name__, "hint": exc.hint})
    except Exception as exc:
        log.write(traceback.format_exc())
        doc = crash_document(exc, traj_path)
    return finish_document(doc, instance, model, started)


def crash_document(exc: BaseException, traj_path: Path) -> dict[str, Any]:
    """An attempt that raised what no one expected (a bug, a lost worker): status "crashed"."""
    doc = _error_document(exc, traj_path, {"type": type(exc).__name__, "hint": ""})
    doc["status"] = "crashed"
    return doc


def finish_document(
    doc: dict[str, Any], instance: Instance, model: str, started: float
) -> dict[str, Any]:
    doc.update(
        instance_id=instance.instance_id,
        model_name_or_path=model,
        attempt_seconds=round(time.monotonic() - started, 3),
    )
    return doc


def _progress(
    log: TextIO,
    on_step: Callable[[int], None] | None,
    stopping: Callable[[], bool] | None,
    on_warning: Callable[[str], None] | None,
) -> Any:
    lines = StderrProgress(verbosity=1, stream=log)

    def progress(event: str, data: dict[str, Any]) -> None:
        lines(event, data)
        if event == "step" and on_step is not None:
            on_step(data["step"])
        if event == "warning" and on_warning is not None:
            on_warning(str(data.get("message", "")))
        if event in _STOP_EVENTS and stopping is not None and stopping():
            raise KeyboardInterrupt  # the agent's own Ctrl-C path: abort, close runtime

    return progress


def _prediction(instance: Instance, model: str, patch: str | None) -> dict[str, Any]:
    """The SWE-bench predictions record (an empty patch when the agent produced none)."""
    return {
        "instance_id": instance.instance_id,
        "model_name_or_path": model,
        "model_patch": patch or "",
    }


def _error_document(exc: BaseException, traj_path: Path, error: dict[str, Any]) -> dict[str, Any]:
    """The result_document shape for an attempt that raised, filled from its trajectory."""
    try:
        traj = load_trajectory(traj_path)
    except (OSError, ValueError):
        traj = {}  # the failure came before the trajectory's first save
    message = exc.message if isinstance(exc, CwmError) else f"{type(exc).__name__}: {exc}"
    return {
        "run_id": traj.get("run_id"),
        "status": type(exc).__name__,
        "exit_code": getattr(exc, "exit_code", None),
        "reason": message,
        **patch_fields(None),
        "steps": len(traj.get("steps", [])),
        "usage": traj.get("usage") or dict.fromkeys(TOKEN_KEYS, 0),
        "cost_usd": traj.get("cost_usd"),
        "wall_seconds": traj.get("wall_seconds"),
        "submissions": len(traj.get("submissions", [])),
        "trajectory": str(traj_path) if traj else None,
        "prediction": None,  # not finished: a resume tries it again
        "error": {**error, "message": message},
    }


def _preload(runtime: str) -> None:
    """Import lazily-loaded modules once, here, rather than racing in every worker."""
    import cwm_agent.models.openai_client  # noqa: F401
    import cwm_agent.runtimes.local  # noqa: F401

    if runtime == "docker":
        import cwm_agent.runtimes.docker  # noqa: F401
    import openai  # noqa: F401
