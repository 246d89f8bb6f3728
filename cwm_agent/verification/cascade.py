"""The cascade: one instance's candidates to one choice, cheapest stage first.

static (no model, no run: ``static.py``) → group (votes: ``grouping.py``) → reward (a
verifier model: ``reward.py``; the top ``keep`` groups go on) → execute (the impacted tests
and reproduction tests in a warm runtime: a callable given by the caller, see
``Executor``) → choice (``choice.py``). Every stage prunes with a recorded reason; a stage
that could not run is said loudly (``warnings``, in the record and on stderr) along with
the weaker signal the choice fell to. Every stage's cost is recorded (``records.Cost``).

The record (``selection_record.py``) is one line of ``selection.jsonl``.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from cwm_agent.costs import sum_usd
from cwm_agent.errors import CwmError, Interrupted, RuntimeFailure
from cwm_agent.verification import choice, grouping, static
from cwm_agent.verification.records import (
    AS_WRITTEN,
    Candidate,
    Cost,
    ExecReport,
    ExecVerdict,
    Group,
    ReproScript,
    Workspace,
)
from cwm_agent.verification.reward import RewardModel
from cwm_agent.verification.selection_record import InstanceLog
from cwm_agent.verification.testinfra import Split, split_patch
from cwm_agent.verification.workspace import CodeSource, Lender, base_code, workspace

STAGES = ("static", "group", "reward", "execute")
Note = Callable[[str], None]


class Executor(Protocol):
    """The execution stage (``verification/execute.py``'s ``execute`` with its config bound):
    groups best first, the verdict of each it ran."""

    def __call__(
        self,
        workspace: Workspace,
        groups: Sequence[Group],
        scripts: Sequence[ReproScript],
        *,
        note: Note,
    ) -> ExecReport: ...


@dataclass(frozen=True)
class Task:
    """One instance to select for."""

    instance_id: str
    issue: str
    candidates: tuple[Candidate, ...]
    code: CodeSource = field(default_factory=CodeSource)
    record: Mapping[str, Any] = field(default_factory=dict)  # for the Workspace
    repo: str = ""
    scripts: tuple[ReproScript, ...] = ()
    empty: int = 0  # its predictions that were empty (not candidates): said when none is left


@dataclass(frozen=True)
class Plan:
    """What runs for every instance. ``skipped``: stage -> why it does not run."""

    stages: tuple[str, ...]
    skipped: Mapping[str, str] = field(default_factory=dict)
    keep: int = 5
    reward: RewardModel | None = None
    executor: Executor | None = None
    prefer: str = "size"  # the tie-break after votes: "size", or "tokens" (CWM's order)
    emit: str = AS_WRITTEN  # the prediction: the patch as written, or CODE_ONLY


@dataclass(frozen=True)
class Outcome:
    instance_id: str
    record: dict[str, Any]
    prediction: dict[str, Any] | None
    warnings: tuple[str, ...]
    retry: bool  # the verifier failed after retries: a resume selects the instance again
    cost: Cost


def _quiet(text: str) -> None:
    pass


def select_instance(task: Task, plan: Plan, note: Note = _quiet) -> Outcome:
    started = time.monotonic()
    with ExitStack() as held:
        code, lender, unopened = _code(task, plan, held)
        log = InstanceLog(task.instance_id, task.candidates, code.describe(), plan.prefer,
                          plan.emit)  # fmt: skip
        entries = _static(task, plan, log, code, lender.seconds if lender else 0.0)
        groups = _group(entries, plan, log)
        groups, scores = _reward(task, plan, log, groups)
        groups, verdicts, weak = _execute(task, plan, log, groups, scores, note,
                                          lender or unopened)  # fmt: skip
    ranked = choice.rank(groups, scores, verdicts, plan.prefer)
    decision = choice.decide(ranked)
    if not task.candidates and task.empty:
        why = f"nothing to choose from: its {task.empty} prediction(s) are empty (no patch)"
        decision = replace(decision, reason=why)
    for text in weak:  # a check that could not run: say what decided instead
        log.warn(f"execute: {text}" + _fell_to(decision))
    record, prediction, cost = log.finish(ranked, decision, time.monotonic() - started)
    warnings = tuple(log.warnings)
    return Outcome(task.instance_id, record, prediction, warnings, log.model_failure, cost)


def _code(task: Task, plan: Plan, held: ExitStack) -> tuple[CodeSource, Lender | None, str]:
    """The code the static stage reads. Without a clone, when execution will run: the
    base of the execution stage's first runtime, opened now and lent to it (the third:
    why that runtime did not open, so that execution does not open it again)."""
    code = task.code
    executes = "execute" in plan.stages and plan.executor is not None
    runtime = code.runtime is not None or code.given is not None
    if code.clone is not None or "static" not in plan.stages or not executes or not runtime:
        return code, None, ""
    if len(task.candidates) < 2:
        return code, None, ""  # nothing will be executed: no runtime for the base alone
    try:
        lender = Lender(held.enter_context(workspace(task.instance_id, task.record, code)))
        held.callback(lender.close)
        clone, commit = lender.base()
    except CwmError as exc:
        why = f"{code.missing or 'no clone'}; no runtime for the base either ({exc.message})"
        return replace(code, missing=why), None, exc.message
    found = replace(code, clone=clone, commit=commit, label="the execution runtime's base")
    return found, lender, ""


def _static(
    task: Task, plan: Plan, log: InstanceLog, code: CodeSource, opening: float
) -> list[grouping.Entry]:
    started = time.monotonic()
    numbered = list(enumerate(task.candidates, 1))
    if "static" not in plan.stages:
        entries = [grouping.Entry(n, c, _split_only(c.patch)) for n, c in numbered]
        log.stage("static", len(numbered), len(entries), Cost(), why=_why_not(plan, "static"))
        return entries
    entries = []
    with base_code(code) as (base, missing):
        for n, candidate in numbered:
            result = static.check(candidate.patch, base, missing)
            log.static(n, result)
            if result.passed and result.split is not None:
                entries.append(grouping.Entry(n, candidate, result.split))
    cost = Cost(runtime_seconds=opening, wall_seconds=time.monotonic() - started + opening)
    log.stage("static", len(numbered), len(entries), cost)
    log.warn_not_checked()
    return entries


def _fell_to(decision: choice.Decision) -> str:
    if decision.winner is None:
        return ""
    if decision.decided_by in (choice.TESTS, choice.PARTLY_RUN):
        return f"; the choice fell to the checks that could run ({decision.decided_by})"
    return f"; the choice fell to {decision.decided_by}"


def _why_not(plan: Plan, stage: str, groups: Sequence[Group] = ()) -> str:
    if stage in plan.skipped:
        return plan.skipped[stage]
    if stage == "static":
        return "no candidate left"
    if len(groups) == 1 and stage in ("reward", "execute"):
        return "one group left: nothing to choose between"
    return "no group left"


def _split_only(patch: str) -> Split:
    parsed, _ = static.parse(patch)
    return split_patch(patch, parsed) if parsed is not None else Split(patch)


def _group(entries: list[grouping.Entry], plan: Plan, log: InstanceLog) -> list[Group]:
    started = time.monotonic()
    grouped = "group" in plan.stages
    groups = grouping.group(entries) if grouped else grouping.singletons(entries)
    log.groups(entries, groups)
    cost = Cost(wall_seconds=time.monotonic() - started)
    log.stage(
        "group", len(entries), len(groups), cost, why="" if grouped else _why_not(plan, "group")
    )
    return groups


def _reward(
    task: Task, plan: Plan, log: InstanceLog, groups: list[Group]
) -> tuple[list[Group], dict[str, float | None]]:
    if "reward" not in plan.stages or plan.reward is None or len(groups) < 2:
        why = _why_not(plan, "reward", groups)
        passed = "reward" in plan.stages and plan.reward is not None
        log.stage("reward", len(groups), len(groups), Cost(), why=why, passed=passed)
        return groups, {}
    started = time.monotonic()
    results = plan.reward.score(task.issue, groups, task.repo)
    scores = {s.group: s.score for s in results}
    cost = Cost(
        model_calls=sum(s.calls for s in results),
        tokens=sum(s.tokens for s in results),
        wall_seconds=time.monotonic() - started,
        usd=sum_usd([s.usd for s in results]),
    )
    log.scores(results)
    unscored = [s for s in results if s.score is None]
    if len(unscored) == len(results):
        log.warn(f"reward: no group could be scored ({unscored[0].reason}); its signal is missing")
        log.stage("reward", len(groups), len(groups), cost)
        return groups, scores
    if unscored:
        log.warn(f"reward: {len(unscored)} of {len(results)} group(s) have no score "
                 f"({unscored[0].reason}); they rank below the scored ones")  # fmt: skip
    order = [r.group for r in choice.rank(groups, scores, prefer=plan.prefer)]
    kept = order[: plan.keep]
    failed = {s.group: s.reason for s in unscored}
    for place, group in enumerate(order[plan.keep :], plan.keep + 1):
        if group.key in failed:  # not judged by the verifier: ranked below every scored one
            why = (f"no verifier score ({failed[group.key]}): ranked {place} of {len(order)}, "
                   f"below the scored groups and --keep {plan.keep}")  # fmt: skip
        else:
            why = f"ranked {place} of {len(order)} by the verifier, below --keep {plan.keep}"
        log.prune_group(group.key, "reward", why)
    log.stage("reward", len(groups), len(kept), cost)
    return kept, scores


def _execute(
    task: Task,
    plan: Plan,
    log: InstanceLog,
    groups: list[Group],
    scores: Mapping[str, float | None],
    note: Note,
    lender: Lender | str,
) -> tuple[list[Group], dict[str, ExecVerdict], list[str]]:
    """(the groups left, their verdicts, the checks that could not run, in words).
    ``lender``: the runtime the static stage opened, or why it did not open ("": none)."""
    if "execute" not in plan.stages or plan.executor is None or len(groups) < 2:
        why = _why_not(plan, "execute", groups)
        passed = "execute" in plan.stages and plan.executor is not None
        log.stage("execute", len(groups), len(groups), Cost(), why=why, passed=passed)
        return groups, {}, []
    if isinstance(lender, str) and lender:  # opening it again would fail again, and cost
        why = f"the runtime did not open: {lender}"
        log.stage("execute", len(groups), len(groups), Cost(), why=why)
        return groups, {}, [f"could not run ({why}): its signal is missing"]
    started = time.monotonic()
    best_first = [r.group for r in choice.rank(groups, scores, prefer=plan.prefer)]
    try:
        if isinstance(lender, Lender):  # its first runtime held the static stage's base
            report = plan.executor(lender, best_first, task.scripts, note=note)
        else:
            with workspace(task.instance_id, task.record, task.code) as ws:
                report = plan.executor(ws, best_first, task.scripts, note=note)
    except RuntimeFailure as exc:
        log.stage("execute", len(groups), len(groups), Cost(), why=exc.message)
        return groups, {}, [f"could not run ({exc.message}): its signal is missing"]
    except Interrupted:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug must not cost the instance its choice
        message = f"an unexpected error, {type(exc).__name__}: {exc}"
        log.stage("execute", len(groups), len(groups), Cost(), why=message,
                  error=traceback.format_exc())  # fmt: skip
        return groups, {}, [f"could not run ({message}; the traceback is in the record's "
                            "stages.execute.error): its signal is missing"]  # fmt: skip
    kept = []
    for group in best_first:
        verdict = report.verdicts.get(group.key)
        if verdict is not None and verdict.status == "invalid":
            log.prune_group(group.key, "execute", verdict.reason or "does not apply in the runtime")
        else:
            kept.append(group)
    cost = report.cost + Cost(wall_seconds=time.monotonic() - started - report.cost.wall_seconds)
    log.execution(report, task.scripts)
    log.stage("execute", len(groups), len(kept), cost)
    return kept, dict(report.verdicts), list(report.warnings)
