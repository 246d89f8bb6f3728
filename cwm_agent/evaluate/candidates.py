"""`evaluate --candidates`: every line of PREDS graded, one warm container per instance.

``OUTDIR/<id>/candidates/<sha256[:16]>/`` holds one distinct patch's harness files and its
``outcome.json`` (written last; reused by the next run when the patch, grading fields and
image are the same, as without --candidates); ``OUTDIR/<id>/containers.log`` the
containers it took. An instance counts as resolved when any of its candidates is
(pass@K); ``report.json`` lists every line (``candidates``).

Ctrl-C / SIGTERM: nothing new starts, the containers in use are removed.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cwm_agent.evaluate.grade import EMPTY, ERROR, RESOLVED, UNRESOLVED, Grader, Outcome
from cwm_agent.evaluate.report import run_report, verdict_line
from cwm_agent.evaluate.runner import OUTCOME, POLL, EvalSettings, stored_outcome
from cwm_agent.evaluate.tasks import Task
from cwm_agent.evaluate.warm_grading import InstanceResult, grade_instance
from cwm_agent.verification.store import folder_name, write_atomic

CANDIDATES = "candidates"
SKIPPED = "skipped"
_RANK = {RESOLVED: 0, UNRESOLVED: 1, ERROR: 2, EMPTY: 3}  # an instance's verdict: its best
_STATUS = {EMPTY: "empty"}  # the candidates list's spelling

Say = Callable[[str], None]


def by_instance(tasks: list[Task]) -> list[list[Task]]:
    """The tasks of each instance, instances in order of first appearance."""
    grouped: dict[str, list[Task]] = {}
    for task in tasks:
        grouped.setdefault(task.instance_id, []).append(task)
    return list(grouped.values())


class CandidateStore:
    """Verdicts of candidates: stored, reused, reported (whichever executor grades)."""

    def __init__(self, settings: EvalSettings, say: Say, first_resolved: bool) -> None:
        self.settings, self.say, self.first_resolved = settings, say, first_resolved
        self.results: dict[str, InstanceResult] = {}
        self._lock = threading.Lock()

    @property
    def reused(self) -> int:
        return sum(len(r.reused) for r in self.results.values())

    def folder(self, task: Task) -> Path:
        instance = self.settings.outdir / folder_name(task.instance_id)
        return instance / CANDIDATES / task.sha256[:16]

    def reuse(self, task: Task) -> Outcome | None:
        return stored_outcome(self.folder(task), task)

    def record(self, tasks: list[Task], result: InstanceResult) -> None:
        for task in tasks:
            outcome = result.outcomes.get(task.sha256)
            if outcome is None or task.sha256 in result.reused:
                continue
            folder = self.folder(task)
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(folder / OUTCOME, json.dumps(outcome.document(), indent=2) + "\n")
        with self._lock:
            self.results[result.instance_id] = result
        for sha, outcome in result.outcomes.items():
            lines = [str(t.line) for t in tasks if t.sha256 == sha]
            self.say(f"{verdict_line(outcome)} [line {', '.join(lines)}]")
        if result.skipped:
            self.say(f"{result.instance_id}: {len(result.skipped)} candidate(s) skipped")

    def report(
        self, dataset_ids: list[str], tasks: list[Task], evaluation: dict[str, Any]
    ) -> dict[str, Any]:
        """The harness's report over the instances' best verdicts, with every candidate."""
        with self._lock:
            results = dict(self.results)
        best: dict[str, Outcome] = {}
        folders: dict[str, Path] = {}
        for task in tasks:
            outcome = results.get(task.instance_id, InstanceResult("")).outcomes.get(task.sha256)
            held = best.get(task.instance_id)
            if outcome is not None and (held is None or _RANK[outcome.status] < _RANK[held.status]):
                best[task.instance_id], folders[task.instance_id] = outcome, self.folder(task)
        submitted = list(dict.fromkeys(task.instance_id for task in tasks))
        report = run_report(dataset_ids, submitted, best, folders, evaluation)
        for iid, entry in report["instances"].items():
            mine = [t for t in tasks if t.instance_id == iid]
            entry.update(_instance_extras(results.get(iid, InstanceResult(iid)), mine))
        report["candidates"] = [_row(task, results.get(task.instance_id)) for task in tasks]
        self.settings.outdir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.settings.outdir / "report.json", json.dumps(report, indent=2) + "\n")
        return report


def _row(task: Task, result: InstanceResult | None) -> dict[str, Any]:
    outcome = result.outcomes.get(task.sha256) if result else None
    if outcome is not None:
        status = _STATUS.get(outcome.status, outcome.status)
    else:
        status = SKIPPED if result and task.sha256 in result.skipped else ERROR
    return {
        "instance_id": task.instance_id,
        "line": task.line,
        "model_name_or_path": task.prediction.get("model_name_or_path"),
        "patch_sha256": task.sha256,
        "status": status,
    }


def _instance_extras(result: InstanceResult, tasks: list[Task]) -> dict[str, Any]:
    return {
        "candidates": len(tasks),
        "distinct_patches": len({t.sha256 for t in tasks}),
        "graded": len(result.outcomes) - len(result.reused),
        "reused": len(result.reused),
        "skipped": len(result.skipped),
        "containers": result.containers,
        "resets_verified": result.resets_verified,
        "reset_fallbacks": result.fallbacks,
        "container_seconds": result.container_seconds,
    }


class CandidateEvaluator(CandidateStore):
    """Grades instances (all their candidates) ``settings.workers`` at a time, on threads."""

    def __init__(self, settings: EvalSettings, client: Any, say: Say, first_resolved: bool):
        super().__init__(settings, say, first_resolved)
        self.grader = Grader(client, settings.run_id, settings.timeout)
        self._futures: list[Future[None]] = []
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="evaluate")
        self._stopping = threading.Event()

    def __enter__(self) -> CandidateEvaluator:
        return self

    def __exit__(self, kind: Any, *rest: Any) -> None:
        if kind is not None:  # Ctrl-C or a failure: nothing new starts, containers go
            self._stopping.set()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self.grader.remove_all()
        self._pool.shutdown(wait=kind is None)

    def submit(self, tasks: list[Task]) -> None:
        self._futures.append(self._pool.submit(self._grade, tasks))

    def _grade(self, tasks: list[Task]) -> None:
        try:
            result = grade_instance(
                self.grader, tasks, self.folder, self.reuse, self.first_resolved
            )
        except Exception as exc:  # noqa: BLE001 - the engine failed: error verdicts, no crash
            result = failed(tasks, exc, self.folder(tasks[0]).parent.parent)
        if not self._stopping.is_set():  # an interrupted instance keeps no verdicts
            self.record(tasks, result)

    def wait(self) -> None:
        while not all(f.done() for f in self._futures):
            time.sleep(POLL)


def failed(tasks: list[Task], exc: Exception, folder: Path) -> InstanceResult:
    """Every candidate of the instance an error (the engine, or the worker, failed)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "containers.log", "a", encoding="utf-8") as log:
        log.write(traceback.format_exc())
    result = InstanceResult(tasks[0].instance_id)
    message = f"{type(exc).__name__}: {exc}"
    for task in tasks:
        result.outcomes[task.sha256] = Outcome(task.instance_id, ERROR, task.key(), 0.0, message)
    return result
