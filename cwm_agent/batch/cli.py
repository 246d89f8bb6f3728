"""`cwm-agent batch`: solve a file of issues in parallel, resumable, SWE-bench compatible."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cwm_agent.errors import Interrupted, UsageError
from cwm_agent.options import (
    agent_options,
    executor_options,
    install_signal_handlers,
    model_options,
    resolve_options,
    scaling_options,
    setting_option,
    settings_of,
    stack,
)

if TYPE_CHECKING:  # loaded when a batch runs, not for --help
    from cwm_agent.batch.display import LiveDisplay, PlainDisplay
    from cwm_agent.batch.grading import BatchGrading
    from cwm_agent.batch.instances import Instance
    from cwm_agent.batch.plan import BatchConfig
    from cwm_agent.batch.ray_executor import RayRunner
    from cwm_agent.batch.runner import BatchRunner
    from cwm_agent.batch.store import OutputStore
    from cwm_agent.batch.summary import Tally
    from cwm_agent.verification.sources import Source


BATCH_EXIT_HELP = (
    "Exit codes: 0 the batch completed (some instances may have failed: see summary.json; "
    "re-running retries them); 2 usage error; 130 interrupted (re-run the same command to "
    "resume)."
)


@click.command(epilog=BATCH_EXIT_HELP)
@click.argument("input_spec", metavar="INPUT")
@click.option(
    "-o",
    "--output-dir",
    "outdir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where preds.jsonl, summary.json and one folder per instance go.",
)
@click.option(
    "--repos-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Clones for JSONL records: DIR/<owner>__<name>, DIR/<owner>/<name> or DIR/<name>.",
)
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The repository a folder of issue files is solved against.",
)
@click.option(
    "--split",
    help="The split of a dataset INPUT (verified, lite, full or a hub id).  [default: test]",
)
@click.option("--filter", "pattern", metavar="REGEX", help="Only instances whose id matches.")
@click.option("--shuffle", is_flag=True, help="Shuffle the instances (after --filter).")
@click.option("--seed", type=int, help="The --shuffle seed.  [default: 0]")
@click.option(
    "--slice",
    "slice_spec",
    metavar="A:B",
    help="Only these positions, as in Python (after --filter and --shuffle): 0:50, -20:.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N (after the rest).")
@click.option(
    "--redo-existing",
    is_flag=True,
    help="Run finished instances again too; their predictions are replaced.",
)
@click.option(
    "--evaluate",
    "grade",
    is_flag=True,
    help="Grade each prediction as its instance finishes, as `cwm-agent evaluate` does "
    "(records with their eval scripts; needs cwm-agent[swebench]); OUTDIR/evaluation/.",
)
@click.option(
    "--eval-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=1800.0,
    show_default=True,
    help="With --evaluate: seconds for one instance's eval script.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Instances at a time.",
)
@executor_options("instances")
@stack(
    setting_option("runtime"),
    setting_option(
        "image", help="One Docker image for every instance; the repository is copied in."
    ),
    click.option(
        "--image-template",
        help="Docker image per instance, the repository inside at --workdir; "
        "placeholders {instance_id} and {instance_id_1776}.",
    ),
    setting_option(
        "workdir",
        help="Repository path in the container; /testbed when each instance has its own "
        "image (--image-template or the record's image).",
    ),
    settings_of("runtime", skip=("runtime", "image", "workdir")),
)
@model_options
@agent_options
@scaling_options(1, with_workers=False)
@click.option("-q", "--quiet", is_flag=True, help="No progress display; errors only.")
def batch(**opts: Any) -> None:
    """Solve every issue of INPUT; write SWE-bench predictions and one folder per instance.

    Model, runtime and limit settings resolve as for `run`: flag, env CWM_AGENT_<NAME>,
    config file (--config, --profile), default.

    INPUT holds SWE-bench-style records (instance_id, problem_statement, repo,
    base_commit; optional image; other fields ignored): a JSONL, JSON or parquet file, or
    a dataset by name (verified, lite, full, or a hub id such as
    princeton-nlp/SWE-bench_Verified; with --split; needs cwm-agent[datasets]; read from
    the local cache when the hub cannot be reached). Or a folder of *.md / *.txt issue
    files (id = file name stem) solved against --repo.

    Re-running the same command resumes: finished instances are skipped (--redo-existing
    runs them again), failed ones are tried again. OUTDIR/manifest.json records the input,
    model and settings that made it; a batch that differs is refused.

    --executor ray runs one Ray task per instance, on a local Ray instance or on the
    cluster at --ray-address; OUTDIR is written here either way. --attempts K solves
    each instance with K rollouts and selects one with the verification cascade (as `run
    --attempts K`; a SWE-bench record's own test command by default).

    \b
    Examples:
      cwm-agent batch swebench_lite.jsonl -o runs/lite --repos-dir ~/clones \\
          --workers 8 --base-url http://gpu:8000/v1 --model facebook/cwm
      cwm-agent batch verified -o runs/verified --runtime docker \\
          --filter '^django__' --shuffle --seed 1 --slice 0:20 --model facebook/cwm
      cwm-agent batch swebench_lite.parquet -o runs/lite --runtime docker \\
          --image-template 'swebench/sweb.eval.x86_64.{instance_id_1776}:latest' \\
          --model facebook/cwm
      cwm-agent batch issues/ --repo ./myrepo -o runs/issues --model facebook/cwm
      cwm-agent batch swebench_lite.jsonl -o runs/lite --repos-dir /shared/clones \\
          --executor ray --ray-address ray://head:10001 --workers 64 --model facebook/cwm
      cwm-agent batch issues/ --repo ./myrepo -o runs/best4 --attempts 4 \\
          --test-cmd 'python -m pytest -q {tests}' --model facebook/cwm
    """
    install_signal_handlers()
    _check_executor(opts)
    config = _config(opts)
    source, selected, records = _select(opts)
    config.check(selected, source.kind == "folder")
    if opts["grade"]:
        from cwm_agent.evaluate import require_swebench

        require_swebench()
        if source.kind == "folder":
            raise UsageError(
                "--evaluate grades SWE-bench records; issue files have no tests to grade with"
            )
    try:
        _run(config, source, selected, records, opts)
    except KeyboardInterrupt:  # before or after the workers ran: same contract, exit 130
        raise Interrupted("batch interrupted", hint="re-run the same command to resume") from None


def _select(opts: dict[str, Any]) -> tuple[Source, list[Instance], list[dict[str, Any]]]:
    """INPUT located and read, then the selection flags applied; and the records, whole
    (for --evaluate only: the agents get Instances)."""
    from cwm_agent.batch import instances as inst
    from cwm_agent.verification.sources import locate, read_records
    from cwm_agent.verification.store import image_from_template

    if opts["seed"] is not None and not opts["shuffle"]:
        raise UsageError("--seed is for --shuffle", hint="add --shuffle, or leave --seed out")
    if opts["image_template"]:
        image_from_template(opts["image_template"], "owner__name-1")  # fail early
    source = locate(opts["input_spec"], opts["split"] or "test")
    if opts["split"] is not None and source.kind != "dataset":
        raise UsageError("--split is for a dataset INPUT", hint="a file holds one split")
    if opts["repo"] is not None and source.kind != "folder":
        raise UsageError("--repo is for a folder of issue files; records use --repos-dir")
    selection = inst.Selection(
        opts["pattern"], opts["shuffle"], opts["seed"] or 0, opts["slice_spec"], opts["limit"]
    )
    placed = [] if source.kind == "folder" else read_records(source)
    loaded = inst.load(source) if source.kind == "folder" else inst.from_records(placed)
    selected = inst.select(loaded, selection)
    if not selected:
        raise UsageError(
            f"none of the {len(loaded)} instance(s) of INPUT matches the selection "
            f"({inst.describe(selection)})",
            hint="loosen --filter / --slice / --limit",
        )
    return source, selected, [record for _, record in placed]


def _config(opts: dict[str, Any]) -> BatchConfig:
    from cwm_agent.batch.plan import BatchConfig
    from cwm_agent.settings import build

    cfg = resolve_options(opts)
    return BatchConfig(
        base=build(cfg, Path(".")),
        repo=opts["repo"].resolve() if opts["repo"] else None,
        repos_dir=opts["repos_dir"].resolve() if opts["repos_dir"] else None,
        image_from_flag=cfg.sources["image"].startswith("flag"),  # not env / file / default
        image_template=opts["image_template"],
        workdir_given=cfg.given("workdir"),
    )


def _check_executor(opts: dict[str, Any]) -> None:
    if opts["executor"] == "ray":
        from cwm_agent.verification.ray_support import require_ray

        require_ray()
    elif opts["ray_address"]:
        raise UsageError("--ray-address is for --executor ray", hint="add --executor ray")


def _runner(
    config: BatchConfig,
    store: OutputStore,
    tally: Tally,
    display: Any,
    opts: dict[str, Any],
    grading: BatchGrading | None,
) -> BatchRunner | RayRunner:
    on_end = grading.submit if grading is not None else None
    if opts["executor"] == "ray":
        from cwm_agent.batch.ray_executor import RayRunner

        return RayRunner(config, store, tally, display, opts["ray_address"], on_end)
    from cwm_agent.batch.runner import BatchRunner

    return BatchRunner(config, store, tally, display, on_end)


def _run(
    config: BatchConfig,
    source: Source,
    selected: list[Instance],
    records: list[dict[str, Any]],
    opts: dict[str, Any],
) -> None:
    from cwm_agent.batch.store import OutputStore
    from cwm_agent.batch.summary import Tally

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
        report = None
        with _display(tally, opts["quiet"]) as display:
            display.message(
                f"batch: {len(selected)} instance(s), {len(selected) - len(todo)} already "
                f"finished, {len(todo)} to run on {opts['workers']} worker(s) -> {store.outdir}"
            )
            grading = _grading(records, store.outdir, selected, results, opts, display)
            try:
                _runner(config, store, tally, display, opts, grading).run(todo, opts["workers"])
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

            click.echo(f"{table(report)}\nevaluation: {grading_report(store.outdir)}", err=True)
        if not opts["quiet"] or summary["failed"]:
            click.echo(f"{summary['note']} ({store.summary_path})", err=True)
    finally:
        store.close()


def _resume(
    store: OutputStore, config: BatchConfig, source: Source, selected: list[Instance], redo: bool
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """OUTDIR checked against this batch and repaired: (results, finished ids)."""
    from cwm_agent.batch import manifest

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
    from cwm_agent.batch.display import LiveDisplay, PlainDisplay

    if quiet:
        return PlainDisplay(tally, quiet=True)
    return LiveDisplay(tally) if sys.stderr.isatty() else PlainDisplay(tally)
