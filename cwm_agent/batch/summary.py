"""The batch's running totals: what summary.json says and what the progress display shows."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from cwm_agent.batch.instances import Instance
from cwm_agent.costs import Meter, sum_usd

TOKEN_KEYS = ("prompt_tokens", "completion_tokens", "cached_tokens", "total_tokens")


def is_finished(doc: dict[str, Any]) -> bool:
    """The attempt ended the agent's way (patch or not); failures have no prediction."""
    return bool(doc.get("prediction"))


def selection_warnings(doc: dict[str, Any] | None) -> list[str]:
    """An ``--attempts`` instance's loud selection warnings (a check that could not run,
    and what decided instead), from its result document."""
    selection = (doc or {}).get("selection") or {}
    return [str(text) for text in selection.get("warnings") or []]


class Tally:
    """Outcomes of the selected instances, earlier sessions' included. Thread-safe."""

    def __init__(
        self, selected: list[Instance], results: dict[str, dict[str, Any]], info: dict[str, Any]
    ) -> None:
        ids = {i.instance_id for i in selected}
        self.total = len(selected)
        self.info = info  # input, model, workers: what the summary repeats for the reader
        self.results = {k: v for k, v in results.items() if k in ids}
        self.running: dict[str, dict[str, Any]] = {}  # id -> {"started": t, "step": n}
        self.meters: dict[str, Meter] = {}  # id -> what the running instance spent so far
        self.budget: dict[str, Any] = {}  # the batch's budgets, and why it stopped at one
        self.ended_this_session = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()

    # -- events -----------------------------------------------------------------------
    def start(self, instance: Instance) -> None:
        with self._lock:
            self.results.pop(instance.instance_id, None)  # a retry: the old failure is void
            self.running[instance.instance_id] = {"started": time.monotonic(), "step": 0}

    def watch(self, instance: Instance, meter: Meter) -> None:
        """The running instance's spend, for the display (thread executor only)."""
        with self._lock:
            self.meters[instance.instance_id] = meter

    def step(self, instance: Instance, step: int) -> None:
        with self._lock:
            if instance.instance_id in self.running:
                self.running[instance.instance_id]["step"] = step

    def end(self, instance: Instance, doc: dict[str, Any] | None) -> None:
        """``doc`` None: the attempt was interrupted and left no outcome."""
        with self._lock:
            self.running.pop(instance.instance_id, None)
            self.meters.pop(instance.instance_id, None)
            if doc is not None:
                self.results[instance.instance_id] = doc
                self.ended_this_session += 1

    # -- views ------------------------------------------------------------------------
    def counts(self) -> dict[str, Any]:
        with self._lock:
            docs = list(self.results.values())
            running = {k: dict(v) for k, v in self.running.items()}
            meters = dict(self.meters)
            ended = self.ended_this_session
        for iid, meter in meters.items():  # what running instances spent so far
            if iid in running:
                running[iid].update(tokens=meter.usage.total_tokens, cost_usd=meter.cost_usd)
        live = [r for r in running.values() if "tokens" in r]
        finished = sum(is_finished(d) for d in docs)
        failed = len(docs) - finished
        elapsed = time.monotonic() - self.started
        left = self.total - len(docs)
        # Throughput of this session (parallelism included) times what is left.
        eta = elapsed / ended * left if ended and left else None
        return {
            "total": self.total,
            "finished": finished,
            "failed": failed,
            "pending": left,
            "running": running,
            "tokens": _tokens(docs)["total_tokens"] + sum(r["tokens"] for r in live),
            "cost_usd": sum_usd([d.get("cost_usd") for d in docs] + [r["cost_usd"] for r in live]),
            "elapsed": elapsed,
            "eta": eta,
        }

    interrupted = False

    def mark_interrupted(self) -> None:
        self.interrupted = True

    def summary(self, *, interrupted: bool | None = None) -> dict[str, Any]:
        """``interrupted``: default, whether the batch was (``mark_interrupted``): an
        instance that ends while the batch winds down must not write it back to false."""
        interrupted = self.interrupted if interrupted is None else interrupted
        with self._lock:
            docs = dict(self.results)
        finished = [i for i, d in docs.items() if is_finished(d)]
        failed = {i: f"{d.get('status')}: {first_line(d.get('reason'))}" for i, d in docs.items()}
        failed = {i: r for i, r in failed.items() if i not in finished}
        pending = self.total - len(docs)
        warned = {i: len(selection_warnings(d)) for i, d in docs.items()}
        warned = {i: n for i, n in sorted(warned.items()) if n}
        return {
            **self.info,
            "instances": self.total,
            "finished": len(finished),
            "failed": len(failed),
            "pending": pending,
            "completed": pending == 0 and not interrupted,
            "interrupted": interrupted,
            "patches": sum(bool(d.get("patch")) for d in docs.values()),
            "by_status": dict(Counter(str(d.get("status")) for d in docs.values())),
            "by_exit_code": dict(Counter(str(d.get("exit_code")) for d in docs.values())),
            "tokens": _tokens(list(docs.values())),
            "cost_usd": sum_usd([d.get("cost_usd") for d in docs.values()]),
            "budget": dict(self.budget) or None,
            "wall_seconds": round(time.monotonic() - self.started, 3),
            "instance_seconds": round(sum(d.get("attempt_seconds") or 0 for d in docs.values()), 3),
            "failed_instances": failed,
            # --attempts: instances whose selection could not run a check (selection.json)
            "selection_warnings": {"total": sum(warned.values()), "by_instance": warned},
            "note": _note(len(failed), pending, interrupted, self.budget.get("stopped"))
            + _warned_note(warned),
            "updated_at": time.time(),
        }


def _tokens(docs: list[dict[str, Any]]) -> dict[str, int]:
    totals = dict.fromkeys(TOKEN_KEYS, 0)
    for doc in docs:
        usage = doc.get("usage") or {}
        for key in TOKEN_KEYS:
            totals[key] += int(usage.get(key) or 0)
    return totals


def first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0] if lines else ""


def _warned_note(warned: dict[str, int]) -> str:
    if not warned:
        return ""
    return (
        f"; the selection of {len(warned)} instance(s) warned {sum(warned.values())} time(s): "
        "a check could not run (summary.json's selection_warnings, their selection.json)"
    )


def _note(failed: int, pending: int, interrupted: bool, spent: str | None = None) -> str:
    parts = []
    if interrupted:
        parts.append(f"interrupted with {pending} instance(s) not done")
    elif pending and spent:
        parts.append(f"stopped with {pending} instance(s) not run: {spent}")
    elif pending:
        parts.append(f"{pending} instance(s) not done yet")
    if failed:
        parts.append(f"{failed} instance(s) failed (model or runtime errors, see failed_instances)")
    if not parts:
        return "all instances finished"
    again = "run the rest" if pending else "retry them"
    if pending and spent and not interrupted:
        again = "run the rest once the budget is raised"
    return "; ".join(parts) + f"; re-run the same command to {again}"
