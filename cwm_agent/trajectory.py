"""The run's record on disk: one JSON document, brought up to date after every step
(``appendable.py`` keeps that cheap), and what finishes the record of a run that could
not: an abandoned thread (``mark_interrupted``), a process killed outright
(``mark_killed``, for `cwm-agent cleanup`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cwm_agent.appendable import MIN_GAP, AppendableDocument, encode
from cwm_agent.patch_size import human_size
from cwm_agent.types import Action, Observation, Usage

__all__ = ["MIN_GAP", "Trajectory", "load", "mark_interrupted", "mark_killed"]

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
    """Everything a run did, in the shape ``replay`` and ``--json`` read back.

    ``messages`` and ``steps`` are append-only: append to them, or replace the list or
    an item (noticed: the next save rewrites the file); never modify a saved record in
    place, or if you do, call ``save(full=True)``.
    """

    def __init__(self, path: Path, run_id: str, config: dict[str, Any], issue: str) -> None:
        from cwm_agent.runtimes.reaper import owner  # not at import: settings imports us

        self.path = path
        self.data: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "run_id": run_id,
            "config": config,
            "issue": issue,
            "started_at": time.time(),
            "owner": owner(),  # this process: `cwm-agent cleanup` tells a killed run by it
            "messages": [],
            "steps": [],
            "submissions": [],
            "usage": asdict(Usage()),
            "cost_usd": None,  # what the requests cost, where the model has a price
            "exit_status": "running",
            "exit_code": None,
            "reason": "",
            "patch": None,
            "working_tree_diff": None,
        }
        self._file = AppendableDocument(path)

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
        redact: Callable[[Any], Any] = lambda step: step,
    ) -> None:
        """One step, stored as ``redact`` leaves it (the agent's: no secret in any string of
        the record, the hooks' own records included)."""
        step = redact(
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
        self.data["steps"].append(step)

    def keep_working_tree_diff(self, diff: str, max_bytes: int) -> str:
        """Record the working-tree diff at the end. One over ``max_bytes`` is written whole
        to a file beside the trajectory instead, the record naming it and its size (the
        trajectory stays small, the work stays on disk); returns what the user must be
        told then ("" otherwise)."""
        if len(diff) <= max_bytes and len(diff.encode("utf-8", "surrogateescape")) <= max_bytes:
            self.data["working_tree_diff"] = diff
            return ""
        self.data["working_tree_diff"] = None
        beside = self.path.with_name(self.path.stem + ".working-tree.patch")
        try:
            size = _write_in_pieces(beside, diff)
        except OSError as exc:
            return f"the working-tree diff ({human_size(len(diff))}) was not kept: {exc}"
        self.data.update(working_tree_diff_file=str(beside), working_tree_diff_bytes=size)
        return (
            f"the working-tree diff ({human_size(size)}) is more than --max-patch-kb "
            f"{max_bytes // 1024} allows: it is in {beside}, not in the trajectory"
        )

    def set_usage(self, usage: Usage, cost_usd: float | None = None) -> None:
        self.data["usage"] = {**asdict(usage), "total_tokens": usage.total_tokens}
        self.data["cost_usd"] = None if cost_usd is None else round(cost_usd, 6)

    def finish(self, *, status: str, exit_code: int, reason: str, patch: str | None) -> None:
        self.data.update(
            exit_status=status,
            exit_code=exit_code,
            reason=reason,
            patch=patch,
            ended_at=time.time(),
        )
        self.data["wall_seconds"] = round(self.data["ended_at"] - self.data["started_at"], 3)
        self._store_patch_once(patch)

    def _store_patch_once(self, patch: str | None) -> None:
        """The final patch is kept in ``patch`` alone: the accepted submission it came from
        keeps its path and ``final: true``. Until the end the text is in that submission,
        so the file of a run killed after its submit still holds it."""
        submissions = self.data["submissions"]
        last = submissions[-1] if submissions else None
        if patch is not None and isinstance(last, dict) and last.get("patch") == patch:
            submissions[-1] = {"path": last.get("path"), "final": True}

    def save(self, *, full: bool = False) -> None:
        """Bring the file up to date; it is a complete JSON document after every write.

        ``full`` rewrites it whole (after changing an already-saved record in place).
        A finished run (``exit_status`` no longer "running") is always written whole
        and compact.
        """
        running = self.data.get("exit_status") == "running"
        self._file.save(self.data, full=full or not running, gap=running)


def _write_in_pieces(path: Path, text: str, piece: int = 1 << 20) -> int:
    """Write ``text`` (its bytes: surrogate escapes) a piece at a time: a huge diff is not
    copied whole once more to be encoded. Returns the bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with open(path, "wb") as handle:
        for start in range(0, len(text), piece):
            size += handle.write(text[start : start + piece].encode("utf-8", "surrogateescape"))
    return size


def _action_record(action: Action) -> dict[str, Any]:
    return {"tool": action.tool, "args": dict(action.args), "call_id": action.call_id}


def load(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def mark_interrupted(path: Path, reason: str) -> bool:
    """Finish a trajectory whose run was abandoned while it was still ``running`` (its
    thread waits on the model and will not write again); True if it was."""
    return _mark_ended(path, "interrupted", 130, reason)


KILLED_REASON = (
    "the run's process ended without finishing this record (killed outright: SIGKILL, "
    "the out-of-memory killer, a crash); marked by `cwm-agent cleanup`"
)
_RUNNING = b'"exit_status":"running"'  # as the compact encoding writes it


def mark_killed(folder: Path) -> tuple[list[Path], list[Path]]:
    """Trajectories under ``folder`` still ``running`` whose process is gone, finished as
    ``killed`` (exit code null: no one knows how it ended); (marked, kept: still going).

    Runs of an older version recorded no owner: taken as gone. A run started on another
    machine or before a reboot is kept (it cannot be checked from here)."""
    from cwm_agent.runtimes.reaper import owner_state

    marked: list[Path] = []
    kept: list[Path] = []
    for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        try:
            if _RUNNING not in path.read_bytes():
                continue
            data = load(path)
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("exit_status") != "running":
            continue
        recorded = data.get("owner")
        if owner_state(recorded if isinstance(recorded, str) else None) != "gone":
            kept.append(path)
        elif _mark_ended(path, "killed", None, KILLED_REASON):
            marked.append(path)
    return marked, kept


def _mark_ended(path: Path, status: str, exit_code: int | None, reason: str) -> bool:
    """Finish a trajectory still at ``running`` in place (atomically); True if it was."""
    try:
        data = load(path)
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("exit_status") != "running":
        return False
    data.update(exit_status=status, exit_code=exit_code, reason=reason, ended_at=time.time())
    started = data.get("started_at")
    if isinstance(started, (int, float)):
        data["wall_seconds"] = round(data["ended_at"] - started, 3)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".traj-", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(encode(data))
    os.replace(tmp, path)
    return True


def tokens_in(path: Path) -> int:
    """Tokens a run spent, from its trajectory file (0 when it cannot be read)."""
    try:
        return int(load(path)["usage"].get("total_tokens") or 0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0


def cost_in(path: Path) -> float | None:
    """What a run cost in USD, from its trajectory file (None: no price, or unreadable)."""
    try:
        cost = load(path).get("cost_usd")
    except (OSError, ValueError, AttributeError):
        return None
    return cost if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None
