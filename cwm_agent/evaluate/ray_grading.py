"""`evaluate --executor ray`: one Ray task per prediction, graded on its node's engine.

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

from cwm_agent.evaluate.grade import ERROR, Grader, Outcome
from cwm_agent.evaluate.runner import POLL, EvalSettings, Say, Verdicts
from cwm_agent.evaluate.tasks import Task
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
