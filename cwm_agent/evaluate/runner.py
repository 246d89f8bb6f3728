"""Grading many predictions: a pool of threads (or Ray tasks), verdicts kept on disk.

Each instance's folder gets the harness's files (``grade.py``) and ``outcome.json``,
written last: a verdict is reused by a later run when it was made from the same patch,
grading fields and image (``Task.key``); errors are always tried again. ``batch
--evaluate`` submits predictions as the agents produce them; `evaluate` submits them all.

Ctrl-C / SIGTERM: nothing new starts, the containers in use are removed (which ends the
commands in them), and the instances that were running keep no verdict.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cwm_agent.evaluate.grade import ERROR, RESOLVED, UNRESOLVED, Grader, Outcome
from cwm_agent.evaluate.report import run_report, verdict_line
from cwm_agent.evaluate.tasks import Task
from cwm_agent.verification.store import folder_name, write_atomic

OUTCOME = "outcome.json"
REPORT = "report.json"
POLL = 0.1  # seconds between looks at the work out (Ctrl-C is seen between them)

Say = Callable[[str], None]


@dataclass(frozen=True)
class EvalSettings:
    outdir: Path
    run_id: str
    workers: int = 4  # the harness's default
    timeout: float = 1800.0  # seconds for one eval script, the harness's default


class Verdicts:
    """The verdicts of one evaluation, whichever executor grades: stored, reused, reported."""

    def __init__(self, settings: EvalSettings, say: Say) -> None:
        self.settings = settings
        self.say = say
        self.outcomes: dict[str, Outcome] = {}
        self.reused = 0
        self._lock = threading.Lock()

    def folder(self, instance_id: str) -> Path:
        return self.settings.outdir / folder_name(instance_id)

    def reuse(self, task: Task) -> bool:
        """Take the stored verdict of the same inputs, if there is one."""
        stored = stored_outcome(self.folder(task.instance_id), task)
        if stored is None:
            return False
        with self._lock:
            self.outcomes[task.instance_id] = stored
            self.reused += 1
        return True

    def record(self, outcome: Outcome) -> None:
        folder = self.folder(outcome.instance_id)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / OUTCOME, json.dumps(outcome.document(), indent=2) + "\n")
        with self._lock:
            self.outcomes[outcome.instance_id] = outcome
        self.say(verdict_line(outcome))

    def report(
        self, dataset_ids: list[str], submitted: list[str], evaluation: dict[str, Any]
    ) -> dict[str, Any]:
        """The run report of the ``submitted`` ids, written to OUTDIR/report.json."""
        with self._lock:
            outcomes = {i: self.outcomes[i] for i in submitted if i in self.outcomes}
        folders = {i: self.folder(i) for i in outcomes}
        report = run_report(dataset_ids, submitted, outcomes, folders, evaluation)
        self.settings.outdir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.settings.outdir / REPORT, json.dumps(report, indent=2) + "\n")
        return report


class Evaluator(Verdicts):
    """Grades tasks as they are submitted, ``settings.workers`` at a time, on threads."""

    def __init__(self, settings: EvalSettings, client: Any, say: Say) -> None:
        super().__init__(settings, say)
        self.grader = Grader(client, settings.run_id, settings.timeout)
        self._futures: list[Future[None]] = []
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="evaluate")
        self._stopping = threading.Event()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, kind: Any, *rest: Any) -> None:
        if kind is not None:  # Ctrl-C or a failure: nothing new starts, containers go
            self.stop()
        self._pool.shutdown(wait=kind is None)

    def submit(self, task: Task) -> None:
        if not self.reuse(task):
            self._futures.append(self._pool.submit(self._grade, task))

    def _grade(self, task: Task) -> None:
        folder = self.folder(task.instance_id)
        try:
            outcome = self.grader.grade(task, folder)
        except Exception as exc:  # noqa: BLE001 - the engine failed: an error id, not a crash
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / "run_instance.log", "a", encoding="utf-8") as log:
                log.write(traceback.format_exc())
            message = f"{type(exc).__name__}: {exc}"
            outcome = Outcome(task.instance_id, ERROR, task.key(), 0.0, message)
        if not self._stopping.is_set():  # an interrupted instance keeps no verdict
            self.record(outcome)

    def wait(self) -> None:
        """Until every submitted task has a verdict (polling: Ctrl-C is seen at once)."""
        while not all(f.done() for f in self._futures):
            time.sleep(POLL)

    def stop(self) -> None:
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.grader.remove_all()


def stored_outcome(folder: Path, task: Task) -> Outcome | None:
    """The verdict an earlier run made from the same inputs, if there is one (no errors)."""
    try:
        doc = json.loads((folder / OUTCOME).read_text(encoding="utf-8"))
        report = None
        if (folder / REPORT).exists():
            report = json.loads((folder / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != task.key() or doc.get("status") == ERROR:
        return None
    if doc["status"] in (RESOLVED, UNRESOLVED) and report is None:
        return None
    seconds = doc.get("seconds", 0.0)
    return Outcome(task.instance_id, doc["status"], doc["key"], seconds, None, report)
