"""One `cwm-agent run`: build the runtime, model and agent from settings, run, validate."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from cwm_agent.agent import Agent, ProgressFn, RunResult
from cwm_agent.console import say
from cwm_agent.costs import Meter
from cwm_agent.errors import ApplyError, CwmError, Interrupted, PatchError, UsageError
from cwm_agent.factory import open_model, open_runtime
from cwm_agent.run_summary import Applied, applied
from cwm_agent.settings import RunSettings
from cwm_agent.trajectory import Trajectory, default_runs_dir
from cwm_agent.types import Runtime, TextModel


def trajectory_path(settings: RunSettings) -> Path:
    return settings.traj_path or default_runs_dir() / f"{settings.run_id}.json"


def execute(
    settings: RunSettings,
    issue: str,
    progress: ProgressFn | None = None,
    *,
    stop: Callable[[], bool] | None = None,
    meter: Meter | None = None,
) -> tuple[RunResult, Trajectory]:
    """Run one episode. Raises CwmError subclasses (their exit codes) on failures.

    ``stop``: for a run on a worker thread, a check that gives up a model request in
    progress (the run then ends as interrupted). ``meter``: what the run spends counts
    there (a batch's or a scaled run's budget above it); by default the run's own.
    """
    traj = Trajectory(trajectory_path(settings), settings.run_id, settings.record(), issue)
    meter = meter or run_meter(settings)
    model = open_model(settings.model, stop)
    try:
        runtime = open_runtime(settings.runtime, settings.repo, settings.run_id)
    except CwmError as exc:
        traj.finish(status=type(exc).__name__, exit_code=exc.exit_code, reason=str(exc), patch=None)
        traj.save()
        raise
    except KeyboardInterrupt:
        traj.finish(
            status="interrupted", exit_code=130, reason="interrupted during set-up", patch=None
        )
        traj.save()
        raise Interrupted("interrupted", hint=f"the trajectory is in {traj.path}") from None
    _tell_notices(runtime, traj, progress, said=0, save=False)
    try:
        hooks = _hooks(settings, model)
        agent = Agent(model, runtime, settings.agent, traj, progress, hooks, meter)
        result = agent.run(issue)
        if result.patch is not None:
            _revalidate(result.patch, runtime)
        return result, traj
    finally:
        try:  # facts found during the run (the user's tree changing under an overlay)
            said = len(traj.data["config"]["runtime_notices"])
            _tell_notices(runtime, traj, progress, said=said, save=True)
        finally:
            runtime.close()


def run_meter(settings: RunSettings, parent: Meter | None = None) -> Meter:
    """The meter of one run (with ``--attempts``: of all its rollouts together): the model's
    prices, the run's budget, counting into ``parent`` (a batch's)."""
    budget = settings.agent.budget
    if settings.scaling.enabled:
        budget = replace(budget, scope="all attempts together")
    return Meter(settings.model.prices, budget, parent)


def _tell_notices(
    runtime: Runtime, traj: Trajectory, progress: ProgressFn | None, said: int, save: bool
) -> None:
    """The runtime's notices into the trajectory (``save``: written again, when there are
    new ones); those past the first ``said`` to stderr."""
    new = runtime.notices[said:]
    traj.data["config"]["runtime_notices"] = list(runtime.notices)
    for notice in new:
        if progress is not None:
            progress("warning", {"message": notice})
    if save and new:
        traj.save()


def _hooks(settings: RunSettings, model: TextModel) -> list[Any]:
    if not settings.agent.trace_prediction:
        return []
    from cwm_agent.traces.consult import TraceConsultant

    return [TraceConsultant(model)]


def _revalidate(patch: str, runtime: Runtime) -> None:
    """The final gate: a patch that fails here is a bug (exit 5), never printed as good."""
    from cwm_agent.patches import validate_patch

    try:
        validate_patch(patch, runtime.base_dir, runtime.base)
    except PatchError as exc:
        raise PatchError(
            f"the final patch failed validation: {exc.message}",
            hint="this is a bug in cwm-agent; please report it with the trajectory file",
        ) from exc


def deliver(
    patch: str | None,
    document: Callable[[], dict[str, Any]],
    *,
    as_json: bool,
    output: str | None,
    apply_to: Path | None,
) -> Applied | None:
    """What a run gives back: the patch on stdout (or ``-o``), or with ``--json`` the result
    document on stdout (and the patch in ``-o`` when given); ``--apply`` last, except with
    ``--json``, whose document says whether it applied. The patch is delivered either way;
    a failed ``--apply`` is raised at the end (exit 6). Returns what ``--apply`` wrote."""
    applying = patch is not None and apply_to is not None
    outcome: Applied | ApplyError | None = None
    if as_json:
        doc = document()
        if applying:
            assert patch is not None and apply_to is not None
            outcome = _try_apply(patch, apply_to)
            doc["applied"] = isinstance(outcome, Applied)
            if isinstance(outcome, ApplyError):
                doc.update(exit_code=outcome.exit_code, apply_error=outcome.message)
            else:
                doc.update(applied_files=list(outcome.files), applied_hunks=outcome.hunks)
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        sys.stdout.flush()
    if patch is not None and (output or not as_json):
        emit_patch(patch, output)
    if applying and not as_json:
        assert patch is not None and apply_to is not None
        outcome = _try_apply(patch, apply_to)
    if isinstance(outcome, ApplyError):
        raise outcome
    return outcome


def _try_apply(patch: str, repo: Path) -> Applied | ApplyError:
    try:
        return apply_to_repo(patch, repo)
    except ApplyError as exc:
        return exc


def emit_patch(patch: str, output: str | None) -> None:
    """Write the patch byte-exact: lines of non-UTF-8 files survive as their own bytes."""
    data = patch.encode("utf-8", "surrogateescape")
    if output:
        try:
            Path(output).write_bytes(data)
        except OSError as exc:  # the folder checked before the run may be gone by now
            raise UsageError(
                f"cannot write the patch to {output}: {exc.strerror or exc}",
                hint='the patch is also in the trajectory (its "patch" field; '
                "`cwm-agent show` prints it)",
            ) from None
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def apply_to_repo(patch: str, repo: Path) -> Applied:
    """``--apply``: the only time the user's repository is written to.

    The patch's paths are relative to the top of the git repository holding REPO (the
    runtime works on the enclosing repository when REPO is a subdirectory), so it is
    applied there: run from a subdirectory, ``git apply`` would skip every file outside it
    and still exit 0. All or nothing: a hunk that would not apply, or a file git would
    skip, fails the check and nothing is written.
    """
    top = toplevel(repo)
    data = patch.encode("utf-8", "surrogateescape")  # non-UTF-8 lines keep their bytes
    check = _git_apply(top, data, "--check", "--verbose")
    skipped = [line for line in check.splitlines() if line.startswith("Skipped patch")]
    if skipped:
        raise ApplyError(
            f"the patch could not be applied to {top}: git apply would skip part of it "
            f"({'; '.join(skipped)}); nothing was applied",
            hint=f"{_DELIVERED}; apply it by hand from the repository's top directory",
        )
    _git_apply(top, data)
    warn_outside_links(patch, top)
    return applied(patch, top)


def warn_outside_links(patch: str, top: Path) -> None:
    """A warning on stderr (even with -q) for symlinks the patch points out of ``top``."""
    from cwm_agent.patch_links import outside_links, warning

    links = outside_links(patch, str(top))
    if links:
        say(f"warning: {warning(links)}")


def toplevel(repo: Path) -> Path:
    proc = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=repo, capture_output=True, check=False
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        return repo  # not a work tree any more: git apply says what is wrong
    return Path(os.fsdecode(proc.stdout.rstrip(b"\n")))


def _git_apply(top: Path, data: bytes, *flags: str) -> str:
    """``git apply FLAGS -`` in ``top``; its stderr (where --verbose reports), or PatchError."""
    proc = subprocess.run(
        ["git", "apply", "--whitespace=nowarn", *flags, "-"],
        cwd=top,
        input=data,
        capture_output=True,
    )
    report = proc.stderr.decode(errors="replace").strip()
    if proc.returncode != 0:
        raise ApplyError(
            f"the patch could not be applied to {top}; nothing was applied: {report}",
            hint=f"the files changed during the run; {_DELIVERED}; merge it by hand "
            "(e.g. git apply --3way)",
        )
    return report


_DELIVERED = "the patch was still delivered (on stdout, or in the -o file)"


def result_document(result: RunResult, traj: Trajectory) -> dict[str, Any]:
    """The one public shape of a run's outcome (``--json`` and batch results).

    A JSON string holds text, not bytes: ``patch`` is the patch exactly when it is UTF-8
    (the usual case), with U+FFFD where a touched file has bytes that are not;
    ``patch_base64`` always holds the exact bytes (``jq -r .patch_base64 | base64 -d``).
    """
    data = traj.data
    return {
        "run_id": data["run_id"],
        "status": result.status,
        "exit_code": result.exit_code,
        "reason": result.reason,
        **patch_fields(result.patch),
        "steps": result.steps,
        "usage": data["usage"],
        "cost_usd": data.get("cost_usd"),
        "wall_seconds": data.get("wall_seconds"),
        "submissions": len(data["submissions"]),
        "notices": data["config"].get("runtime_notices", []),
        "trajectory": str(traj.path),
    }


def patch_fields(patch: str | None) -> dict[str, str | None]:
    """``patch`` (valid Unicode, lossless where the patch is UTF-8) and ``patch_base64``."""
    if patch is None:
        return {"patch": None, "patch_base64": None}
    data = patch.encode("utf-8", "surrogateescape")
    return {
        "patch": data.decode("utf-8", "replace"),
        "patch_base64": base64.b64encode(data).decode("ascii"),
    }


def is_result_document(data: Any) -> bool:
    """A ``--json`` result document (not a trajectory): ``steps`` is a count, not a list."""
    return (
        isinstance(data, dict) and "trajectory" in data and not isinstance(data.get("steps"), list)
    )


def trajectory_of_result(data: dict[str, Any], path: Path) -> Path:
    """The trajectory a result document points at; UsageError when it is gone."""
    named = data.get("trajectory")
    named = named if isinstance(named, str) else ""
    found = [p for p in (Path(named), path.parent / named) if p.is_file()] if named else []
    if not found:
        raise UsageError(
            f"{path} is a result document (what `run --json` prints), not a trajectory, "
            f"and the trajectory it names ({named or 'none'}) is not there",
            hint="pass the trajectory file itself (run --traj PATH keeps it where you want)",
        )
    return found[0]
