"""One `cwm-agent run`: build the runtime, model and agent from settings, run, validate."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cwm_agent.agent import Agent, ProgressFn, RunResult
from cwm_agent.errors import CwmError, Interrupted, PatchError, UsageError
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
    _tell_notices(runtime, traj, progress, said=0, save=False)
    try:
        agent = Agent(model, runtime, settings.agent, traj, progress, _hooks(settings, model))
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
) -> None:
    """What a run gives back: the patch on stdout (or ``-o``), or with ``--json`` the result
    document on stdout (and the patch in ``-o`` when given); ``--apply`` last."""
    if as_json:
        sys.stdout.write(json.dumps(document(), indent=2) + "\n")
        sys.stdout.flush()
    if patch is not None and (output or not as_json):
        emit_patch(patch, output)
    if patch is not None and apply_to is not None:
        apply_to_repo(patch, apply_to)


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


def apply_to_repo(patch: str, repo: Path) -> None:
    """``--apply``: the only time the user's repository is written to.

    The patch's paths are relative to the top of the git repository holding REPO (the
    runtime works on the enclosing repository when REPO is a subdirectory), so it is
    applied there: run from a subdirectory, ``git apply`` would skip every file outside it
    and still exit 0. All or nothing: a hunk that would not apply, or a file git would
    skip, fails the check and nothing is written.
    """
    top = _toplevel(repo)
    data = patch.encode("utf-8", "surrogateescape")  # non-UTF-8 lines keep their bytes
    check = _git_apply(top, data, "--check", "--verbose")
    skipped = [line for line in check.splitlines() if line.startswith("Skipped patch")]
    if skipped:
        raise PatchError(
            f"git apply in {top} would skip part of the patch ({'; '.join(skipped)}); "
            "nothing was applied",
            hint="apply the printed patch by hand from the repository's top directory",
        )
    _git_apply(top, data)


def _toplevel(repo: Path) -> Path:
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
        raise PatchError(
            f"git apply failed in {top}; nothing was applied: {report}",
            hint="the working tree changed during the run; apply the printed patch by hand",
        )
    return report


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
