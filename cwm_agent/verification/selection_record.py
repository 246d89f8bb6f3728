"""One instance's selection record: every candidate, every group, every stage, the choice.

The record is one line of ``selection.jsonl``:

- ``candidates``: ``n`` (1-based, input order), ``origin`` (file, line, model, attempt,
  path), ``patch_sha256`` (of the exact bytes), ``tokens``, ``static`` (each check's status
  and reason), ``stripped`` (its test infrastructure, left out of verification), ``group``,
  ``pruned_at`` and ``reason`` (the stage that dropped it and why), ``chosen``;
- ``groups``: ``key``, ``votes``, ``members``, ``representative``, ``size``, ``stripped``,
  ``reward`` (score, where it came from), ``execute`` (the verdict), ``rank``,
  ``pruned_at``, ``reason``;
- ``stages.execute`` also: the impacted ``tests`` run, how many pass on the base
  (``base_passing``), the reproduction ``scripts`` (key, votes, source, ``counted``: it
  reproduces the issue on the base), the ``test_command``, the ``reset``, every run;
- ``stages``: for each of static, group, reward, execute: ``ran``, ``why`` (not run),
  ``in`` / ``out`` (candidates for static, groups after), ``cost``, ``error`` (the
  traceback of an unexpected error that stopped it);
- ``chosen`` (candidate, group, ``decided_by``, ``reason``; ``emitted`` when the prediction
  is its code change alone, ``--emit code-only``), or ``nothing_chosen`` (why: every
  candidate pruned, every prediction empty), ``order``, ``warnings``,
  ``cost`` (the instance's total), ``retry``, ``prediction`` (the SWE-bench line).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cwm_agent.verification import choice, grouping
from cwm_agent.verification.records import (
    AS_WRITTEN,
    CODE_ONLY,
    Candidate,
    Cost,
    ExecReport,
    Group,
    ReproScript,
)
from cwm_agent.verification.static import StaticResult

if TYPE_CHECKING:
    from cwm_agent.verification.reward import Score

FORMAT_VERSION = 1
DEFAULT_MODEL_NAME = "cwm-agent-select"  # a winner whose input named no model


class InstanceLog:
    """What the cascade found for one instance, as it goes."""

    def __init__(
        self,
        instance_id: str,
        candidates: Sequence[Candidate],
        base: str,
        prefer: str = "size",
        emit: str = AS_WRITTEN,
    ) -> None:
        self.instance_id = instance_id
        self.prefer = prefer  # the choice's tie-break after votes (``choice.order``)
        self.emit = emit  # AS_WRITTEN or CODE_ONLY
        self.base = base  # where the base code came from, or why there is none
        self.rows = {n: _candidate_row(n, c) for n, c in enumerate(candidates, 1)}
        self.group_rows: dict[str, dict[str, Any]] = {}
        self.stages: dict[str, dict[str, Any]] = {}
        self.costs: dict[str, Cost] = {}
        self.warnings: list[str] = []
        self.model_failure = False
        self._not_checked: Counter[str] = Counter()
        self._not_checked_reason: dict[str, str] = {}
        self._pruned: Counter[str] = Counter()

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    # -- stages -----------------------------------------------------------------------
    def stage(
        self,
        name: str,
        n_in: int,
        n_out: int,
        cost: Cost,
        why: str = "",
        passed: bool = False,
        error: str = "",
    ) -> None:
        """``passed``: the stage is in the plan but had nothing to do here (one group left):
        its groups pass through, and the funnel counts them. ``error``: the traceback of
        an unexpected error that stopped it."""
        record: dict[str, Any] = {"ran": not why, "in": n_in, "out": n_out, "cost": cost.row()}
        if why:
            record["why"] = why
        if error:
            record["error"] = error
        if passed:
            record["passed_through"] = True
        if name == "static":
            record.update(pruned=dict(self._pruned), not_checked=dict(self._not_checked))
            record["base"] = self.base
        self.stages[name] = {**self.stages.get(name, {}), **record}
        self.costs[name] = cost

    def static(self, n: int, result: StaticResult) -> None:
        row = self.rows[n]
        row["static"] = result.row()
        if result.split is not None:
            row["stripped"] = list(result.split.stripped)
        failure = result.failure
        if failure is not None:
            self._pruned[failure.name] += 1
            row.update(pruned_at="static", reason=f"{failure.name}: {failure.reason}")
        for check in result.not_checked:
            self._not_checked[check.name] += 1
            self._not_checked_reason.setdefault(check.name, check.reason)

    def warn_not_checked(self) -> None:
        total = len(self.rows)
        for name, count in self._not_checked.items():
            reason = self._not_checked_reason[name]
            self.warn(f"static: the {name} check could not run for {count} of {total} "
                      f"candidate(s) ({reason}); they were not pruned by it")  # fmt: skip

    def groups(self, entries: Sequence[grouping.Entry], groups: Sequence[Group]) -> None:
        number = {id(e.candidate): e.number for e in entries}
        for group in groups:
            members = [number[id(c)] for c in group.members]
            for n in members:
                self.rows[n]["group"] = group.key
            self.group_rows[group.key] = {
                "key": group.key,
                "votes": group.votes,
                "members": members,
                "representative": members[0],
                "size": grouping.change_size(group.verify_patch),
                "stripped": list(group.stripped),
                "reward": None,
                "execute": None,
                "rank": None,
                "pruned_at": None,
                "reason": "",
            }

    def scores(self, results: Sequence[Score]) -> None:
        for score in results:
            self.group_rows[score.group]["reward"] = score.row()
            self.model_failure = self.model_failure or score.model_error
        self.stages["reward"] = {
            "scored": sum(s.score is not None for s in results),
            "cached": sum(s.cached for s in results),
            "sources": dict(Counter(s.source for s in results)),
        }

    def execution(self, report: ExecReport, scripts: Sequence[ReproScript] = ()) -> None:
        for key, verdict in report.verdicts.items():
            if key in self.group_rows:
                self.group_rows[key]["execute"] = verdict.row()
        counted = set(report.scripts_counted)
        self.stages["execute"] = {
            "tests": list(report.tests),
            "base_passing": len(report.base_passing),
            "scripts": [
                {"key": s.key, "votes": s.votes, "source": s.source, "counted": s.key in counted}
                for s in scripts
            ],
            "test_command": report.test_command,
            "reset": report.reset,
            "runtimes": report.runtimes,
            "early_stopped": report.early_stopped,
            "runs": report.runs,
        }

    def prune_group(self, key: str, stage: str, reason: str) -> None:
        row = self.group_rows[key]
        row.update(pruned_at=stage, reason=reason)
        for n in row["members"]:
            self.rows[n].update(pruned_at=stage, reason=f"its group: {reason}")

    # -- the end ----------------------------------------------------------------------
    def finish(
        self, ranked: Sequence[choice.Ranked], decision: choice.Decision, wall: float
    ) -> tuple[dict[str, Any], dict[str, Any] | None, Cost]:
        """(the record, the prediction or None, the instance's total cost)."""
        for place, item in enumerate(ranked, 1):
            self.group_rows[item.group.key]["rank"] = place
        total = sum(self.costs.values(), Cost())
        total.wall_seconds = wall
        chosen, prediction = self._chosen(decision)
        record = {
            "format_version": FORMAT_VERSION,
            "instance_id": self.instance_id,
            "chosen": chosen,
            **({} if chosen is not None else {"nothing_chosen": decision.reason}),
            "order": choice.order(self.prefer),
            "warnings": list(self.warnings),
            "funnel": self.funnel(chosen is not None),
            "stages": self.stages,
            "candidates": list(self.rows.values()),
            "groups": list(self.group_rows.values()),
            "cost": total.row(),
            "retry": self.model_failure,
            "prediction": prediction,
        }
        return record, prediction, total

    def funnel(self, chosen: bool) -> dict[str, int]:
        """Candidates, then what is left after each stage that ran, then the choice."""
        found = {"candidates": len(self.rows)}
        for name in ("static", "group", "reward", "execute"):
            stage = self.stages.get(name, {})
            if stage.get("ran") or stage.get("passed_through"):
                found[name] = self.stages[name]["out"]
        found["chosen"] = int(chosen)
        return found

    def _chosen(self, decision: choice.Decision) -> tuple[dict[str, Any] | None, Any]:
        if decision.winner is None:
            return None, None
        group = decision.winner.group
        row = self.group_rows[group.key]
        n = row["representative"]
        self.rows[n]["chosen"] = True
        winner = group.representative
        chosen = {
            "candidate": n,
            "group": group.key,
            "patch_sha256": winner.sha256,
            "origin": winner.origin.row(),
            "decided_by": decision.decided_by,
            "reason": decision.reason,
        }
        patch = self._emitted(group, chosen)
        prediction = {
            "instance_id": self.instance_id,
            "model_name_or_path": winner.origin.model or DEFAULT_MODEL_NAME,
            # Valid Unicode for the harness: a non-UTF-8 byte shows as U+FFFD, as in batch.
            "model_patch": patch.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
        }
        return chosen, prediction

    def _emitted(self, group: Group, chosen: dict[str, Any]) -> str:
        """The patch the prediction holds. The representative touches test infrastructure
        only when every member does: what the checks left out (a conftest.py forcing
        "passed", say) would be in the prediction and steer a grader's test run."""
        if not group.stripped:
            return group.representative.patch
        what = ", ".join(group.stripped)
        if self.emit == CODE_ONLY and group.verify_patch.strip():
            chosen["emitted"] = f"the code change only, without its test infrastructure ({what})"
            return group.verify_patch
        self.warn(
            f"the emitted patch carries test infrastructure its verification left out ({what}): "
            "every candidate of the chosen group changes it; review it, or emit the code "
            "change alone (select --emit code-only)"
        )
        return group.representative.patch


def _candidate_row(n: int, candidate: Candidate) -> dict[str, Any]:
    return {
        "n": n,
        "origin": candidate.origin.row(),
        "patch_sha256": candidate.sha256,
        "tokens": candidate.tokens,
        "static": None,
        "stripped": [],
        "group": None,
        "pruned_at": None,
        "reason": "",
        "chosen": False,
    }
