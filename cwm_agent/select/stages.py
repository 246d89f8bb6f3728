"""Which stages run: ``--stages``, or by default every stage whose inputs are there.

- static and group need nothing;
- reward needs a verifier model (``--verifier-model``, else the run's ``--model``);
- execute needs a runtime (``--repos-dir`` or ``--repo`` for a local one, ``--runtime
  docker`` for the records' images) and the execution stage itself (``EXECUTOR``).

A stage named in ``--stages`` whose inputs are missing is a usage error, except execute
without ``EXECUTOR``: it is reported as not run, loudly, as when it is left out by default
while a runtime is there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cwm_agent.errors import UsageError
from cwm_agent.verification.cascade import STAGES, Executor, Plan
from cwm_agent.verification.reward import RewardModel, VerifierConfig

# The execution stage (verification/execute.py), bound to its settings: wired here.
EXECUTOR: Executor | None = None
NOT_WIRED = "the execution stage is not wired into select in this version"
NO_VERIFIER = "no verifier model: pass --verifier-model (or --model)"
NO_RUNTIME = "no runtime: pass --repos-dir (or --repo), or --runtime docker"


@dataclass(frozen=True)
class PlanSpec:
    """Everything a worker needs to build the ``Plan`` (picklable, for Ray)."""

    stages: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    wanted: frozenset[str] = frozenset()
    keep: int = 5
    verifier: VerifierConfig | None = None

    def build(self) -> Plan:
        reward = RewardModel(self.verifier) if self.verifier and "reward" in self.stages else None
        executor = EXECUTOR if "execute" in self.stages else None
        return Plan(self.stages, self.skipped, self.wanted, self.keep, reward, executor)

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
    has_runtime: bool,
    keep: int,
) -> PlanSpec:
    available = {
        "static": "",
        "group": "",
        "reward": "" if verifier is not None else NO_VERIFIER,
        "execute": "" if has_runtime else NO_RUNTIME,
    }
    if asked is not None:
        for stage in asked:
            if available[stage] and not (stage == "execute" and has_runtime):
                raise UsageError(f"--stages {stage}: {available[stage]}")
    wanted = set(asked) if asked is not None else {s for s in STAGES if not available[s]}
    skipped = {}
    for stage in STAGES:
        if stage not in wanted:
            skipped[stage] = available[stage] or "not in --stages"
    if "execute" in wanted and EXECUTOR is None:
        skipped["execute"] = NOT_WIRED
    stages = tuple(s for s in STAGES if s not in skipped)
    warn = frozenset(s for s in wanted if s in skipped)
    return PlanSpec(stages, skipped, warn, keep, verifier if "reward" in stages else None)
