"""Which stages run: ``--stages``, or by default every stage whose inputs are there.

- static and group need nothing;
- reward needs a verifier model (``--verifier-model``, else the run's ``--model``);
- execute needs a runtime: ``--repos-dir`` or ``--repo`` for a local one (a sandboxed copy
  of the clone at the base), ``--runtime docker`` for the records' images. It runs the
  execution stage (``verification/execute.py``) with the ``ExecConfig`` the test options
  make.

A stage named in ``--stages`` whose inputs are missing is a usage error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cwm_agent.errors import UsageError
from cwm_agent.verification.cascade import STAGES, Plan
from cwm_agent.verification.execute import ExecConfig, Execution
from cwm_agent.verification.records import AS_WRITTEN
from cwm_agent.verification.reward import RewardModel, VerifierConfig

NO_VERIFIER = "no verifier model: pass --verifier-model (or --model)"
NO_RUNTIME = "no runtime: pass --repos-dir (or --repo), or --runtime docker"


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
