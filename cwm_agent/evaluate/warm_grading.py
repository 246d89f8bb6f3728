"""`evaluate --candidates`: one instance's candidates graded in one warm container.

The container is started once from the instance's image; each distinct patch (exact
bytes) is graded in it exactly as ``grade.py`` grades one prediction (the harness's apply
fallbacks, its eval script, its log grading); then the container is put back and checked
(``verification/warm.py``), or replaced by a fresh one when that cannot be verified or an
eval script ran past its time. ``--first-resolved`` stops an instance at its first
resolved candidate, in PREDS's order.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cwm_agent.errors import CwmError, RuntimeFailure
from cwm_agent.evaluate.grade import (
    ERROR,
    RESOLVED,
    TIMED_OUT,
    Grader,
    GradingError,
    Outcome,
    exec_stream,
    put_file,
    swebench,
)
from cwm_agent.evaluate.tasks import Task
from cwm_agent.types import CommandResult
from cwm_agent.verification.warm import Box, Warm
from cwm_agent.verification.warm_scripts import MARK_VAR

CONTAINERS_LOG = "containers.log"  # in the instance's folder: each container started
RESTART_HINT = "the candidates left get a fresh container; check the Docker engine"


@dataclass
class InstanceResult:
    """What grading one instance's candidates gave (``outcomes`` by patch sha256)."""

    instance_id: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # after --first-resolved
    reused: list[str] = field(default_factory=list)  # verdicts an earlier run made
    containers: int = 0
    resets_verified: int = 0
    fallbacks: list[str] = field(default_factory=list)
    container_seconds: float = 0.0


class ContainerBox:
    """A grading container as ``warm.py`` needs it: commands through ``docker exec``
    (bounded in time), files through the archive API; its processes have their own
    namespace. ``environment`` is given to the eval script (the warm tree's mark). A
    command or write that cannot reach the container is a RuntimeFailure (what a warm
    runtime's failure is everywhere: the reset falls back to a fresh container)."""

    sandboxed = True

    def __init__(self, grader: Grader, task: Task, log: Any) -> None:
        self.root = swebench("image_builder.constants").CONTAINER_WORKDIR
        self.grader, self.instance_id = grader, task.instance_id
        self.container = grader.start(task, log)
        self.environment: dict[str, str] = {}

    def run(self, command: str, timeout: float) -> CommandResult:
        try:
            output, timed_out, code = exec_stream(
                self.container, ["/bin/bash", "-c", command], timeout
            )
        except Exception as exc:  # noqa: BLE001 - the engine's errors and ours alike:
            # the container cannot be reached (gone, or the engine), a runtime failure
            raise RuntimeFailure(f"the container cannot run commands: {exc}", RESTART_HINT) from exc
        return CommandResult(output.decode("utf-8", "replace"), code, timed_out)

    def read_file(self, path: str) -> bytes:
        full = posixpath.join(self.root, path)
        output, timed_out, code = exec_stream(self.container, ["cat", "--", full], 120)
        if timed_out or code != 0:
            raise OSError(f"cannot read {full}: {output[-300:].decode('utf-8', 'replace')}")
        return output

    def write_file(self, path: str, data: bytes) -> None:
        try:
            put_file(self.container, posixpath.join(self.root, path), data)
        except Exception as exc:  # noqa: BLE001 - as in run
            raise RuntimeFailure(f"cannot write {path}: {exc}", RESTART_HINT) from exc

    def close(self) -> None:
        self.grader.remove(self.instance_id, self.container)


def grade_instance(
    grader: Grader,
    tasks: list[Task],
    folder_of: Callable[[Task], Path],
    reuse: Callable[[Task], Outcome | None],
    first_resolved: bool,
) -> InstanceResult:
    """Grade ``tasks`` (one instance's candidates, in PREDS's order) in a warm container."""
    result = InstanceResult(tasks[0].instance_id)
    firsts: dict[str, Task] = {}
    for task in tasks:  # each distinct patch once, where it first appears
        firsts.setdefault(task.sha256, task)
    distinct = list(firsts.values())
    instance = folder_of(distinct[0]).parent.parent  # <id>/candidates/<sha>: <id>

    def open_box(label: str) -> Box:
        instance.mkdir(parents=True, exist_ok=True)
        with open(instance / CONTAINERS_LOG, "a", encoding="utf-8") as log:
            return ContainerBox(grader, distinct[0], log)

    # The reset also looks at the conda envs' site-packages (warm.py's default watch),
    # which an eval script's `pip install -e .` rewrites.
    warm = Warm(open_box)
    try:
        for task in distinct:
            if first_resolved and any(o.status == RESOLVED for o in result.outcomes.values()):
                result.skipped.append(task.sha256)
                continue
            stored = reuse(task)
            if stored is not None:
                result.outcomes[task.sha256] = stored
                result.reused.append(task.sha256)
                continue
            result.outcomes[task.sha256] = _grade_one(grader, warm, task, folder_of(task))
    finally:
        warm.close()
        result.containers, result.resets_verified = warm.stats.opened, warm.stats.verified
        result.fallbacks = list(warm.stats.fallbacks)
        result.container_seconds = round(warm.stats.held_seconds, 3)
    return result


def _grade_one(grader: Grader, warm: Warm, task: Task, folder: Path) -> Outcome:
    if not task.patch:
        return grader.grade(task, folder)  # empty: no container
    try:
        box = warm.box
    except (GradingError, CwmError) as exc:  # no container (a missing image, the engine)
        return Outcome(task.instance_id, ERROR, task.key(), 0.0, str(exc))
    assert isinstance(box, ContainerBox)
    box.environment = {MARK_VAR: warm.tree.token}
    outcome = grader.grade(task, folder, warm=box)
    if outcome.error and outcome.error.startswith(TIMED_OUT):
        warm.discard("the eval script ran past its time")
    else:
        warm.reset()
    return outcome
