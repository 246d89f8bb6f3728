"""The run's record on disk: one JSON document, rewritten atomically after every step."""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cwm_agent.types import Action, Observation, Usage

FORMAT_VERSION = 1


def default_runs_dir() -> Path:
    """Where trajectories go without ``--traj``: ``$CWM_AGENT_HOME/runs`` or the XDG state dir."""
    home = os.environ.get("CWM_AGENT_HOME")
    if home:
        return Path(home) / "runs"
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(state) / "cwm-agent" / "runs"


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


class Trajectory:
    """Everything a run did, in the shape ``replay`` and ``--json`` read back."""

    def __init__(self, path: Path, run_id: str, config: dict[str, Any], issue: str) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "run_id": run_id,
            "config": config,
            "issue": issue,
            "started_at": time.time(),
            "messages": [],
            "steps": [],
            "submissions": [],
            "usage": asdict(Usage()),
            "exit_status": "running",
            "exit_code": None,
            "reason": "",
            "patch": None,
            "working_tree_diff": None,
        }

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.data["messages"]

    def add_step(
        self,
        *,
        reply_content: str,
        action: Action | None,
        observation: Observation | None,
        format_error: str | None,
        model_seconds: float,
        tool_seconds: float,
        usage: Usage,
        finish_reason: str | None,
        hooks: dict[str, Any] | None = None,
    ) -> None:
        self.data["steps"].append(
            {
                "step": len(self.data["steps"]) + 1,
                "reply": reply_content,
                "action": None if action is None else _action_record(action),
                "observation": None if observation is None else asdict(observation),
                "format_error": format_error,
                "model_seconds": round(model_seconds, 6),
                "tool_seconds": round(tool_seconds, 6),
                "usage": asdict(usage),
                "finish_reason": finish_reason,
                "hooks": hooks or {},
            }
        )

    def set_usage(self, usage: Usage) -> None:
        self.data["usage"] = {**asdict(usage), "total_tokens": usage.total_tokens}

    def finish(self, *, status: str, exit_code: int, reason: str, patch: str | None) -> None:
        self.data.update(
            exit_status=status,
            exit_code=exit_code,
            reason=reason,
            patch=patch,
            ended_at=time.time(),
        )
        self.data["wall_seconds"] = round(self.data["ended_at"] - self.data["started_at"], 3)

    def save(self) -> None:
        """Write atomically, so a crash or Ctrl-C mid-write never leaves a broken file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".traj-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.data, handle, ensure_ascii=False, separators=(",", ":"))
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _action_record(action: Action) -> dict[str, Any]:
    return {"tool": action.tool, "args": dict(action.args), "call_id": action.call_id}


def load(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
