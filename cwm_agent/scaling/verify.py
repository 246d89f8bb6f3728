"""The verification of a scaled run: the cascade `select` runs, on the run's own rollouts.

The fix rollouts' patches are the candidates (each with its attempt, trajectory and
tokens), the reproduction rollouts' tests are the scripts; the code is the run's REPO in
the runtime its rollouts used (a sandboxed copy or a container), so the static stage reads
the base from the execution stage's first runtime (``workspace.Lender``) and every group
runs in that one warm runtime, reset and checked between groups. The stages: static,
group, reward (only with ``--verifier-model``), execute (``--test-cmd`` its override,
``--repro-tests`` the largest reproducing scripts that count, budgets and early stop as
set). The choice follows CWM's order: tests passed, then votes, then the fewest tokens
(a verifier's score, when there is one, comes between tests and votes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cwm_agent.settings import RunSettings
from cwm_agent.verification import score_cache
from cwm_agent.verification.cascade import Outcome, Plan, Task, select_instance
from cwm_agent.verification.execute import Execution, config_from
from cwm_agent.verification.records import Candidate, Origin, ReproScript
from cwm_agent.verification.reward import RewardModel, VerifierConfig, verifier_settings
from cwm_agent.verification.scripts import Written, group_scripts
from cwm_agent.verification.workspace import CodeSource, LocalWorkspace

from .records import Attempt, ReproTest

NO_VERIFIER = "no --verifier-model"
KEEP = 5  # groups the reward stage passes on to execution (as select's --keep)


def candidates(
    instance_id: str, runs: Sequence[Attempt], out_dir: Path, model: str
) -> tuple[Candidate, ...]:
    """The rollouts that ended with a patch, as the cascade's candidates."""
    found = []
    for run in runs:
        rollout = run.rollout
        if rollout.patch:
            origin = Origin(str(out_dir), model=model, attempt=rollout.attempt,
                            path=rollout.trajectory)  # fmt: skip
            found.append(Candidate(instance_id, rollout.patch, origin, rollout.tokens))
    return tuple(found)


def scripts(tests: Sequence[ReproTest]) -> tuple[ReproScript, ...]:
    """The reproduction rollouts' tests that passed the filter, one per program."""
    written = [Written(t.code, Path(t.trajectory).name) for t in tests if t.code and not t.problem]
    found, _ = group_scripts(written)  # filtered already, with the reason in their rows
    return found


def plan(settings: RunSettings, python: str) -> Plan:
    scaling = settings.scaling
    reward = None
    if scaling.verifier_model:
        model = verifier_settings(settings.model, scaling.verifier_model, scaling.verifier_base_url)
        verifier = VerifierConfig(model, cache_dir=score_cache.default_folder(),
                                  prompts=settings.agent.prompts,
                                  prices=scaling.verifier_prices)  # fmt: skip
        reward = RewardModel(verifier)
    stages = ("static", "group", *(["reward"] if reward else []), "execute")
    skipped = {} if reward else {"reward": NO_VERIFIER}
    config = config_from(scaling, python=python, max_scripts=scaling.repro_tests)
    return Plan(stages, skipped, keep=KEEP, reward=reward, executor=Execution(config),
                prefer="tokens")  # fmt: skip


def verify(
    settings: RunSettings,
    issue: str,
    runs: Sequence[Attempt],
    tests: Sequence[ReproTest],
    where: tuple[str, Mapping[str, Any], Path],
    note: Callable[[str], None],
    python: str = "python3",
) -> Outcome:
    """The cascade over the rollouts; ``where``: (instance id, its record, the out folder)."""
    instance_id, record, out_dir = where
    workspace = LocalWorkspace(instance_id, record, settings.repo, settings.runtime,
                               prefix=f"{settings.run_id}-verify")  # fmt: skip
    code = CodeSource(runtime=settings.runtime, given=workspace,
                      missing="the base is read from the rollouts' runtime")  # fmt: skip
    repo = str(record.get("repo") or settings.repo.name)
    found = candidates(instance_id, runs, out_dir, settings.model.name)
    task = Task(instance_id, issue, found, code, record, repo, scripts(tests))
    chosen_plan = plan(settings, python)
    try:
        return select_instance(task, chosen_plan, note)
    finally:
        if chosen_plan.reward is not None:
            chosen_plan.reward.close()
