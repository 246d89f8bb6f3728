"""`cwm-agent batch`: solve a file of issues in parallel, resumable, SWE-bench compatible."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cwm_agent.errors import Interrupted, UsageError
from cwm_agent.options import (
    agent_options,
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
    from cwm_agent.batch.instances import Instance
    from cwm_agent.batch.plan import BatchConfig
    from cwm_agent.batch.ray_executor import RayRunner
    from cwm_agent.batch.runner import BatchRunner
    from cwm_agent.batch.store import OutputStore
    from cwm_agent.batch.summary import Tally

from cwm_agent.batch import RAY_INSTALL_HINT as INSTALL_HINT

BATCH_EXIT_HELP = (
    "Exit codes: 0 the batch completed (some instances may have failed: see summary.json; "
    "re-running retries them); 2 usage error; 130 interrupted (re-run the same command to "
    "resume)."
)


@click.command(epilog=BATCH_EXIT_HELP)
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
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
@click.option("--filter", "pattern", metavar="REGEX", help="Only instances whose id matches.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N (after --filter).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Instances at a time.",
)
@click.option(
    "--executor",
    type=click.Choice(["thread", "ray"]),
    default="thread",
    show_default=True,
    help="What runs the instances: --workers threads here, or Ray tasks, one per "
    f"instance (needs: {INSTALL_HINT}).",
)
@click.option(
    "--ray-address",
    metavar="ADDR",
    help="With --executor ray: join this Ray cluster (head:6379 from a node, or "
    "ray://head:10001) [default: start a local Ray instance with --workers CPUs].",
)
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

    INPUT is a JSONL file of SWE-bench-style records (instance_id, problem_statement,
    repo, base_commit; optional image; other fields ignored) or a folder of *.md / *.txt
    issue files (id = file name stem) solved against --repo. Re-running the same command
    resumes: finished instances are skipped, failed ones are tried again.

    --executor ray runs one Ray task per instance, on a local Ray instance or on the
    cluster at --ray-address; OUTDIR is written here either way. --attempts K solves
    each instance with K rollouts and test-based selection (as `run --attempts K`).

    \b
    Examples:
      cwm-agent batch swebench_lite.jsonl -o runs/lite --repos-dir ~/clones \\
          --workers 8 --base-url http://gpu:8000/v1 --model facebook/cwm
      cwm-agent batch swebench_verified.jsonl -o runs/verified --runtime docker \\
          --image-template 'swebench/sweb.eval.x86_64.{instance_id_1776}:latest' \\
          --filter '^django__' --limit 20 --model facebook/cwm
      cwm-agent batch issues/ --repo ./myrepo -o runs/issues --model facebook/cwm
      cwm-agent batch swebench_lite.jsonl -o runs/lite --repos-dir /shared/clones \\
          --executor ray --ray-address ray://head:10001 --workers 64 --model facebook/cwm
      cwm-agent batch issues/ --repo ./myrepo -o runs/best4 --attempts 4 --early-stop \\
          --test-cmd 'python -m pytest -q tests' --model facebook/cwm
    """
    from cwm_agent.batch import instances as inst

    install_signal_handlers()
    _check_executor(opts)
    config = _config(opts)
    from_folder = opts["input_path"].is_dir()
    if opts["image_template"]:
        inst.image_from_template(opts["image_template"], "owner__name-1")  # fail early
    if opts["repo"] is not None and not from_folder:
        raise UsageError("--repo is for a folder of issue files; JSONL records use --repos-dir")
    selected = inst.select(inst.load(opts["input_path"]), opts["pattern"], opts["limit"])
    if not selected:
        raise UsageError(f"no instance id matches --filter {opts['pattern']!r}")
    config.check(selected, from_folder)
    try:
        _run(config, selected, opts)
    except KeyboardInterrupt:  # before or after the workers ran: same contract, exit 130
        raise Interrupted("batch interrupted", hint="re-run the same command to resume") from None


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
        from cwm_agent.batch.ray_executor import require_ray

        require_ray()
    elif opts["ray_address"]:
        raise UsageError("--ray-address is for --executor ray", hint="add --executor ray")


def _runner(
    config: BatchConfig, store: OutputStore, tally: Tally, display: Any, opts: dict[str, Any]
) -> BatchRunner | RayRunner:
    if opts["executor"] == "ray":
        from cwm_agent.batch.ray_executor import RayRunner

        return RayRunner(config, store, tally, display, opts["ray_address"])
    from cwm_agent.batch.runner import BatchRunner

    return BatchRunner(config, store, tally, display)


def _run(config: BatchConfig, selected: list[Instance], opts: dict[str, Any]) -> None:
    from cwm_agent.batch.store import OutputStore
    from cwm_agent.batch.summary import Tally

    store = OutputStore(opts["outdir"].resolve())
    store.open()
    try:
        results = store.load_results()
        done = store.repair(results)
        todo = [i for i in selected if i.instance_id not in done]
        info = {
            "input": str(opts["input_path"].resolve()),
            "model": config.base.model.name,
            "runtime": config.runtime,
            "workers": opts["workers"],
            "executor": opts["executor"],
            "attempts": config.base.scaling.attempts,
        }
        tally = Tally(selected, results, info)
        with _display(tally, opts["quiet"]) as display:
            display.message(
                f"batch: {len(selected)} instance(s), {len(selected) - len(todo)} already "
                f"finished, {len(todo)} to run on {opts['workers']} worker(s) -> {store.outdir}"
            )
            try:
                _runner(config, store, tally, display, opts).run(todo, opts["workers"])
            except Interrupted:
                store.write_summary(tally.summary(interrupted=True))
                raise
        summary = tally.summary()
        store.write_summary(summary)
        if not opts["quiet"] or summary["failed"]:
            click.echo(f"{summary['note']} ({store.summary_path})", err=True)
    finally:
        store.close()


def _display(tally: Tally, quiet: bool) -> LiveDisplay | PlainDisplay:
    from cwm_agent.batch.display import LiveDisplay, PlainDisplay

    if quiet:
        return PlainDisplay(tally, quiet=True)
    return LiveDisplay(tally) if sys.stderr.isatty() else PlainDisplay(tally)
