"""`cwm-agent evaluate PREDS --dataset D`: grade predictions as SWE-bench's harness does.

Nothing here imports swebench (or datasets): `cwm-agent --help` and the other commands
never pay for them; grading imports swebench when it starts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from cwm_agent.console import say
from cwm_agent.errors import Interrupted, UsageError
from cwm_agent.evaluate import require_swebench
from cwm_agent.options import executor_options, install_signal_handlers

EVALUATE_EXIT_HELP = (
    "Exit codes: 0 every prediction was graded (see report.json: resolved, unresolved and "
    "error ids); 2 usage error; 4 no Docker engine (or Ray cannot start); 130 interrupted "
    "(re-run the same command: verdicts already made are kept)."
)


@click.command(epilog=EVALUATE_EXIT_HELP)
@click.argument(
    "preds_path", metavar="PREDS", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "-d",
    "--dataset",
    required=True,
    metavar="D",
    help="The records PREDS answers: verified, lite, full, a hub id, or a JSONL / JSON / "
    "parquet file of records.",
)
@click.option("--split", help="The split of a dataset D given by name.  [default: test]")
@click.option(
    "-o",
    "--output-dir",
    "outdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where report.json and one log folder per instance go.  [default: "
    "PREDS's folder/evaluation]",
)
@click.option(
    "--image-template",
    help="The image each prediction is graded in; placeholders {instance_id} and "
    "{instance_id_1776}  [default: the record's image, else SWE-bench's naming].",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Predictions graded at a time.",
)
@executor_options("predictions")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=1800.0,
    show_default=True,
    help="Seconds for one instance's eval script (the harness's default).",
)
@click.option(
    "--candidates",
    is_flag=True,
    help="Grade every line of PREDS (many per instance), one warm container per instance; "
    "identical patches once. An instance is resolved when any candidate is.",
)
@click.option(
    "--first-resolved",
    is_flag=True,
    help="With --candidates: stop an instance at its first resolved candidate (pass@K).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No line per instance; the table and errors.")
def evaluate(**opts: Any) -> None:
    """Grade PREDS (SWE-bench predictions) against dataset D, the official harness's way.

    Each prediction gets a fresh container of its record's image, without network: the
    patch is applied with the harness's fallbacks, the record's eval script runs, and
    swebench's log parser grades it. Needs cwm-agent[swebench] (and cwm-agent[datasets]
    for D given by name) and the images on the Docker engine (never pulled).

    OUTDIR/report.json has the harness's report keys (resolved_ids, unresolved_ids,
    error_ids, ...) plus each instance's test results; OUTDIR/<id>/ has the harness's
    logs (patch.diff, eval.sh, test_output.txt, run_instance.log, report.json). A verdict
    made from the same patch, record and image is reused by the next run.

    With --candidates every line of PREDS is graded (many per instance; the last one per
    instance otherwise), identical patches once, in one container per instance that is put
    back and checked after each candidate (a fresh one when that fails); report.json lists
    every line under `candidates`. --first-resolved stops an instance at its first
    resolved candidate.

    \b
    Examples:
      cwm-agent evaluate runs/verified/preds.jsonl --dataset verified --workers 8
      cwm-agent evaluate preds.jsonl -d swebench_lite.parquet -o eval/lite --json
      cwm-agent evaluate preds.jsonl -d lite --split dev \\
          --image-template 'swebench/sweb.eval.x86_64.{instance_id_1776}:latest'
      cwm-agent evaluate preds.jsonl -d verified --executor ray --ray-address ray://head:10001
      cwm-agent evaluate candidates.jsonl -d lite --candidates --first-resolved
    """
    install_signal_handlers()
    require_swebench()
    from cwm_agent.evaluate import tasks as tasks_mod

    _check_executor(opts)
    if opts["first_resolved"] and not opts["candidates"]:
        raise UsageError("--first-resolved is for --candidates", hint="add --candidates")
    records = load_records(opts["dataset"], opts["split"])
    if opts["candidates"]:
        lines = tasks_mod.read_lines(opts["preds_path"])
        predictions = [pred for _, pred in lines]
        numbers = [n for n, _ in lines]
        tasks = tasks_mod.match(predictions, records, opts["image_template"], numbers)
    else:
        predictions = tasks_mod.last_predictions(opts["preds_path"])
        tasks = tasks_mod.match(predictions, records, opts["image_template"])
    outdir = (opts["outdir"] or opts["preds_path"].resolve().parent / "evaluation").resolve()
    tell = (lambda text: None) if opts["quiet"] else say
    try:
        report = _grade(tasks, records, outdir, opts, tell)
    except KeyboardInterrupt:
        raise Interrupted(
            "evaluation interrupted", hint="re-run the same command: verdicts made are kept"
        ) from None
    from cwm_agent.evaluate.report import table

    say(table(report))  # instance ids from the user's files: made visible there
    say(f"report: {outdir / 'report.json'}")
    if opts["as_json"]:
        click.echo(json.dumps(report, indent=2))


def load_records(dataset: str, split: str | None) -> list[dict[str, Any]]:
    from cwm_agent.verification.sources import locate, read_records

    source = locate(dataset, split or "test")
    if split is not None and source.kind != "dataset":
        raise UsageError("--split is for a dataset given by name", hint="a file holds one split")
    if source.kind == "folder":
        raise UsageError(
            f"--dataset {dataset} is a folder", hint="give a dataset name or a file of records"
        )
    return [record for _, record in read_records(source)]


def _check_executor(opts: dict[str, Any]) -> None:
    if opts["executor"] == "ray":
        from cwm_agent.verification.ray_support import require_ray

        require_ray()
    elif opts["ray_address"]:
        raise UsageError("--ray-address is for --executor ray", hint="add --executor ray")


def _grade(
    tasks: list[Any], records: list[dict[str, Any]], outdir: Path, opts: dict[str, Any], say: Any
) -> dict[str, Any]:
    from cwm_agent.evaluate.runner import EvalSettings
    from cwm_agent.trajectory import new_run_id

    settings = EvalSettings(outdir, f"eval-{new_run_id()}", opts["workers"], opts["timeout"])
    started = time.monotonic()
    say(f"evaluate: {len(tasks)} prediction(s) on {opts['workers']} worker(s) -> {outdir}")
    if opts["candidates"]:
        from cwm_agent.evaluate.candidates import by_instance

        evaluator: Any = _candidate_evaluator(tasks, settings, opts, say)
        with evaluator:
            for instance_tasks in by_instance(tasks):
                evaluator.submit(instance_tasks)
            evaluator.wait()
    else:
        evaluator = _evaluator(tasks, settings, opts, say)
        with evaluator:
            for task in tasks:
                evaluator.submit(task)
            evaluator.wait()
    if evaluator.reused:
        say(f"{evaluator.reused} verdict(s) reused from {outdir}")
    evaluation = {
        "predictions": str(opts["preds_path"].resolve()),
        "dataset": opts["dataset"],
        "split": opts["split"] or "test",
        "workers": opts["workers"],
        "executor": opts["executor"],
        "timeout": opts["timeout"],
        "candidates": opts["candidates"],
        "first_resolved": opts["first_resolved"],
        "run_id": settings.run_id,  # the label of its containers (`cwm-agent cleanup`)
        "wall_seconds": round(time.monotonic() - started, 3),
    }
    dataset_ids = [str(r.get("instance_id")) for r in records]
    graded = tasks if opts["candidates"] else [t.instance_id for t in tasks]
    report: dict[str, Any] = evaluator.report(dataset_ids, graded, evaluation)
    return report


def _evaluator(tasks: list[Any], settings: Any, opts: dict[str, Any], say: Any) -> Any:
    if opts["executor"] == "ray":
        from cwm_agent.evaluate.ray_grading import RayEvaluator

        return RayEvaluator(settings, say, opts["ray_address"])
    from cwm_agent.evaluate.runner import Evaluator
    from cwm_agent.runtimes.docker_engine import connect

    # Empty patches are graded without a container: then no engine is needed.
    client = connect() if any(task.patch for task in tasks) else None
    return Evaluator(settings, client, say)


def _candidate_evaluator(tasks: list[Any], settings: Any, opts: dict[str, Any], say: Any) -> Any:
    first = opts["first_resolved"]
    if opts["executor"] == "ray":
        from cwm_agent.evaluate.ray_grading import RayCandidateEvaluator

        return RayCandidateEvaluator(settings, say, opts["ray_address"], first)
    from cwm_agent.evaluate.candidates import CandidateEvaluator
    from cwm_agent.runtimes.docker_engine import connect

    client = connect() if any(task.patch for task in tasks) else None
    return CandidateEvaluator(settings, client, say, first)
