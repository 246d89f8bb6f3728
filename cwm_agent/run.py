"""One `cwm-agent run`: build the runtime, model and agent from settings, run, validate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from cwm_agent.agent import Agent, ProgressFn, RunResult
from cwm_agent.errors import CwmError, Interrupted, PatchError
from cwm_agent.factory import open_model, open_runtime
from cwm_agent.settings import RunSettings
from cwm_agent.trajectory import Trajectory, default_runs_dir
from cwm_agent.types import Runtime, TextModel


def trajectory_path(settings: RunSettings) -> Path:
    return settings.traj_path or default_runs_dir() / f"{settings.run_id}.json"


def execute(
    settings: RunSettings, issue: str, progress: ProgressFn | None = None
) -> tuple[RunResult, Trajectory]:
    """Run one episode. Raises CwmError subclasses (their exit codes) on failures."""
    traj = Trajectory(trajectory_path(settings), settings.run_id, settings.record(), issue)
    model = open_model(settings.model)
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
    traj.data["config"]["runtime_notices"] = list(runtime.notices)
    for notice in runtime.notices:
        if progress is not None:
            progress("warning", {"message": notice})
    try:
        agent = Agent(model, runtime, settings.agent, traj, progress, _hooks(settings, model))
        result = agent.run(issue)
        if result.patch is not None:
            _revalidate(result.patch, runtime)
        return result, traj
    finally:
        runtime.close()


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


def emit_patch(patch: str, output: str | None) -> None:
    """Write the patch byte-exact: lines of non-UTF-8 files survive as their own bytes."""
    data = patch.encode("utf-8", "surrogateescape")
    if output:
        Path(output).write_bytes(data)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def apply_to_repo(patch: str, repo: Path) -> None:
    """``--apply``: the only time the user's repository is written to."""
    proc = subprocess.run(
        ["git", "apply", "--whitespace=nowarn", "-"],
        cwd=repo,
        input=patch.encode(),
        capture_output=True,
    )
    if proc.returncode != 0:
        raise PatchError(
            f"git apply failed in {repo}: {proc.stderr.decode(errors='replace').strip()}",
            hint="the working tree changed during the run; apply the printed patch by hand",
        )


def result_document(result: RunResult, traj: Trajectory) -> dict[str, Any]:
    """The one public shape of a run's outcome (``--json`` and batch results)."""
    data = traj.data
    return {
        "run_id": data["run_id"],
        "status": result.status,
        "exit_code": result.exit_code,
        "reason": result.reason,
        "patch": result.patch,
        "steps": result.steps,
        "usage": data["usage"],
        "wall_seconds": data.get("wall_seconds"),
        "submissions": len(data["submissions"]),
        "trajectory": str(traj.path),
    }
