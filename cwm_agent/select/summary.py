"""What a selection found, from its records: ``summary.json``, ``--json``, the report's
figures, and the progress display's running totals (``Tally``)."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from cwm_agent.verification.cascade import STAGES, Outcome
from cwm_agent.verification.records import Cost

FUNNEL = ("candidates", *STAGES, "chosen")


def warning_kind(text: str) -> str:
    """A warning without its particulars (counts, reasons): how warnings are tallied."""
    return re.sub(r"\d+", "N", text.split(" (", 1)[0])


def summarize(records: Iterable[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    records = list(records)
    funnel: Counter[str] = Counter()
    stage_cost = {stage: Cost() for stage in STAGES}
    ran: Counter[str] = Counter()
    decided: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    example: dict[str, str] = {}
    total = Cost()
    for record in records:
        for stage, count in record.get("funnel", {}).items():
            funnel[stage] += count
        for stage, data in record.get("stages", {}).items():
            if stage in stage_cost and data.get("cost"):
                stage_cost[stage] = stage_cost[stage] + Cost(**data["cost"])
                ran[stage] += bool(data.get("ran"))
        chosen = record.get("chosen")
        decided[chosen["decided_by"] if chosen else "nothing left"] += 1
        for text in record.get("warnings", []):
            warnings[warning_kind(text)] += 1
            example.setdefault(warning_kind(text), text)
        total = total + Cost(**record.get("cost", {}))
    candidates = funnel["candidates"]
    wall = max(total.wall_seconds, 1e-9)
    return {
        **info,
        "instances": len(records),
        "chosen": sum(bool(r.get("prediction")) for r in records),
        "retry": sorted(r["instance_id"] for r in records if r.get("retry")),
        "funnel": {stage: funnel[stage] for stage in FUNNEL if stage in funnel},
        "stages_ran": {stage: ran[stage] for stage in STAGES},
        "stage_cost": {stage: cost.row() for stage, cost in stage_cost.items()},
        "decided_by": dict(decided.most_common()),
        "warnings": [
            {"instances": count, "example": example[kind], "kind": kind}
            for kind, count in warnings.most_common()
        ],
        "cost": total.row(),
        "candidates_per_minute": round(candidates / wall * 60, 1) if candidates else 0.0,
    }


class Tally:
    """Running totals for the progress display; thread-safe."""

    def __init__(self, tasks: int, candidates: int, earlier: int) -> None:
        self.total = tasks + earlier
        self.todo_candidates = candidates
        self.done = earlier
        self.candidates = 0  # of this session
        self.funnel: Counter[str] = Counter()
        self.warned = 0
        self.retry = 0
        self.running: set[str] = set()
        self.started = time.monotonic()
        self.interrupted = False
        self._lock = threading.Lock()

    def start(self, instance_id: str) -> None:
        with self._lock:
            self.running.add(instance_id)

    def end(self, outcome: Outcome) -> None:
        with self._lock:
            self.running.discard(outcome.instance_id)
            self.done += 1
            self.candidates += outcome.record["funnel"]["candidates"]
            self.funnel.update(outcome.record["funnel"])
            self.warned += bool(outcome.warnings)
            self.retry += outcome.retry

    def counts(self) -> dict[str, Any]:
        with self._lock:
            elapsed = time.monotonic() - self.started
            rate = self.candidates / elapsed * 60 if elapsed > 0 and self.candidates else 0.0
            left = self.todo_candidates - self.candidates
            eta = left / rate * 60 if rate and left > 0 else None
            return {
                "done": self.done,
                "total": self.total,
                "running": sorted(self.running),
                "funnel": dict(self.funnel),
                "warned": self.warned,
                "retry": self.retry,
                "elapsed": elapsed,
                "per_minute": rate,
                "eta": eta,
            }
