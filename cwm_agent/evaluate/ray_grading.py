"""`evaluate --executor ray`: one Ray task per prediction (per instance with
``--candidates``: its warm container stays on one worker), graded on its node's engine.

The task grades in a scratch folder with the same `Grader` as the threads, and sends
back its verdict and the folder's files; this process (the driver) writes OUTDIR, so the
report, the logs and the reuse of verdicts are the thread executor's. Every node needs
cwm-agent[swebench], a Docker engine and the images. At most ``workers`` tasks are out at
a time; Ctrl-C cancels them (the task's KeyboardInterrupt removes its container).
"""

from __future__ import annotations

import collections
import tempfile
from pathlib import Path
from typing import Any

from cwm_agent.evaluate.candidates import CANDIDATES, CandidateStore, failed
from cwm_agent.evaluate.grade import ERROR, Grader, Outcome
from cwm_agent.evaluate.runner import POLL, EvalSettings, Say, Verdicts
from cwm_agent.evaluate.tasks import Task
from cwm_agent.evaluate.warm_grading import InstanceResult, grade_instance
from cwm_agent.verification.ray_support import TASK_RETRIES, session

Graded = tuple[Outcome, dict[str, bytes]]


def grade_remote(task: Task, run_id: str, timeout: float) -> Graded:
    """The Ray task: the verdict and the instance folder's files."""
    from cwm_agent.runtimes.docker_engine import connect

    with tempfile.TemporaryDirectory(prefix="cwm-evaluate-") as scratch:
        folder = Path(scratch)
        outcome = Grader(connect(), run_id, timeout).grade(task, folder)
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    return outcome, files


class RayEvaluator(Verdicts):
    def __init__(self, settings: EvalSettings, say: Say, address: str | None) -> None:
        super().__init__(settings, say)
        self.address = address
        self._queue: collections.deque[Task] = collections.deque()

    def __enter__(self) -> RayEvaluator:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def submit(self, task: Task) -> None:
        if not self.reuse(task):
            self._queue.append(task)

    def wait(self) -> None:
        if not self._queue:
            return
        workers = self.settings.workers
        with session(self.address, workers, self.say) as ray:
            remote = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(grade_remote)
            out: dict[Any, Task] = {}
            try:
                while self._queue or out:
                    while self._queue and len(out) < workers:
                        task = self._queue.popleft()
                        args = (task, self.settings.run_id, self.settings.timeout)
                        out[remote.remote(*args)] = task
                    ready, _ = ray.wait(list(out), num_returns=1, timeout=POLL)
                    for ref in ready:
                        self._collect(ray, out.pop(ref), ref)
            except KeyboardInterrupt:
                for ref in out:
                    ray.cancel(ref)
                raise

    def _collect(self, ray: Any, task: Task, ref: Any) -> None:
        try:
            outcome, files = ray.get(ref)
        except ray.exceptions.RayError as exc:  # the worker died, or grading itself failed
            message = f"{type(exc).__name__}: {exc}"
            outcome, files = Outcome(task.instance_id, ERROR, task.key(), 0.0, message), {}
        folder = self.folder(task.instance_id)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        self.record(outcome)


# -- --candidates: one task per instance, its candidates in one warm container -----------


def grade_instance_remote(
    tasks: list[Task], run_id: str, timeout: float, first: bool, stored: dict[str, Outcome]
) -> tuple[InstanceResult, dict[str, bytes]]:
    """The Ray task: the instance's result and its folder's files (paths relative to it)."""
    from cwm_agent.runtimes.docker_engine import connect

    with tempfile.TemporaryDirectory(prefix="cwm-evaluate-") as scratch:
        top = Path(scratch) / "instance"

        def folder(task: Task) -> Path:
            return top / CANDIDATES / task.sha256[:16]

        grader = Grader(connect(), run_id, timeout)
        result = grade_instance(grader, tasks, folder, lambda t: stored.get(t.sha256), first)
        files = {
            str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()
        }
    return result, files


class RayCandidateEvaluator(CandidateStore):
    """One Ray task per instance (its warm container stays on that worker); the driver
    decides what earlier runs already graded and writes OUTDIR."""

    def __init__(self, settings: EvalSettings, say: Say, address: str | None, first: bool):
        super().__init__(settings, say, first)
        self.address = address
        self._queue: collections.deque[list[Task]] = collections.deque()

    def __enter__(self) -> RayCandidateEvaluator:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def submit(self, tasks: list[Task]) -> None:
        self._queue.append(tasks)

    def wait(self) -> None:
        if not self._queue:
            return
        workers = self.settings.workers
        with session(self.address, workers, self.say) as ray:
            remote = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(grade_instance_remote)
            out: dict[Any, list[Task]] = {}
            try:
                while self._queue or out:
                    while self._queue and len(out) < workers:
                        tasks = self._queue.popleft()
                        stored = {t.sha256: o for t in tasks if (o := self.reuse(t)) is not None}
                        args = (tasks, self.settings.run_id, self.settings.timeout)
                        out[remote.remote(*args, self.first_resolved, stored)] = tasks
                    ready, _ = ray.wait(list(out), num_returns=1, timeout=POLL)
                    for ref in ready:
                        self._collect(ray, out.pop(ref), ref)
            except KeyboardInterrupt:
                for ref in out:
                    ray.cancel(ref)
                raise

    def _collect(self, ray: Any, tasks: list[Task], ref: Any) -> None:
        instance = self.folder(tasks[0]).parent.parent
        try:
            result, files = ray.get(ref)
        except ray.exceptions.RayError as exc:  # the worker died, or grading itself failed
            result, files = failed(tasks, exc, instance), {}
        for name, data in files.items():
            path = instance / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        self.record(tasks, result)
