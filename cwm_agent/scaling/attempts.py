"""`--attempts K`: K independent rollouts, reproduction tests, verification, one selection.

Pipeline (one daemon thread pool of ``workers`` for everything):

1. sample (``sampling.py``): K fix rollouts (``run.execute``, each with its own runtime
   and trajectory) and, when ``repro_tests`` > 0, K reproduction rollouts, each script
   run at once on a fresh copy of the unpatched base;
2. group the patches (whitespace-insensitive identity); one distinct patch: done;
3. verify: each distinct patch in its own runtime against every script that printed
   "Issue reproduced" on the base; rank those scripts by majority of behaviour and keep
   the top ``repro_tests``; then the existing test command, likeliest winner first;
4. choose (``select.py``) and write ``selection.json`` next to the trajectories.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from cwm_agent.agent import ProgressFn, RunResult
from cwm_agent.errors import Interrupted, UsageError
from cwm_agent.settings import RunSettings, check_sampling
from cwm_agent.trajectory import default_runs_dir

from . import report
from .pool import DaemonPool
from .records import Attempt, Candidate, Group, ReproTest, ScalingOutcome, Score, Verification
from .sampling import Note, Sampler
from .select import choose, group_candidates, promise_order, rank_tests
from .verify import Bench, VerifyConfig


def run_with_attempts(
    settings: RunSettings,
    issue: str,
    *,
    workers: int | None = None,
    traj_dir: Path | None = None,
    progress: ProgressFn | None = None,
    python: str = "python3",
) -> ScalingOutcome:
    """Sample ``settings.scaling.attempts`` patches and select one (see the module docstring).

    ``settings.scaling.test_cmd``: None = ``python3 -m pytest -x -q`` when the base has
    tests, "" = no existing-tests check. ``python`` runs the reproduction scripts. Raises
    the first attempt's error when every attempt failed with one (e.g. the model is
    unreachable).
    """
    scaling = settings.scaling
    attempts = scaling.attempts
    _check(settings, workers)
    started = time.time()
    out_dir = traj_dir or _default_dir(settings)
    workers = workers or attempts

    def note(message: str) -> None:
        if progress is not None:
            progress("scaling", {"message": message})

    verify = VerifyConfig(scaling.test_cmd, scaling.test_timeout, settings.agent.timeout, python)
    bench = Bench(settings, verify)
    tests_too = f" + {attempts} reproduction tests" if scaling.repro_tests else ""
    note(f"sampling {attempts} attempts{tests_too} with {workers} workers; records in {out_dir}")
    pool = DaemonPool(workers)
    try:
        sampler = Sampler(settings, issue, out_dir, bench, note)
        runs, tests = sampler.sample(pool, attempts, with_tests=scaling.repro_tests > 0)
        candidates = [run.candidate for run in runs]
        found = _verify(
            pool, bench, candidates, tests, scaling.repro_tests, scaling.early_stop, note
        )
    except KeyboardInterrupt:
        raise Interrupted("interrupted", hint=f"the trajectories so far are in {out_dir}") from None
    finally:
        pool.shutdown()
        bench.close()
    options = {
        "workers": workers,
        "repro_tests": scaling.repro_tests,
        "early_stop": scaling.early_stop,
    }
    return _conclude(settings, runs, tests, found, bench, out_dir, started, options, note)


def _check(settings: RunSettings, workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1")
    check_sampling(settings)


def _default_dir(settings: RunSettings) -> Path:
    if settings.traj_path is not None:
        return settings.traj_path.with_suffix("")  # --traj run.json -> run/attempt-1.json ...
    return default_runs_dir() / settings.run_id


# -- 2.-3. verification --------------------------------------------------------------------


def _verify(
    pool: DaemonPool,
    bench: Bench,
    candidates: list[Candidate],
    tests: list[ReproTest],
    keep: int,
    early_stop: bool,
    note: Note,
) -> Verification:
    found = Verification(group_candidates(candidates))
    if len(found.groups) < 2:
        return found  # nothing to choose between: no verification at all
    votes = report.reproducing_tests(tests)
    unique = {t.test_hash: t for t in tests if t.test_hash in votes}
    note(f"verifying {len(found.groups)} distinct patches against {len(votes)} reproduction tests")

    def prepare_and_reproduce(group: Group) -> tuple[str | None, dict[str, str]]:
        problem = bench.prepare(group)
        if problem is not None:
            return problem, {}
        return None, {h: bench.repro(group, t).outcome for h, t in unique.items()}

    verdicts: dict[tuple[str, str], str] = {}
    prepared = [(g, pool.submit(prepare_and_reproduce, g)) for g in found.groups]
    for group, future in prepared:
        problem, outcomes = future.result()
        if problem is not None:
            found.invalid[group.key] = problem
            note(f"patch {group.key} is invalid: {problem}")
        verdicts.update({(group.key, h): outcome for h, outcome in outcomes.items()})
    valid = [g for g in found.groups if g.key not in found.invalid]
    found.kept = rank_tests(votes, verdicts, [g.key for g in valid], keep)
    top = [h for h, _ in found.kept]
    passed = {g.key: sum(verdicts[(g.key, h)] == "resolved" for h in top) for g in valid}
    order = promise_order(valid, passed)
    existing, found.early_stopped = _existing_tests(
        pool, bench, order, passed, len(top), early_stop
    )
    for group in valid:
        outcome = existing.get(group.key, "skipped") if bench.test_cmd else None
        found.scores.append(Score(group, passed[group.key], len(top), outcome))
    return found


def _existing_tests(
    pool: DaemonPool,
    bench: Bench,
    order: list[Group],
    passed: dict[str, int],
    total: int,
    early_stop: bool,
) -> tuple[dict[str, str], bool]:
    """The test command's outcome per patch, and whether verification stopped early.

    With early stop the likeliest winner runs first and alone; once a patch passes every
    check, the patches whose run has not started are skipped.
    """
    if not bench.test_cmd or not order:
        return {}, False
    outcomes: dict[str, str] = {}

    def perfect(group: Group) -> bool:
        return outcomes.get(group.key) == "passed" and passed[group.key] == total

    queue = order
    if early_stop:
        outcomes[order[0].key] = pool.submit(bench.existing, order[0]).result().outcome
        if perfect(order[0]):
            return outcomes, len(order) > 1
        queue = order[1:]
    futures = [(g, pool.submit(bench.existing, g)) for g in queue]
    for group, future in futures:
        outcomes[group.key] = future.result().outcome
        if early_stop and perfect(group):
            pool.cancel_pending()
            break
    for group, future in futures:  # runs already started finish; their result is kept
        if not future.cancelled() and group.key not in outcomes:
            outcomes[group.key] = future.result().outcome
    return outcomes, len(outcomes) < len(order)


# -- 4. the choice -------------------------------------------------------------------------


def _conclude(
    settings: RunSettings,
    runs: list[Attempt],
    tests: list[ReproTest],
    found: Verification,
    bench: Bench,
    out_dir: Path,
    started: float,
    options: dict[str, Any],
    note: Note,
) -> ScalingOutcome:
    attempts = len(runs)
    valid = [g for g in found.groups if g.key not in found.invalid]
    winner: Group | None = None
    if found.scores:
        best, reason = choose(found.scores, attempts, found.early_stopped)
        winner = best.group
    elif valid:
        winner = valid[0]
        reason = f"attempt {winner.representative.attempt} selected: the only distinct patch "
        reason += f"({winner.votes} of {attempts} attempts produced it); nothing to verify."
    else:
        reason = f"none of the {attempts} attempts produced a valid patch."
    selection = report.selection_document(
        settings, runs, tests, found, bench, winner, reason, started, options
    )
    path = report.write(out_dir / "selection.json", selection)
    note(reason)
    chosen = next((r for r in runs if winner and r.candidate == winner.representative), None)
    if chosen is None or chosen.result is None:
        first_error = runs[0].error
        if first_error is not None and all(r.error is not None for r in runs):
            raise first_error  # e.g. the model is unreachable: exit 3, as for one run
        steps = sum(r.candidate.steps for r in runs)
        result = RunResult("no_patch", 1, reason, None, steps, report.total_usage(runs))
        return ScalingOutcome(result, None, selection, path)
    result = replace(chosen.result, reason=reason, extra={"attempt": chosen.candidate.attempt})
    return ScalingOutcome(result, chosen.trajectory, selection, path)
