"""``--executor ray``: one Ray task per instance; this process (the driver) writes OUTDIR.

Each task runs `solve_instance`, the function the thread pool runs, in a scratch folder
on whichever node Ray picks, and returns its result document and the files it wrote
(trajectory, stderr log, ``--attempts`` records). The driver puts them in OUTDIR and
records the outcome through the same `Ledger` as the thread pool: ``preds.jsonl``,
``result.json`` and ``summary.json`` are written only here, in the same crash-safe order,
so outputs and resume are the thread executor's. Nodes need no access to OUTDIR; they do
need cwm-agent installed, and ``--repo`` / ``--repos-dir`` at the same path (or images).

At most ``workers`` tasks are out at a time, each in a worker process of its own; without
``--ray-address`` a local Ray instance with ``workers`` CPUs is started and shut down at
the end.

The batch's budget (``--max-total-cost``, ``--max-batch-tokens``) is kept here, at task
granularity: a task's spend is known when it comes back, so no task is sent once it is
spent, and the tasks out end on their own (each within its ``--max-cost``).

Stopping (Ctrl-C / SIGTERM): every task out is cancelled (``ray.cancel``: a
KeyboardInterrupt in the task, which the agent turns into a clean abort that closes its
runtime); those that have not come back after ``STOP_GRACE`` seconds are cancelled with
``force=True`` (their worker process is killed). Ray is imported only here, only then.
"""

from __future__ import annotations

import collections
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from cwm_agent.batch.instances import Instance
from cwm_agent.batch.plan import BatchConfig
from cwm_agent.batch.runner import (
    LOG_NAME,
    STOP_GRACE,
    Display,
    Ledger,
    OnEnd,
    crash_document,
    finish_document,
    solve_instance,
)
from cwm_agent.batch.store import OutputStore
from cwm_agent.batch.summary import Tally, selection_warnings
from cwm_agent.costs import Limit, Meter, usage_of
from cwm_agent.errors import Interrupted
from cwm_agent.verification import layout
from cwm_agent.verification.ray_support import TASK_RETRIES, session
from cwm_agent.verification.store import write_atomic

POLL = 0.2  # seconds between looks at the tasks out (Ctrl-C is seen between them)

Outcome = tuple[dict[str, Any] | None, dict[str, bytes], str]


def solve_remote(config: BatchConfig, instance: Instance) -> Outcome:
    """The Ray task: `solve_instance` in a scratch folder; the folder's files go back.

    Returns (document or None if interrupted, {relative path: bytes}, the scratch path
    the document's paths start with).
    """
    with tempfile.TemporaryDirectory(prefix="cwm-batch-") as scratch:
        folder = Path(scratch)
        with open(folder / LOG_NAME, "w", encoding="utf-8", buffering=1) as log:
            doc = solve_instance(config, instance, folder, log)
        files = {
            str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*"))
            if path.is_file() and not path.name.startswith(".")  # temp files of atomic writes
        }
    return doc, files, scratch


class RayRunner:
    def __init__(
        self,
        config: BatchConfig,
        store: OutputStore,
        tally: Tally,
        display: Display,
        address: str | None = None,
        on_end: OnEnd | None = None,
        meter: Meter | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.ledger = Ledger(store, tally, display, on_end)
        self.display = display
        self.address = address
        self.meter = meter  # the batch's budget, counted as tasks come back
        self.budget_spent: Limit | None = None
        self._started: dict[str, float] = {}  # instance id -> when its task was sent

    def run(self, instances: list[Instance], workers: int) -> None:
        """Run them all; raises Interrupted on Ctrl-C/SIGTERM after winding down."""
        if not instances:
            return
        with session(self.address, workers, self.display.message) as ray:
            # max_calls=1: a fresh worker process per instance, which exits after it, so
            # nothing an instance leaves (an --attempts rollout thread still running after a
            # cancel, say) outlives it, and the runtimes' exit finalizers clean up.
            task = ray.remote(num_cpus=1, max_calls=1, max_retries=TASK_RETRIES)(solve_remote)
            config = ray.put(self.config)
            queue = collections.deque(instances)
            out: dict[Any, Instance] = {}  # object ref -> its instance
            try:
                while queue or out:
                    if queue and self.meter is not None and self.meter.exhausted():
                        self.budget_spent = self.meter.exhausted()
                        queue.clear()  # not sent: pending, for a resume with a larger budget
                    while queue and len(out) < workers:
                        instance = queue.popleft()
                        self.ledger.begin(instance)
                        self._started[instance.instance_id] = time.monotonic()
                        out[task.remote(config, instance)] = instance
                    ready, _ = ray.wait(list(out), num_returns=1, timeout=POLL)
                    for ref in ready:
                        self._collect(ray, out.pop(ref), ref)
            except KeyboardInterrupt:
                self._wind_down(ray, out)
                raise Interrupted(
                    "batch interrupted",
                    hint="finished instances are kept; re-run the same command to resume",
                ) from None

    def _collect(self, ray: Any, instance: Instance, ref: Any) -> None:
        """A task came back: its files into OUTDIR, its outcome recorded by the ledger."""
        started = self._started.pop(instance.instance_id, time.monotonic())
        folder = self.store.instance_dir(instance)
        try:
            doc, files, scratch = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            doc, files, scratch = None, {}, ""
        except ray.exceptions.RayError as exc:  # the worker died, or the task itself failed
            crashed = crash_document(exc, folder / layout.TRAJECTORY)
            doc = finish_document(crashed, instance, self.config.base.model.name, started)
            files, scratch = {LOG_NAME: f"{type(exc).__name__}: {exc}\n".encode()}, ""
        self._unpack(files, scratch, folder)
        for text in selection_warnings(doc):  # the thread executor shows them as they come
            self.display.warning(f"{instance.instance_id}: warning: selection: {text}")
        if doc is not None and self.meter is not None:
            self.meter.add(usage_of(doc.get("usage")))
        self.ledger.end(instance, _relocate(doc, scratch, folder))

    def _unpack(self, files: dict[str, bytes], scratch: str, folder: Path) -> None:
        for name, data in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if name == LOG_NAME:  # after this attempt's opening marker
                text = data.decode("utf-8", "surrogateescape")
                if scratch:
                    text = text.replace(scratch, str(folder))
                with open(path, "ab") as log:
                    log.write(text.encode("utf-8", "surrogateescape"))
            elif name.endswith(".json"):  # trajectories and selection.json name their paths
                write_atomic(path, _relocate_text(data.decode("utf-8"), scratch, folder))
            else:
                path.write_bytes(data)

    def _wind_down(self, ray: Any, out: dict[Any, Instance]) -> None:
        self.display.message(f"stopping: {len(out)} running instance(s), finished ones are kept")
        for ref in out:
            ray.cancel(ref)  # a KeyboardInterrupt in the task: the agent aborts cleanly
        deadline = time.monotonic() + STOP_GRACE
        try:
            while out and (left := deadline - time.monotonic()) > 0:
                ready, _ = ray.wait(list(out), num_returns=1, timeout=min(left, POLL))
                for ref in ready:
                    self._collect(ray, out.pop(ref), ref)
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: stop waiting
        finally:
            for ref, instance in out.items():  # stuck past the grace: kill the worker
                ray.cancel(ref, force=True)
                self.ledger.end(instance, None)


def _relocate(doc: dict[str, Any] | None, scratch: str, folder: Path) -> dict[str, Any] | None:
    """The document with the worker's scratch paths replaced by the instance folder."""
    if doc is None or not scratch:
        return doc
    relocated: dict[str, Any] = json.loads(_relocate_text(json.dumps(doc), scratch, folder))
    return relocated


def _relocate_text(text: str, scratch: str, folder: Path) -> str:
    if not scratch:
        return text
    as_json = lambda path: json.dumps(str(path))[1:-1]  # noqa: E731 - escaped as in JSON
    return text.replace(as_json(scratch), as_json(folder))
