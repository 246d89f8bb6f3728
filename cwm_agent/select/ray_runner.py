"""``--executor ray``: one Ray task per instance; this process (the driver) writes OUT.

A task runs the whole cascade for one instance on one worker (its candidates stay
together: the execution stage's warm runtime is per instance) and returns the
``Outcome``; the driver records it through the same ``Recorder`` as the threads, so
outputs and resume are the same. Each worker builds its own plan (its verifier client;
the score cache is on the worker's disk). Nodes need cwm-agent and ``--repos-dir`` /
``--repo`` at the same path (or the images). Ray is imported only here, only then.
"""

from __future__ import annotations

import collections
import time
from typing import Any

from cwm_agent.select.runner import STOP_GRACE, Recorder, interrupted
from cwm_agent.select.stages import PlanSpec
from cwm_agent.verification.cascade import Outcome, Task, select_instance
from cwm_agent.verification.ray_support import TASK_RETRIES, session

POLL = 0.2


def select_remote(spec: PlanSpec, task: Task) -> Outcome:
    plan = spec.build()
    try:
        return select_instance(task, plan)
    finally:
        if plan.reward is not None:
            plan.reward.close()


def run_ray(
    spec: PlanSpec, recorder: Recorder, tasks: list[Task], workers: int, address: str | None
) -> None:
    if not tasks:
        return
    with session(address, workers, recorder.display.message) as ray:
        remote = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(select_remote)
        shared = ray.put(spec)
        queue = collections.deque(tasks)
        out: dict[Any, Task] = {}
        try:
            while queue or out:
                while queue and len(out) < workers:
                    task = queue.popleft()
                    recorder.begin(task)
                    out[remote.remote(shared, task)] = task
                ready, _ = ray.wait(list(out), num_returns=1, timeout=POLL)
                for ref in ready:
                    _collect(ray, recorder, out.pop(ref), ref)
        except KeyboardInterrupt:
            _wind_down(ray, recorder, out)
            raise interrupted() from None


def _collect(ray: Any, recorder: Recorder, task: Task, ref: Any) -> None:
    try:
        outcome = ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        recorder.fail(task, "cancelled")
        return
    except ray.exceptions.RayError as exc:  # the worker died, or the cascade raised
        recorder.fail(task, f"{type(exc).__name__}: {exc}")
        return
    recorder.end(outcome)


def _wind_down(ray: Any, recorder: Recorder, out: dict[Any, Task]) -> None:
    recorder.display.message(f"stopping: {len(out)} running instance(s), finished ones are kept")
    deadline = time.monotonic() + STOP_GRACE
    try:
        while out and (left := deadline - time.monotonic()) > 0:
            ready, _ = ray.wait(list(out), num_returns=1, timeout=min(left, POLL))
            for ref in ready:
                _collect(ray, recorder, out.pop(ref), ref)
    except KeyboardInterrupt:
        pass
    finally:
        for ref in out:
            ray.cancel(ref, force=True)
