"""The record of a scaled run: ``selection.json``, the ``--json`` document, the stderr table.

One serializer: ``selection.json`` and the ``"selection"`` member of ``--json`` are the
same document.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cwm_agent.run import result_document
from cwm_agent.settings import RunSettings
from cwm_agent.types import Usage

from .records import Attempt, Group, ReproTest, ScalingOutcome, Verification

if TYPE_CHECKING:
    from .verify import Bench

FORMAT_VERSION = 1


def reproducing_tests(tests: list[ReproTest]) -> dict[str, int]:
    """Hash -> samples that wrote it, for tests that print "Issue reproduced" on the base."""
    votes: dict[str, int] = {}
    for test in tests:
        if test.test_hash is not None and test.base_outcome == "reproduced":
            votes[test.test_hash] = votes.get(test.test_hash, 0) + 1
    return votes


def total_usage(runs: list[Attempt]) -> Usage:
    total = Usage()
    for run in runs:
        if run.result is not None:
            total = total + run.result.usage
    return total


def selection_document(
    settings: RunSettings,
    runs: list[Attempt],
    tests: list[ReproTest],
    found: Verification,
    bench: Bench,
    winner: Group | None,
    reason: str,
    started: float,
    options: dict[str, Any],
) -> dict[str, Any]:
    scores = {s.group.key: s for s in found.scores}
    votes = {g.key: g.votes for g in found.groups}
    chosen = winner.representative if winner else None
    candidates = []
    for run in runs:
        row = run.candidate.row()
        key = run.candidate.patch_hash
        score = scores.get(key or "")
        row.update(
            votes=votes.get(key or "", 0),
            valid=key is not None and key not in found.invalid,
            invalid_reason=found.invalid.get(key or ""),
            checks_passed=score.passed if score else None,
            checks_total=score.total if score else None,
            existing_tests=score.existing if score else None,
            repro_passed=score.repro_passed if score else None,
            selected=run.candidate == chosen,
        )
        candidates.append(row)
    rank = {h: (i + 1, bloc) for i, (h, bloc) in enumerate(found.kept)}
    repro_rows = []
    for test in tests:
        row = test.row()
        place = rank.get(test.test_hash or "")
        row.update(kept=place is not None, rank=place[0] if place else None)
        row["behaviour_bloc"] = place[1] if place else None
        repro_rows.append(row)
    repro_usage = sum(t.tokens for t in tests)
    return {
        "format_version": FORMAT_VERSION,
        "run_id": settings.run_id,
        "attempts": len(runs),
        **options,
        "kept_tests": [test_hash for test_hash, _ in found.kept],
        "early_stopped": found.early_stopped,
        "test_cmd": bench.test_cmd,
        "test_cmd_source": bench.test_cmd_source,
        "selected": None
        if chosen is None
        else {"attempt": chosen.attempt, "patch_hash": chosen.patch_hash, "reason": reason},
        "reason": reason,
        "candidates": candidates,
        "reproduction_tests": repro_rows,
        "test_runs": [run.row() for run in bench.runs],
        "executions": len(bench.runs),
        "cache_hits": bench.cache_hits,
        "usage": {
            **asdict(total_usage(runs)),
            "total_tokens": total_usage(runs).total_tokens,
            "reproduction_tokens": repro_usage,
        },
        "wall_seconds": round(time.time() - started, 3),
    }


def write(path: Path, document: dict[str, Any]) -> Path:
    """Atomically, like the trajectories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".selection-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)  # \u escapes: lone surrogates survive
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def document(outcome: ScalingOutcome) -> dict[str, Any]:
    """The ``--json`` document: ``run``'s result shape plus the selection record."""
    result, selection = outcome.result, outcome.selection
    if outcome.trajectory is not None:
        doc = result_document(result, outcome.trajectory)
    else:
        doc = {
            "run_id": selection["run_id"],
            "status": result.status,
            "exit_code": result.exit_code,
            "reason": result.reason,
            "patch": None,
            "steps": result.steps,
            "wall_seconds": None,
            "submissions": 0,
            "trajectory": None,
        }
    doc["run_id"] = selection["run_id"]
    doc["usage"] = selection["usage"]  # every rollout's tokens, not only the winner's
    doc["wall_seconds"] = selection["wall_seconds"]
    doc["selection_file"] = str(outcome.path)
    doc["selection"] = selection
    return doc


def table(selection: dict[str, Any]) -> str:
    """The candidates as a plain-text table (for stderr)."""
    lines = [f"{'attempt':>7}  {'status':<20} {'tokens':>8}  {'patch':<12}  votes  checks"]
    for row in selection["candidates"]:
        checks = "-"
        if row["checks_total"] is not None:
            checks = f"{row['checks_passed']}/{row['checks_total']}"
        if row["existing_tests"] == "skipped":
            checks += " (existing tests skipped: early stop)"
        if row["patch_hash"] and not row["valid"]:
            checks = "invalid"
        mark = "  <- selected" if row["selected"] else ""
        lines.append(
            f"{row['attempt']:>7}  {row['status'][:20]:<20} {row['tokens']:>8}  "
            f"{row['patch_hash'] or '-':<12}  {row['votes'] or '-':>5}  {checks}{mark}"
        )
    return "\n".join(lines)
