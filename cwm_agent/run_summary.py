"""The lines a run ends with on stderr: its outcome in one line, and what ``--apply`` wrote.

Read from what the run recorded (its trajectory, or a scaled run's selection), so the line
says the same as the files: outcome, steps, tokens, cost where the model has a price,
time, and where the record is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cwm_agent.costs import sum_usd, usage_of, usd

FILES_NAMED = 5  # files named in the --apply line; the rest are counted


def run_line(data: Mapping[str, Any], path: Path | str) -> str:
    """One line for a run, from its trajectory's document."""
    steps = data.get("steps")
    count = len(steps) if isinstance(steps, list) else 0
    return _line(
        "run",
        data.get("exit_status"),
        data.get("exit_code"),
        data.get("reason"),
        [f"{count} step{'s' if count != 1 else ''}"],
        data.get("usage"),
        data.get("cost_usd"),
        data.get("wall_seconds"),
        f"trajectory: {path}",
    )


def scaled_line(document: Mapping[str, Any], command: str) -> str:
    """One line for `run --attempts K` / `best-of`, from its ``--json`` document: every
    rollout's tokens and cost, the reproduction rollouts' included."""
    selection = document.get("selection") or {}
    usage = dict(document.get("usage") or {})
    usage["total_tokens"] = int(usage.get("total_tokens") or 0) + int(
        usage.get("reproduction_tokens") or 0
    )
    rollouts = [f"{selection.get('attempts', 0)} attempts"]
    tests = len(selection.get("reproduction_tests") or [])
    if tests:
        rollouts.append(f"{tests} reproduction rollouts")
    return _line(
        command,
        document.get("status"),
        document.get("exit_code"),
        document.get("reason"),
        rollouts,
        usage,
        document.get("cost_usd"),
        document.get("wall_seconds"),
        f"selection: {document.get('selection_file')}",
    )


def scaled_error_line(
    command: str, error: Any, folder: Path, run_id: str, seconds: float
) -> str | None:
    """The line of a scaled run that ended with ``error`` (a ``CwmError``), from what its
    rollouts' trajectories in ``folder`` recorded: how many there are, their tokens and
    cost. None when no rollout of this run (``run_id``) saved one: the error says all."""
    found = _rollouts(folder, run_id)
    if not any(found.values()):
        return None
    rollouts = [*found["attempt"], *found["repro"]]
    total = sum((usage_of(d.get("usage")) for d in rollouts), usage_of(None))
    usage = {"total_tokens": total.total_tokens, "cached_tokens": total.cached_tokens}
    counts = [f"{len(found['attempt'])} attempts"]
    if found["repro"]:
        counts.append(f"{len(found['repro'])} reproduction rollouts")
    cost = sum_usd([d.get("cost_usd") for d in rollouts])
    status, code = type(error).__name__, getattr(error, "exit_code", 1)
    reason = getattr(error, "message", str(error))
    return _line(
        command, status, code, reason, counts, usage, cost, seconds, f"trajectories: {folder}"
    )


def _rollouts(folder: Path, run_id: str) -> dict[str, list[Mapping[str, Any]]]:
    """The trajectories of this run's fix (attempt-N) and reproduction (repro-N) rollouts;
    a reused --traj-dir's older files have another run's id and are left out."""
    from cwm_agent.trajectory import load

    found: dict[str, list[Mapping[str, Any]]] = {"attempt": [], "repro": []}
    for path in sorted(folder.glob("*-*.json")) if folder.is_dir() else []:
        try:
            data = load(path)
        except (OSError, ValueError):
            continue  # not written yet, or not a trajectory
        kind = path.name.split("-", 1)[0]
        ours = isinstance(data, Mapping) and str(data.get("run_id", "")).startswith(f"{run_id}-")
        if kind in found and ours:
            found[kind].append(data)
    return found


def _line(
    command: str,
    status: Any,
    exit_code: Any,
    reason: Any,
    counts: list[str],
    usage: Any,
    cost: Any,
    seconds: Any,
    where: str,
) -> str:
    head = f"{command} ended: {status} (exit {exit_code})"
    first = str(reason or "").strip().splitlines()
    if first:
        head += f": {first[0]}"
    parts = [head, *counts, tokens(usage)]
    if isinstance(cost, (int, float)):
        parts.append(usd(cost))
    if isinstance(seconds, (int, float)):
        parts.append(duration(seconds))
    return " · ".join([*parts, where])


def tokens(usage: Any) -> str:
    """``12,345 tokens``, with the cached part where the server reported one."""
    counted = usage_of(usage if isinstance(usage, Mapping) else None)
    total = usage.get("total_tokens") if isinstance(usage, Mapping) else None
    total = total if isinstance(total, int) else counted.total_tokens
    text = f"{total:,} tokens"
    return f"{text} ({counted.cached_tokens:,} cached)" if counted.cached_tokens else text


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


@dataclass(frozen=True)
class Applied:
    """What ``--apply`` wrote: the repository's top and the patch's files and hunks."""

    top: Path
    files: tuple[str, ...]
    hunks: int

    def line(self) -> str:
        named = ", ".join(self.files[:FILES_NAMED])
        more = len(self.files) - FILES_NAMED
        if more > 0:
            named += f" and {more} more"
        files = f"{len(self.files)} file{'s' if len(self.files) != 1 else ''}"
        hunks = f"{self.hunks} hunk{'s' if self.hunks != 1 else ''}"
        return f"applied the patch to {self.top}: {files}, {hunks} ({named})"


def applied(patch: str, top: Path) -> Applied:
    """The files and hunks of a patch that was applied (validated before: it parses)."""
    from unidiff import PatchSet

    files = PatchSet(patch)
    return Applied(top, tuple(f.path for f in files), sum(len(f) for f in files))
