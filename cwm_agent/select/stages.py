"""Which stages run: ``--stages``, or by default every stage whose inputs are there.

- static and group need nothing;
- reward needs a verifier model (``--verifier-model``, else the run's ``--model``);
- execute needs a runtime: ``--repos-dir`` or ``--repo`` for a local one (a sandboxed copy
  of the clone at the base), ``--runtime docker`` for the records' images. It runs the
  execution stage (``verification/execute.py``) with the ``ExecConfig`` the test options
  make. Not by default in a local copy when every record's own test command needs its
  image (conda's testbed env: ``for_local_runtime``).

A stage named in ``--stages`` whose inputs are missing is a usage error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from cwm_agent.errors import UsageError
from cwm_agent.verification.cascade import STAGES, Plan, Task
from cwm_agent.verification.execute import ExecConfig, Execution
from cwm_agent.verification.records import AS_WRITTEN
from cwm_agent.verification.reward import RewardModel, VerifierConfig
from cwm_agent.verification.testcmd import for_record, needs_image

NO_VERIFIER = "no verifier model: pass --verifier-model (or --model)"
NO_RUNTIME = "no runtime: pass --repos-dir (or --repo), or --runtime docker"
IMAGE_ONLY = (
    "the records' own test commands need their images (conda's testbed env), not a local "
    "copy: pass --runtime docker, or --test-cmd for a command that runs here"
)


@dataclass(frozen=True)
class PlanSpec:
    """Everything a worker needs to build the ``Plan`` (picklable, for Ray)."""

    stages: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    keep: int = 5
    verifier: VerifierConfig | None = None
    execution: ExecConfig | None = None  # None: execute does not run
    emit: str = AS_WRITTEN  # --emit

    def build(self) -> Plan:
        reward = RewardModel(self.verifier) if self.verifier and "reward" in self.stages else None
        executor = None
        if "execute" in self.stages and self.execution is not None:
            executor = Execution(self.execution)
        return Plan(self.stages, self.skipped, self.keep, reward, executor, emit=self.emit)

    def describe(self) -> dict[str, object]:
        return {"run": list(self.stages), "not_run": dict(self.skipped)}


def parse(spec: str | None) -> tuple[str, ...] | None:
    """``--stages a,b``: the stages in cascade order (None: not given)."""
    if spec is None:
        return None
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in STAGES]
    if unknown or not names:
        raise UsageError(
            f"--stages {spec!r}: unknown stage(s) {', '.join(unknown) or '(none given)'}",
            hint=f"name some of {','.join(STAGES)}",
        )
    return tuple(s for s in STAGES if s in names)


def plan(
    asked: tuple[str, ...] | None,
    verifier: VerifierConfig | None,
    execution: ExecConfig | None,
    keep: int,
) -> PlanSpec:
    """``execution`` None: there is no runtime to execute in."""
    available = {
        "static": "",
        "group": "",
        "reward": "" if verifier is not None else NO_VERIFIER,
        "execute": "" if execution is not None else NO_RUNTIME,
    }
    if asked is not None:
        for stage in asked:
            if available[stage]:
                raise UsageError(f"--stages {stage}: {available[stage]}")
    wanted = set(asked) if asked is not None else {s for s in STAGES if not available[s]}
    skipped = {s: available[s] or "not in --stages" for s in STAGES if s not in wanted}
    stages = tuple(s for s in STAGES if s not in skipped)
    return PlanSpec(
        stages,
        skipped,
        keep,
        verifier if "reward" in stages else None,
        execution if "execute" in stages else None,
    )


def for_local_runtime(spec: PlanSpec, tasks: Sequence[Task], asked: bool) -> tuple[PlanSpec, str]:
    """A local runtime (``--repos-dir``) for records whose own test command needs their
    image: by default execute does not run (each instance would pay a sandbox and a base
    run that fails); ``asked`` (``--stages`` or ``--tests``): it runs. Said once either way."""
    config = spec.execution
    runnable = [t for t in tasks if t.code.runtime is not None]  # the others have no clone
    if config is None or config.test_cmd is not None or not runnable:
        return spec, ""
    if any(t.code.runtime.runtime != "local" for t in runnable if t.code.runtime is not None):
        return spec, ""
    needing = sum(needs_image(for_record(t.record, None)) for t in runnable)
    if needing == len(runnable) and not asked:
        stages = tuple(s for s in spec.stages if s != "execute")
        return replace(spec, stages=stages, skipped={**spec.skipped, "execute": IMAGE_ONLY},
                       execution=None), ""  # fmt: skip
    if needing:
        return spec, f"{needing} of {len(runnable)} instance(s): {IMAGE_ONLY}; their base runs fail"
    return spec, ""
