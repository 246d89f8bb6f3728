"""The evaluation report, in the official harness's shape, and its table on stderr.

The keys are those of the harness's run report (``schema_version`` 2: resolved /
unresolved / error / empty-patch ids and their counts, ``failure_reasons`` from swebench's
own log classifier); ``instances`` adds each instance's verdict and test results (the
harness's per-instance ``report.json``), ``evaluation`` what graded them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cwm_agent.evaluate.grade import EMPTY, ERROR, RESOLVED, UNRESOLVED, Outcome, swebench

_VERDICTS = {RESOLVED: "RESOLVED", UNRESOLVED: "unresolved", ERROR: "ERROR", EMPTY: "empty patch"}


def run_report(
    dataset_ids: list[str],
    submitted: list[str],
    outcomes: dict[str, Outcome],
    folders: dict[str, Path],
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    """``dataset_ids``: every instance of the dataset; ``submitted``: the predictions' ids."""
    infra_failure = swebench("harness.infra_failure")
    by_status: dict[str, set[str]] = {s: set() for s in (RESOLVED, UNRESOLVED, ERROR, EMPTY)}
    for iid, outcome in outcomes.items():
        by_status[outcome.status].add(iid)
    reasons: dict[str, str] = {}
    infra: set[str] = set()
    ambiguous: set[str] = set()
    for iid in sorted(by_status[UNRESOLVED] | by_status[ERROR]):
        folder = folders[iid]
        found = infra_failure.classify_logs(folder / "test_output.txt", folder / "run_instance.log")
        if found:  # swebench's own classifier, on the logs the harness would have
            reasons[iid] = found[0]
            (infra if found[1] == infra_failure.TIER_ENVIRONMENT else ambiguous).add(iid)
    completed = by_status[RESOLVED] | by_status[UNRESOLVED]
    incomplete = set(dataset_ids) - set(submitted)
    return {
        "total_instances": len(dataset_ids),
        "submitted_instances": len(submitted),
        "completed_instances": len(completed),
        "resolved_instances": len(by_status[RESOLVED]),
        "unresolved_instances": len(by_status[UNRESOLVED]),
        "infra_failure_instances": len(infra),
        "ambiguous_failure_instances": len(ambiguous),
        "empty_patch_instances": len(by_status[EMPTY]),
        "error_instances": len(by_status[ERROR]),
        "completed_ids": sorted(completed),
        "incomplete_ids": sorted(incomplete),
        "empty_patch_ids": sorted(by_status[EMPTY]),
        "submitted_ids": sorted(submitted),
        "resolved_ids": sorted(by_status[RESOLVED]),
        "unresolved_ids": sorted(by_status[UNRESOLVED]),
        "infra_failure_ids": sorted(infra),
        "ambiguous_failure_ids": sorted(ambiguous),
        "failure_reasons": reasons,
        "error_ids": sorted(by_status[ERROR]),
        "schema_version": 2,
        "instances": {iid: _instance(outcomes[iid], folders[iid]) for iid in sorted(outcomes)},
        "evaluation": evaluation,
    }


def _instance(outcome: Outcome, folder: Path) -> dict[str, Any]:
    entry = (outcome.report or {}).get(outcome.instance_id, {})
    return {
        "status": outcome.status,
        "resolved": outcome.status == RESOLVED,
        "seconds": outcome.seconds,
        "error": outcome.error,
        "patch_successfully_applied": entry.get("patch_successfully_applied", False),
        "tests_status": entry.get("tests_status"),
        "log_dir": str(folder),
    }


def verdict_line(outcome: Outcome) -> str:
    """One line per graded instance, as it ends."""
    tests = _counts(outcome)
    extra = f": {outcome.error.splitlines()[0]}" if outcome.error else ""
    verdict = _VERDICTS[outcome.status]
    return f"{outcome.instance_id}: {verdict}{tests} ({outcome.seconds:.1f} s){extra}"


def table(report: dict[str, Any]) -> str:
    """The per-instance table and the totals, for stderr."""
    rows = [("instance", "verdict", "FAIL_TO_PASS", "PASS_TO_PASS", "seconds")]
    for iid, entry in report["instances"].items():
        status = entry["tests_status"] or {}
        rows.append(
            (
                iid,
                _VERDICTS[entry["status"]],
                _ratio(status.get("FAIL_TO_PASS")),
                _ratio(status.get("PASS_TO_PASS")),
                f"{entry['seconds']:.1f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    submitted = report["submitted_instances"]
    share = 100 * report["resolved_instances"] / submitted if submitted else 0.0
    lines.append(
        f"resolved {report['resolved_instances']} of {submitted} submitted ({share:.1f}%); "
        f"unresolved {report['unresolved_instances']}, errors {report['error_instances']}, "
        f"empty patches {report['empty_patch_instances']}"
    )
    return "\n".join(lines)


def _counts(outcome: Outcome) -> str:
    entry = (outcome.report or {}).get(outcome.instance_id, {})
    status = entry.get("tests_status") or {}
    if not status:
        return ""
    f2p, p2p = _ratio(status.get("FAIL_TO_PASS")), _ratio(status.get("PASS_TO_PASS"))
    return f" (FAIL_TO_PASS {f2p}, PASS_TO_PASS {p2p})"


def _ratio(part: dict[str, list[str]] | None) -> str:
    if not part:
        return "-"
    passed, failed = len(part.get("success", [])), len(part.get("failure", []))
    return f"{passed}/{passed + failed}"
