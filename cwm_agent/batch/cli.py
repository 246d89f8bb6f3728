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
    warn_unpriced,
)

if TYPE_CHECKING:  # loaded when a batch runs, not for --help
    from cwm_agent.batch.instances import Instance
    from cwm_agent.batch.plan import BatchConfig
    from cwm_agent.settings import BatchLimits
    from cwm_agent.verification.sources import Source


BATCH_EXIT_HELP = (
    "Exit codes: 0 the batch completed (some instances may have failed: see summary.json; "
    "re-running retries them); 1 the batch's budget (--max-total-cost, --max-batch-tokens) "
    "was spent with instances not run; 2 usage error; 4 runtime failure: --evaluate without a "
    "Docker engine, or Ray cannot start (--executor ray); 130 interrupted (re-run the same "
    "command to resume)."
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
@settings_of("batch")
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

    Budgets: --max-cost and --max-total-tokens per instance (with --attempts, all its
    attempts together), --max-total-cost and --max-batch-tokens for the whole batch; cost
    needs a price (--price-input, --price-output, or the config file's [prices] table).

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
    config, limits = _config(opts)
    source, selected, records = _select(opts)
    config.check(selected, source.kind == "folder")
    if opts["grade"]:
        from cwm_agent.evaluate import require_swebench

        require_swebench()
        if source.kind == "folder":
            raise UsageError(
                "--evaluate grades SWE-bench records; issue files have no tests to grade with"
            )
    from cwm_agent.batch.session import run_session

    try:
        code = run_session(config, limits, source, selected, records, opts)
    except KeyboardInterrupt:  # before or after the workers ran: same contract, exit 130
        raise Interrupted("batch interrupted", hint="re-run the same command to resume") from None
    sys.exit(code)


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


def _config(opts: dict[str, Any]) -> tuple[BatchConfig, BatchLimits]:
    from cwm_agent.batch.plan import BatchConfig
    from cwm_agent.settings import build, record

    cfg = resolve_options(opts)
    config = BatchConfig(
        base=build(cfg, Path(".")),
        repo=opts["repo"].resolve() if opts["repo"] else None,
        repos_dir=opts["repos_dir"].resolve() if opts["repos_dir"] else None,
        image_from_flag=cfg.sources["image"].startswith("flag"),  # not env / file / default
        image_template=opts["image_template"],
        workdir_given=cfg.given("workdir"),
    )
    limits: BatchLimits = record("batch", cfg)
    per_instance = ("--max-cost", config.base.agent.max_cost)
    warn_unpriced(config.base.model, per_instance, ("--max-total-cost", limits.max_total_cost))
    return config, limits


def _check_executor(opts: dict[str, Any]) -> None:
    if opts["executor"] == "ray":
        from cwm_agent.verification.ray_support import require_ray

        require_ray()
    elif opts["ray_address"]:
        raise UsageError("--ray-address is for --executor ray", hint="add --executor ray")
