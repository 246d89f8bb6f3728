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

from cwm_agent.costs import sum_usd, usd
from cwm_agent.run import result_document
from cwm_agent.settings import RunSettings
from cwm_agent.types import Usage
from cwm_agent.verification import junit

from . import select
from .records import (
    Attempt,
    Candidate,
    Group,
    ReproTest,
    ScalingOutcome,
    Score,
    Verification,
)

if TYPE_CHECKING:
    from .verify import Bench

FORMAT_VERSION = 2  # 2: per-test existing counts, tests grouped by normalized text
SCORING = (
    "tests passed: the existing tests that pass on the unpatched base and still pass, plus "
    "the kept reproduction tests that print 'Issue resolved'; ties: the patch most attempts "
    "produced (majority), then the fewest tokens"
)


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
    chosen = winner.representative if winner else None
    repro_usage = sum(t.tokens for t in tests)
    return {
        "format_version": FORMAT_VERSION,
        "run_id": settings.run_id,
        "attempts": len(runs),
        **options,
        "scoring": SCORING,
        "early_stopped": found.early_stopped,
        "test_cmd": bench.test_cmd,
        "test_cmd_source": bench.test_cmd_source,
        "existing_tests": _existing_summary(found, bench),
        "kept_tests": [
            {"rank": n, "test_hash": t.key, "size": t.size, "samples": list(t.samples)}
            for n, t in enumerate(found.kept, 1)
        ],
        "selected": None
        if chosen is None
        else {"attempt": chosen.attempt, "patch_hash": chosen.patch_hash, "reason": reason},
        "reason": reason,
        "candidates": _candidate_rows(runs, found, chosen),
        "reproduction_tests": _test_rows(tests, found),
        "test_runs": [run.row() for run in bench.runs],
        "executions": len(bench.runs),
        "cache_hits": bench.cache_hits,
        "usage": {
            **asdict(total_usage(runs)),
            "total_tokens": total_usage(runs).total_tokens,
            "reproduction_tokens": repro_usage,
        },
        # Every rollout's, the reproduction ones and those that failed included: what the
        # scaled run cost, where the model has a price.
        "cost_usd": sum_usd([r.candidate.cost_usd for r in runs] + [t.cost_usd for t in tests]),
        "wall_seconds": round(time.time() - started, 3),
    }


def _existing_summary(found: Verification, bench: Bench) -> dict[str, Any]:
    """How the existing tests were counted, and what the base run found."""
    base = found.base_suite
    summary: dict[str, Any] = {"command": bench.test_cmd, "source": bench.test_cmd_source}
    if base is None:
        mode = "not run" if bench.test_cmd else None  # not run: nothing to choose between
        return {**summary, "mode": mode, "counted": 0, "base": None, "note": ""}
    if base.results is None:
        summary.update(mode="exit_code", counted=1, note=select.NO_REPORT)
    else:
        counted = len(junit.passing(base.results))
        summary.update(mode="per_test", counted=counted, note="")
    tally = junit.counts(base.results) if base.results is not None else None
    return {**summary, "base": {"outcome": base.outcome, "tests": tally}}


def _candidate_rows(
    runs: list[Attempt], found: Verification, chosen: Candidate | None
) -> list[dict[str, Any]]:
    scores = {s.group.key: s for s in found.scores}
    place = {s.group.key: n for n, s in enumerate(select.ranked(found.scores), 1)}
    best = select.ranked(found.scores)[0] if found.scores else None
    votes = {g.key: g.votes for g in found.groups}
    rows = []
    for run in runs:
        row = run.candidate.row()
        key = run.candidate.patch_hash or ""
        score = scores.get(key)
        row.update(
            votes=votes.get(key, 0),
            valid=bool(key) and key not in found.invalid,
            invalid_reason=found.invalid.get(key),
            tests_passed=score.passed if score else None,
            tests_total=score.total if score else None,
            existing_tests=score.existing.row() if score and score.existing else None,
            repro_passed=score.repro_passed if score else None,
            repro_verdicts=dict(score.repro) if score else None,
            rank=place.get(key),
            standing=_standing(run.candidate, score, best, chosen),
            selected=run.candidate == chosen,
        )
        rows.append(row)
    return rows


def _standing(
    candidate: Candidate, score: Score | None, best: Score | None, chosen: Candidate | None
) -> str | None:
    if score is None or best is None:
        return None
    if score is best and chosen is not None and candidate != chosen:
        return f"the selected patch, emitted from attempt {chosen.attempt} (fewest tokens)"
    return select.standing(score, best)


def _test_rows(tests: list[ReproTest], found: Verification) -> list[dict[str, Any]]:
    rank = {t.key: n for n, t in enumerate(found.kept, 1)}
    sizes: dict[str, int] = {}
    for test in tests:
        if test.test_hash is not None and test.base_outcome == "reproduced":
            sizes[test.test_hash] = sizes.get(test.test_hash, 0) + 1
    rows = []
    for test in tests:
        row = test.row()
        key = test.test_hash or ""
        row.update(kept=key in rank, rank=rank.get(key), group_size=sizes.get(key))
        rows.append(row)
    return rows


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
    doc["cost_usd"] = selection.get("cost_usd")
    doc["wall_seconds"] = selection["wall_seconds"]
    doc["selection_file"] = str(outcome.path)
    doc["selection"] = selection
    return doc


def table(selection: dict[str, Any]) -> str:
    """The candidates as a plain-text table (for stderr)."""
    priced = any(row.get("cost_usd") is not None for row in selection["candidates"])
    cost = f"  {'cost':>9}" if priced else ""
    lines = [
        f"{'attempt':>7}  {'status':<20} {'tokens':>8}{cost}  {'patch':<12}  votes  tests passed"
    ]
    for row in selection["candidates"]:
        checks = "-"
        if row["tests_total"] is not None:
            checks = f"{row['tests_passed']}/{row['tests_total']}"
        existing = row["existing_tests"]
        if existing and existing["skipped"]:
            checks += " (existing tests skipped: early stop)"
        elif existing and existing["mode"] == "per_test":
            checks += f" (existing {existing['passed']}/{existing['total']})"
        if row["patch_hash"] and not row["valid"]:
            checks = "invalid"
        mark = "  <- selected" if row["selected"] else ""
        cost = f"  {usd(row.get('cost_usd')):>9}" if priced else ""
        lines.append(
            f"{row['attempt']:>7}  {row['status'][:20]:<20} {row['tokens']:>8}{cost}  "
            f"{row['patch_hash'] or '-':<12}  {row['votes'] or '-':>5}  {checks}{mark}"
        )
    return "\n".join(lines)
