"""One `cwm-agent run`: build the runtime, model and agent from settings, run, validate."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cwm_agent.agent import Agent, AgentConfig, ProgressFn, RunResult
from cwm_agent.errors import CwmError, Interrupted, PatchError, UsageError
from cwm_agent.trajectory import Trajectory, default_runs_dir, new_run_id

CWM_CHAT_TEMPLATE_KWARGS = {"enable_thinking": True, "preserve_previous_think": True}


@dataclass(frozen=True)
class ModelSettings:
    name: str
    base_url: str | None = None
    temperature: float = 1.0
    top_p: float = 0.95
    request_timeout: float = 600.0
    max_retries: int = 4
    extra_body: dict[str, Any] = field(default_factory=dict)
    api: str = "chat"  # chat: /v1/chat/completions; completions: CWM format rendered here

    def public(self) -> dict[str, Any]:
        """What the trajectory records: everything but secrets (the key is never here)."""
        return asdict(self)


@dataclass(frozen=True)
class RunSettings:
    repo: Path
    model: ModelSettings
    agent: AgentConfig
    runtime: str = "local"
    image: str | None = None
    workdir: str = "/repo"
    repo_in_image: bool = False
    network: bool = False
    memory: str | None = "4g"
    pids_limit: int | None = 1024
    traj_path: Path | None = None
    trace_prediction: bool = False
    run_id: str = field(default_factory=new_run_id)


def default_extra_body(model_name: str) -> dict[str, Any]:
    """vLLM's chat-template switches for CWM; other models get none."""
    if "cwm" in model_name.lower():
        return {"chat_template_kwargs": dict(CWM_CHAT_TEMPLATE_KWARGS)}
    return {}


def trajectory_path(settings: RunSettings) -> Path:
    return settings.traj_path or default_runs_dir() / f"{settings.run_id}.json"


def execute(
    settings: RunSettings, issue: str, progress: ProgressFn | None = None
) -> tuple[RunResult, Trajectory]:
    """Run one episode. Raises CwmError subclasses (their exit codes) on failures."""
    from cwm_agent.models.openai_client import OpenAIModel

    config = {
        "run_id": settings.run_id,
        "repo": str(settings.repo),
        "runtime": settings.runtime,
        "image": settings.image,
        "model": settings.model.public(),
        "agent": asdict(settings.agent),
        "trace_prediction": settings.trace_prediction,
    }
    traj = Trajectory(trajectory_path(settings), settings.run_id, config, issue)
    model_cls: Any = OpenAIModel
    if settings.model.api == "completions":
        from cwm_agent.models.cwm_chat import CompletionsModel

        model_cls = CompletionsModel
    model = model_cls(
        settings.model.name,
        settings.model.base_url,
        os.environ.get("OPENAI_API_KEY"),
        temperature=settings.model.temperature,
        top_p=settings.model.top_p,
        timeout=settings.model.request_timeout,
        max_retries=settings.model.max_retries,
        extra_body=settings.model.extra_body or None,
    )
    try:
        runtime, description = open_runtime(settings)
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
    try:
        hooks = _hooks(settings, model)
        agent = Agent(model, runtime, settings.agent, traj, progress, description, hooks)
        result = agent.run(issue)
        if result.patch is not None:
            _revalidate(result.patch, runtime)
        return result, traj
    finally:
        runtime.close()


def _hooks(settings: RunSettings, model: Any) -> list[Any]:
    if not settings.trace_prediction:
        return []
    from cwm_agent.traces.consult import TraceConsultant

    return [TraceConsultant(model)]


def open_runtime(settings: RunSettings) -> tuple[Any, str]:
    if settings.runtime == "local":
        from cwm_agent.runtimes.local import LocalRuntime

        return LocalRuntime.create(settings.repo), "bash"
    if settings.runtime == "docker":
        from cwm_agent.runtimes.docker import DockerRuntime

        if not settings.image:
            raise UsageError(
                "--runtime docker needs --image",
                hint="e.g. --image python:3.11, or a SWE-bench image with --repo-in-image",
            )
        runtime = DockerRuntime.create(
            settings.repo,
            image=settings.image,
            workdir=settings.workdir,
            repo_in_image=settings.repo_in_image,
            run_id=settings.run_id,
            network=settings.network,
            memory=settings.memory,
            pids_limit=settings.pids_limit,
        )
        return runtime, "bash (in a Docker container)"
    raise UsageError(f"unknown runtime {settings.runtime!r}", hint="use local or docker")


def _revalidate(patch: str, runtime: Any) -> None:
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
