"""One batch session, once `cwm-agent batch`'s options are read (``cli.py``): OUTDIR opened
and checked against what made it, the instances run by an executor within the batch's
budget, the summary written and said.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cwm_agent.batch import manifest
from cwm_agent.batch.display import LiveDisplay, PlainDisplay
from cwm_agent.batch.instances import Instance
from cwm_agent.batch.plan import BatchConfig
from cwm_agent.batch.runner import BatchRunner
from cwm_agent.batch.store import OutputStore
from cwm_agent.batch.summary import Tally
from cwm_agent.console import say
from cwm_agent.costs import Meter, usage_of
from cwm_agent.errors import Interrupted
from cwm_agent.settings import BatchLimits
from cwm_agent.types import Usage
from cwm_agent.verification.sources import Source

if TYPE_CHECKING:  # loaded only with --evaluate / --executor ray
    from cwm_agent.batch.grading import BatchGrading
    from cwm_agent.batch.ray_executor import RayRunner


def _runner(
    config: BatchConfig,
    store: OutputStore,
    tally: Tally,
    display: Any,
    opts: dict[str, Any],
    grading: BatchGrading | None,
    meter: Meter,
) -> BatchRunner | RayRunner:
    on_end = grading.submit if grading is not None else None
    if opts["executor"] == "ray":
        from cwm_agent.batch.ray_executor import RayRunner

        return RayRunner(config, store, tally, display, opts["ray_address"], on_end, meter)
    return BatchRunner(config, store, tally, display, on_end, meter)


def _batch_meter(config: BatchConfig, limits: BatchLimits, tally: Tally) -> Meter:
    """The batch's meter: its budgets, starting from what the results already in OUTDIR
    spent (a resume continues the same total)."""
    spent = sum((usage_of(doc.get("usage")) for doc in tally.results.values()), Usage())
    tally.budget = {
        "max_total_cost": limits.max_total_cost,
        "max_batch_tokens": limits.max_batch_tokens,
        "stopped": None,
    }
    return Meter(config.base.model.prices, limits.budget, spent=spent)


def run_session(
    config: BatchConfig,
    limits: BatchLimits,
    source: Source,
    selected: list[Instance],
    records: list[dict[str, Any]],
    opts: dict[str, Any],
) -> int:
    """The batch on OUTDIR; its exit code (0, or 1 when its budget left instances not run).
    Raises Interrupted (or KeyboardInterrupt) after recording an interrupted summary."""
    store = OutputStore(opts["outdir"].resolve())
    store.open()
    try:
        results, done = _resume(store, config, source, selected, opts["redo_existing"])
        todo = [i for i in selected if i.instance_id not in done]
        info = {
            "input": source.describe(),
            "model": config.base.model.name,
            "runtime": config.runtime,
            "workers": opts["workers"],
            "executor": opts["executor"],
            "attempts": config.base.scaling.attempts,
        }
        tally = Tally(selected, results, info)
        meter = _batch_meter(config, limits, tally)
        report = None
        with _display(tally, opts["quiet"]) as display:
            display.message(
                f"batch: {len(selected)} instance(s), {len(selected) - len(todo)} already "
                f"finished, {len(todo)} to run on {opts['workers']} worker(s) -> {store.outdir}"
            )
            grading = _grading(records, store.outdir, selected, results, opts, display)
            try:
                runner = _runner(config, store, tally, display, opts, grading, meter)
                runner.run(todo, opts["workers"])
                if runner.budget_spent is not None:
                    tally.budget["stopped"] = runner.budget_spent.reason
                report = grading.finish() if grading is not None else None
            except (Interrupted, KeyboardInterrupt):
                if grading is not None:
                    grading.stop()
                tally.mark_interrupted()
                store.write_summary(tally.summary())
                raise
        summary = tally.summary()
        store.write_summary(summary)
        if report is not None:
            from cwm_agent.evaluate.report import table

            say(f"{table(report)}\nevaluation: {grading_report(store.outdir)}")
        warned = summary["selection_warnings"]["total"]  # said even with -q
        if not opts["quiet"] or summary["failed"] or tally.budget.get("stopped") or warned:
            say(f"{summary['note']} ({store.summary_path})")
    finally:
        store.close()
    return 1 if tally.budget.get("stopped") and summary["pending"] else 0


def _resume(
    store: OutputStore, config: BatchConfig, source: Source, selected: list[Instance], redo: bool
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """OUTDIR checked against this batch and repaired: (results, finished ids)."""
    results = store.load_results()
    manifest.check(store.outdir, manifest.made_by(config, source), results)
    done = store.repair(results)
    if redo:
        store.forget([i for i in selected if i.instance_id in done])
        results = store.load_results()
        done = store.repair(results)
    return results, done


def _grading(
    records: list[dict[str, Any]],
    outdir: Path,
    selected: list[Instance],
    results: dict[str, dict[str, Any]],
    opts: dict[str, Any],
    display: Any,
) -> BatchGrading | None:
    """--evaluate: the grader, already given the instances an earlier session finished."""
    if not opts["grade"]:
        return None
    from cwm_agent.batch.grading import BatchGrading

    settings = {
        "workers": opts["workers"],
        "timeout": opts["eval_timeout"],
        "image_template": opts["image_template"],
    }
    grading = BatchGrading(records, outdir, settings, display.message)
    grading.check(selected)
    for instance in selected:
        grading.submit(instance, results.get(instance.instance_id))
    return grading


def grading_report(outdir: Path) -> Path:
    from cwm_agent.batch.grading import EVALUATION_DIR

    return outdir / EVALUATION_DIR / "report.json"


def _display(tally: Tally, quiet: bool) -> LiveDisplay | PlainDisplay:
    if quiet:
        return PlainDisplay(tally, quiet=True)
    return LiveDisplay(tally) if sys.stderr.isatty() else PlainDisplay(tally)
