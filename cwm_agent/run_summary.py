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

from cwm_agent.costs import usage_of, usd

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
