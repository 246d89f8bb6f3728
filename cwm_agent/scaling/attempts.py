"""`--attempts K`: K independent rollouts, reproduction tests, verification, one selection.

Pipeline (one daemon thread pool of ``workers`` for everything), as CWM's report
describes its test-time scaling:

1. sample (``sampling.py``): K fix rollouts (``run.execute``, each with its own runtime
   and trajectory) and, when ``repro_tests`` > 0, K reproduction rollouts (``repro.py``:
   the same settings, ``repro_max_steps`` turns, the test file submitted), each script
   run at once on a fresh copy of the unpatched base;
2. group the patches (whitespace-insensitive identity); one distinct patch: done;
3. verify: the existing tests once on the unpatched base (which pass there); each
   distinct patch in its own runtime against the ``repro_tests`` largest groups of
   scripts (by normalized text) that printed "Issue reproduced" on the base, then the
   existing tests, likeliest winner first, counted per test;
4. choose (``select.py``: most tests passed, then majority, then fewest tokens) and
   write ``selection.json`` next to the trajectories.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from cwm_agent.agent import ProgressFn, RunResult
from cwm_agent.costs import Meter
from cwm_agent.errors import Interrupted, UsageError
from cwm_agent.run import run_meter
from cwm_agent.runtimes.shell import STOPPING, stop_commands
from cwm_agent.settings import RunSettings, check_sampling
from cwm_agent.trajectory import default_runs_dir, mark_interrupted

from . import report
from .pool import DaemonPool
from .records import (
    Attempt,
    Candidate,
    ExistingCount,
    Group,
    ReproTest,
    ScalingOutcome,
    Score,
    SuiteRun,
    Verification,
)
from .sampling import Note, Sampler
from .select import choose, count_existing, group_candidates, promise_order, top_tests
from .verify import Bench, VerifyConfig


def run_with_attempts(
    settings: RunSettings,
    issue: str,
    *,
    workers: int | None = None,
    traj_dir: Path | None = None,
    progress: ProgressFn | None = None,
    python: str = "python3",
    meter: Meter | None = None,
    stopping: Callable[[], bool] | None = None,
) -> ScalingOutcome:
    """Sample ``settings.scaling.attempts`` patches and select one (see the module docstring).

    ``settings.scaling.test_cmd``: None = ``verify.DEFAULT_TEST_CMD`` when the base has
    tests, "" = no existing tests. ``python`` runs the reproduction scripts. Raises
    the first attempt's error when every attempt failed with one (e.g. the model is
    unreachable). ``meter``: the budget of all rollouts together (``--max-cost``,
    ``--max-total-tokens``; by default the settings'); once spent, every rollout ends at
    its next step as at a step limit. ``stopping``: a caller's stop (a batch's Ctrl-C),
    followed by every rollout at once.
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
    meter = meter or run_meter(settings)
    sampler = Sampler(settings, issue, out_dir, bench, note, meter, stopping)
    try:
        runs, tests = sampler.sample(pool, attempts, with_tests=scaling.repro_tests > 0)
        candidates = [run.candidate for run in runs]
        found = _verify(
            pool, bench, candidates, tests, scaling.repro_tests, scaling.early_stop, note
        )
    except (KeyboardInterrupt, Interrupted):  # Ctrl-C here, or the caller's stop
        _wind_down(pool, sampler, out_dir)
        raise Interrupted("interrupted", hint=f"the trajectories so far are in {out_dir}") from None
    finally:
        pool.shutdown()
        bench.close()
    options = {
        "workers": workers,
        "repro_tests": scaling.repro_tests,
        "repro_max_steps": scaling.repro_max_steps,
        "early_stop": scaling.early_stop,
    }
    return _conclude(settings, runs, tests, found, bench, out_dir, started, options, note)


STOP_GRACE = 10.0  # seconds the rollouts get to end after Ctrl-C


def _wind_down(pool: DaemonPool, sampler: Sampler, out_dir: Path) -> None:
    """After Ctrl-C: every rollout stops (a running command and a model request at once,
    the others at their next step) and closes its runtime; a rollout still not done after
    the grace (a runtime that does not close) is abandoned, its trajectory marked
    interrupted. The process-wide stop of commands ends with the wind-down, so a caller
    of this function can go on, unless someone else set it (a batch stopping)."""
    pool.cancel_pending()  # rollouts not started yet never start
    sampler.stop.set()
    ours = not STOPPING.is_set()
    stop_commands()
    try:
        pool.wait_running(STOP_GRACE)
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: stop waiting
    finally:
        if ours:
            STOPPING.clear()
    for path in (*out_dir.glob("attempt-*.json"), *out_dir.glob("repro-*.json")):
        mark_interrupted(path, "interrupted (Ctrl-C or SIGTERM) while waiting for the model")


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
    found.kept = top_tests(tests, keep)
    sizes = ", ".join(str(t.size) for t in found.kept) or "none"
    note(
        f"verifying {len(found.groups)} distinct patches against {len(found.kept)} "
        f"reproduction tests (groups of {sizes}) and the existing tests"
    )
    base = pool.submit(bench.base_suite)  # which existing tests pass on the base

    def prepare_and_reproduce(group: Group) -> tuple[str | None, dict[str, str]]:
        problem = bench.prepare(group)
        if problem is not None:
            return problem, {}
        return None, {t.key: bench.repro(group, t).outcome for t in found.kept}

    verdicts: dict[str, dict[str, str]] = {}
    prepared = [(g, pool.submit(prepare_and_reproduce, g)) for g in found.groups]
    for group, future in prepared:
        problem, verdicts[group.key] = future.result()
        if problem is not None:
            found.invalid[group.key] = problem
            note(f"patch {group.key} is invalid: {problem}")
    valid = [g for g in found.groups if g.key not in found.invalid]
    found.base_suite = base.result()
    repro = {g.key: tuple((t.key, verdicts[g.key][t.key]) for t in found.kept) for g in valid}
    existing, found.early_stopped = _existing_tests(
        pool, bench, found.base_suite, valid, repro, early_stop
    )
    for group in valid:
        found.scores.append(Score(group, repro[group.key], existing.get(group.key)))
    return found


def _existing_tests(
    pool: DaemonPool,
    bench: Bench,
    base: SuiteRun | None,
    valid: list[Group],
    repro: dict[str, tuple[tuple[str, str], ...]],
    early_stop: bool,
) -> tuple[dict[str, ExistingCount], bool]:
    """Each patch's existing-tests count, and whether verification stopped early.

    With early stop the likeliest winner runs first and alone; once a patch passes every
    test, the patches whose run has not started are skipped (counted as not run).
    """
    if base is None or not valid:
        return {}, False
    passed = {key: sum(v == "resolved" for _, v in verdicts) for key, verdicts in repro.items()}
    order = promise_order(valid, passed)
    counts: dict[str, ExistingCount] = {}

    def perfect(group: Group) -> bool:
        count = counts[group.key]
        return count.passed == count.total and passed[group.key] == len(repro[group.key])

    queue = order
    if early_stop:
        counts[order[0].key] = count_existing(base, pool.submit(bench.existing, order[0]).result())
        if perfect(order[0]):
            queue = []
        else:
            queue = order[1:]
    futures = [(g, pool.submit(bench.existing, g)) for g in queue]
    for group, future in futures:
        counts[group.key] = count_existing(base, future.result())
        if early_stop and perfect(group):
            pool.cancel_pending()
            break
    for group, future in futures:  # runs already started finish; their result is kept
        if not future.cancelled() and group.key not in counts:
            counts[group.key] = count_existing(base, future.result())
    stopped = len(counts) < len(order)
    for group in order:
        counts.setdefault(group.key, count_existing(base, None))  # not run: early stop
    return counts, stopped


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
