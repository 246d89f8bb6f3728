"""`cwm-agent replay`: re-run a trajectory's recorded actions in a fresh runtime, no model."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from cwm_agent import tools
from cwm_agent.console import say
from cwm_agent.errors import UsageError
from cwm_agent.factory import open_runtime
from cwm_agent.run import is_result_document, trajectory_of_result
from cwm_agent.settings import AgentConfig, RuntimeSettings
from cwm_agent.trajectory import load
from cwm_agent.types import Action


@dataclass(frozen=True)
class ReplayResult:
    patch: str | None
    recorded_patch: str | None
    actions: int

    @property
    def same(self) -> bool:
        return self.patch == self.recorded_patch


def recorded_actions(data: dict[str, Any]) -> list[Action]:
    """The actions the model took, in order (format errors carried none)."""
    actions = []
    for step in data.get("steps", []):
        record = step.get("action")
        if record:
            actions.append(Action(record["tool"], dict(record["args"]), call_id=record["call_id"]))
    return actions


def read_recorded(traj_path: str | Path) -> dict[str, Any]:
    """The trajectory; a result document (`run --json`) is followed to the one it names."""
    data = _read(Path(traj_path))
    if is_result_document(data):
        target = trajectory_of_result(data, Path(traj_path))
        note = f"{traj_path} is a result document; replaying its trajectory {target}"
        say(note)  # the document named it: untrusted
        data = _read(target)
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise UsageError(
            f"{traj_path} is not a cwm-agent trajectory (no list of 'steps')",
            hint="pass the trajectory file a run wrote (--traj PATH, or the runs folder)",
        )
    return data


def _read(path: Path) -> Any:
    try:
        return load(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the trajectory {path}: {exc}") from exc


def replay(traj_path: str | Path, repo: str | Path | None = None) -> ReplayResult:
    data = read_recorded(traj_path)
    config = data.get("config", {})
    repo_path = Path(repo or config.get("repo") or ".")
    if not repo_path.is_dir():
        raise UsageError(
            f"the trajectory's repository {repo_path} does not exist",
            hint="pass --repo PATH pointing at the same repository",
        )
    agent = recorded_agent(config)
    actions = recorded_actions(data)
    patch = None
    submitted: list[str] = []
    runtime = open_runtime(recorded_runtime(config), repo_path, f"replay-{data.get('run_id')}")
    try:
        for action in actions:
            if action.tool == "submit":
                path = action.args.get("path") or None
                submitted += [path] if path else []
                _, valid = tools.submit_patch(
                    runtime, path, runtime.base_dir, runtime.base, exclude=tuple(submitted)
                )
                patch = valid if valid is not None else patch
            else:
                tools.execute(
                    action,
                    runtime,
                    timeout=agent.timeout,
                    max_output=agent.max_output_chars,
                    tool_format=agent.tool_format,
                )
        if patch is None and data.get("patch"):  # emitted by --submit-on-limit, not submitted
            patch = runtime.diff(exclude=tuple(submitted)) or None
    finally:
        runtime.close()
    return ReplayResult(patch, data.get("patch"), len(actions))


def recorded_agent(config: dict[str, Any]) -> AgentConfig:
    """The limits and format the trajectory ran with (defaults for what it does not say)."""
    known = {f.name for f in fields(AgentConfig)}
    recorded = config.get("agent") or {}
    return AgentConfig(**{k: v for k, v in recorded.items() if k in known})


def recorded_runtime(config: dict[str, Any]) -> RuntimeSettings:
    """The runtime the trajectory ran in (the local runtime for older trajectories)."""
    known = {f.name for f in fields(RuntimeSettings)}
    recorded = config.get("runtime_settings") or {}
    return RuntimeSettings(**{k: v for k, v in recorded.items() if k in known})
