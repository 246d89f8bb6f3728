"""The record of a scaled run: ``selection.json``, the ``--json`` document, the stderr table.

``selection.json`` is the cascade's record of the run's instance (the shape of a line of
select's ``selection.jsonl``: candidates, groups, stages, the choice and what decided it,
warnings, cost) plus the run's own members: ``rollouts`` (every fix rollout, with the
candidate it became), ``reproduction_tests`` (every reproduction rollout, with its script's
verdict on the base), ``selected``, ``reason``, ``usage`` and ``wall_seconds``. One
serializer: it is also the ``"selection"`` member of ``--json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cwm_agent.costs import sum_usd, usd
from cwm_agent.run import result_document
from cwm_agent.settings import RunSettings
from cwm_agent.types import Usage
from cwm_agent.verification.store import write_atomic

from .records import Attempt, ReproTest, ScalingOutcome

SCALED_FORMAT = 3  # 3: the cascade's record (2: per-test counts of whole-suite runs)


def total_usage(runs: list[Attempt]) -> Usage:
    total = Usage()
    for run in runs:
        if run.result is not None:
            total = total + run.result.usage
    return total


def reason(record: dict[str, Any], attempts: int) -> str:
    """Why the selected attempt was selected, in one sentence (the run's reason)."""
    chosen = record["chosen"]
    if chosen is None:
        if not record["candidates"]:
            return f"none of the {attempts} attempts produced a valid patch."
        return (
            f"none of the patches of {len(record['candidates'])} attempts is left after "
            "verification (selection.json's candidates say why)."
        )
    group = next(g for g in record["groups"] if g["key"] == chosen["group"])
    return (
        f"attempt {chosen['origin']['attempt']} selected by {chosen['decided_by']}: "
        f"{chosen['reason']} ({group['votes']} of {attempts} attempts produced this change)."
    )


def selection_document(
    settings: RunSettings,
    runs: list[Attempt],
    tests: list[ReproTest],
    record: dict[str, Any],
    why: str,
    started: float,
    options: dict[str, Any],
) -> dict[str, Any]:
    chosen = record["chosen"]
    usage = total_usage(runs)
    return {
        **record,
        "scaled_format": SCALED_FORMAT,
        "run_id": settings.run_id,
        "attempts": len(runs),
        **options,
        "selected": None
        if chosen is None
        else {"attempt": chosen["origin"]["attempt"], "group": chosen["group"], "reason": why},
        "reason": why,
        "rollouts": _rollout_rows(runs, record),
        "reproduction_tests": _test_rows(tests, record),
        "usage": {
            **asdict(usage),
            "total_tokens": usage.total_tokens,
            "reproduction_tokens": sum(t.tokens for t in tests),
        },
        # Every rollout's, the reproduction ones and those that failed included, and the
        # verifier's: what the scaled run cost, where the models have a price.
        "cost_usd": sum_usd(
            [r.rollout.cost_usd for r in runs]
            + [t.cost_usd for t in tests]
            + [record["stages"].get("reward", {}).get("cost", {}).get("usd")]
        ),
        "wall_seconds": round(time.time() - started, 3),
    }


def _rollout_rows(runs: list[Attempt], record: dict[str, Any]) -> list[dict[str, Any]]:
    """Each rollout, with the candidate it became (``candidate``: its ``n`` in the record)."""
    by_attempt = {c["origin"].get("attempt"): c for c in record["candidates"]}
    groups = {g["key"]: g for g in record["groups"]}
    rows = []
    for run in runs:
        row = run.rollout.row()
        candidate = by_attempt.get(run.rollout.attempt)
        group = groups.get(candidate["group"]) if candidate and candidate["group"] else None
        row.update(
            candidate=candidate["n"] if candidate else None,
            group=candidate["group"] if candidate else None,
            votes=group["votes"] if group else 0,
            checks=_checks(group),
            pruned_at=candidate["pruned_at"] if candidate else None,
            pruned_reason=candidate["reason"] if candidate else "",
            selected=bool(candidate and candidate["chosen"]),
        )
        rows.append(row)
    return rows


def _checks(group: dict[str, Any] | None) -> dict[str, Any] | None:
    """The group's execution verdict, in brief: checks passed of those that count."""
    verdict = group["execute"] if group else None
    if not verdict:
        return None
    return {key: verdict[key] for key in ("status", "passed", "total", "regressions", "reason")}


def _test_rows(tests: list[ReproTest], record: dict[str, Any]) -> list[dict[str, Any]]:
    """Each reproduction rollout, with its script's verdict on the base and whether it
    counted (it reproduced the issue there and was among the largest groups)."""
    execute = record["stages"].get("execute", {})
    on_base = {r["check"]: r["outcome"] for r in execute.get("runs", []) if r["group"] == "base"}
    counted = {s["key"]: s["counted"] for s in execute.get("scripts", [])}
    rows = []
    for test in tests:
        row = test.row()
        key = test.test_hash or ""
        row.update(base_outcome=on_base.get(key), counted=counted.get(key, False))
        rows.append(row)
    return rows


def write(path: Path, document: dict[str, Any]) -> Path:
    """Atomically, like the trajectories (\\u escapes: lone surrogates survive)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(document, indent=2))
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
    doc["cost_usd"] = selection.get("cost_usd")
    doc["wall_seconds"] = selection["wall_seconds"]
    doc["selection_file"] = str(outcome.path)
    doc["selection"] = selection
    return doc


def table(selection: dict[str, Any]) -> str:
    """The rollouts as a plain-text table (for stderr)."""
    priced = any(row.get("cost_usd") is not None for row in selection["rollouts"])
    cost = f"  {'cost':>9}" if priced else ""
    lines = [
        f"{'attempt':>7}  {'status':<20} {'tokens':>8}{cost}  {'group':<12}  votes  checks passed"
    ]
    for row in selection["rollouts"]:
        checks = row["checks"]
        shown = "-"
        if row["pruned_at"]:
            shown = f"pruned at {row['pruned_at']}"
        elif checks and checks["status"] == "ran":
            shown = f"{checks['passed']}/{checks['total']}"
        elif checks:
            shown = checks["status"] + (" (early stop)" if "early stop" in checks["reason"] else "")
        mark = "  <- selected" if row["selected"] else ""
        cost = f"  {usd(row.get('cost_usd')):>9}" if priced else ""
        lines.append(
            f"{row['attempt']:>7}  {row['status'][:20]:<20} {row['tokens']:>8}{cost}  "
            f"{row['group'] or '-':<12}  {row['votes'] or '-':>5}  {shown}{mark}"
        )
    return "\n".join(lines)
