"""`--attempts K`: K independent rollouts, reproduction tests, the verification cascade.

Pipeline, as CWM's report describes its test-time scaling, on the cascade `select` runs:

1. sample (``sampling.py``, one daemon thread pool of ``workers``): K fix rollouts
   (``run.execute``, each with its own runtime and trajectory) and, when ``repro_tests``
   > 0, K reproduction rollouts (``repro.py``: the same settings, ``repro_max_steps``
   turns, the test file submitted);
2. verify (``verify.py``): the rollouts' patches through static checks, grouping (votes),
   a verifier's score when one is configured, and execution in one warm runtime: the
   impacted existing tests that pass on the base and the ``repro_tests`` largest groups
   of scripts that reproduce the issue there, best first, with early stop and budgets;
3. choose (tests passed, then votes, then the fewest tokens) and write ``selection.json``
   next to the trajectories: the cascade's record plus the rollouts' rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
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
from cwm_agent.verification import layout
from cwm_agent.verification.cascade import Outcome

from . import report
from .pool import DaemonPool
from .records import Attempt, ReproTest, ScalingOutcome
from .sampling import Note, Sampler
from .verify import verify


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
    instance: tuple[str, Mapping[str, Any]] | None = None,
) -> ScalingOutcome:
    """Sample ``settings.scaling.attempts`` patches and select one (see the module docstring).

    ``python`` runs the reproduction scripts. ``instance``: (id, record) of a SWE-bench
    instance (batch), whose record may name its own test command; else the run's id.
    Raises the first attempt's error when every attempt failed with one (e.g. the model is
    unreachable). ``meter``: the budget of all rollouts together (``--max-cost``,
    ``--max-total-tokens``; by default the settings'); once spent, every rollout ends at
    its next step as at a step limit. ``stopping``: a caller's stop (a batch's Ctrl-C),
    followed by every rollout at once.
    """
    scaling = settings.scaling
    attempts = scaling.attempts
    _check(settings, workers)
    started = time.time()
    out_dir = traj_dir or records_dir(settings)
    workers = workers or attempts

    def note(message: str) -> None:
        if progress is not None:
            progress("scaling", {"message": message})

    tests_too = f" + {attempts} reproduction tests" if scaling.repro_tests else ""
    note(f"sampling {attempts} attempts{tests_too} with {workers} workers; records in {out_dir}")
    pool = DaemonPool(workers)
    meter = meter or run_meter(settings)
    sampler = Sampler(settings, issue, out_dir, note, meter, stopping, python)
    iid, record = instance or (settings.run_id, {"instance_id": settings.run_id})
    try:
        runs, tests = sampler.sample(pool, attempts, with_tests=scaling.repro_tests > 0)
        note(f"verifying the patches of {sum(bool(r.rollout.patch) for r in runs)} attempts")
        found = verify(settings, issue, runs, tests, (iid, record, out_dir), note, python)
    except (KeyboardInterrupt, Interrupted):  # Ctrl-C here, or the caller's stop
        _wind_down(pool, sampler, out_dir)
        raise Interrupted("interrupted", hint=f"the trajectories so far are in {out_dir}") from None
    finally:
        pool.shutdown()
    for text in found.warnings:  # loudly, whatever the verbosity
        if progress is not None:
            progress("warning", {"message": f"selection: {text}"})
    options = {
        "workers": workers,
        "repro_tests": scaling.repro_tests,
        "repro_max_steps": scaling.repro_max_steps,
        "early_stop": scaling.early_stop,
    }
    return _conclude(settings, runs, tests, found, out_dir, started, options, note)


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
    for path in (*out_dir.glob(layout.ATTEMPTS), *out_dir.glob(layout.REPROS)):
        mark_interrupted(path, "interrupted (Ctrl-C or SIGTERM) while waiting for the model")


def _check(settings: RunSettings, workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1")
    check_sampling(settings)


def records_dir(settings: RunSettings) -> Path:
    """Where the rollouts' trajectories and selection.json go without --traj-dir."""
    if settings.traj_path is not None:
        return settings.traj_path.with_suffix("")  # --traj run.json -> run/attempt-1.json ...
    return default_runs_dir() / settings.run_id


def _conclude(
    settings: RunSettings,
    runs: list[Attempt],
    tests: list[ReproTest],
    found: Outcome,
    out_dir: Path,
    started: float,
    options: dict[str, Any],
    note: Note,
) -> ScalingOutcome:
    reason = report.reason(found.record, len(runs))
    selection = report.selection_document(
        settings, runs, tests, found.record, reason, started, options
    )
    path = report.write(out_dir / layout.SELECTION, selection)
    note(reason)
    attempt = (selection["selected"] or {}).get("attempt")
    chosen = next((r for r in runs if attempt and r.rollout.attempt == attempt), None)
    if chosen is None or chosen.result is None:
        first_error = runs[0].error
        if first_error is not None and all(r.error is not None for r in runs):
            raise first_error  # e.g. the model is unreachable: exit 3, as for one run
        steps = sum(r.rollout.steps for r in runs)
        result = RunResult("no_patch", 1, reason, None, steps, report.total_usage(runs))
        return ScalingOutcome(result, None, selection, path)
    result = replace(chosen.result, reason=reason, extra={"attempt": attempt})
    return ScalingOutcome(result, chosen.trajectory, selection, path)
