"""`cwm-agent select INPUT... -o OUT`: one patch per instance out of many candidates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cwm_agent.errors import UsageError
from cwm_agent.options import (
    executor_options,
    install_signal_handlers,
    model_options,
    setting_option,
    stack,
)
from cwm_agent.verification.records import AS_WRITTEN, EMITS

SELECT_EXIT_HELP = (
    "Exit codes: 0 every instance has a choice or a reason (see selection.jsonl); 1 some "
    "instances failed and have no record (re-run to retry them); 2 usage error; 3 the "
    "verifier model failed after retries for some instances (their choice fell to weaker "
    "signals; re-run to retry them; before 1 when both happen); 4 Ray cannot start; 130 "
    "interrupted (re-run the same command to resume)."
)


@click.command(epilog=SELECT_EXIT_HELP)
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option(
    "-o",
    "--output-dir",
    "outdir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where preds.jsonl, selection.jsonl, report.html and summary.json go.",
)
@stack(
    click.option(
        "--dataset",
        metavar="D",
        help="SWE-bench records of the instances: lite, "
        "verified, full, a hub id, or a JSONL / JSON / parquet file.",
    ),  # fmt: skip
    click.option("--split", help="The split of a dataset by name.  [default: test]"),
    click.option(
        "--repo",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="One local repository: the candidates are checked against its HEAD.",
    ),  # fmt: skip
    click.option("--issue-file", help="With --repo: the issue the candidates fix (- for stdin)."),
    click.option(
        "--instance-id",
        help="With --repo: the instance's id.  [default: the one "
        "the candidates name, else the issue file's name]",
    ),  # fmt: skip
    click.option(
        "--repos-dir",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help="Clones of the records' repositories (DIR/<owner>__<name>, "
        "DIR/<owner>/<name> or DIR/<name>): base code for the static checks "
        "and the execution stage.",
    ),  # fmt: skip
    setting_option(
        "runtime",
        help="The execution stage's runtime: a local copy of the "
        "clone, or docker with each record's image.",
    ),  # fmt: skip
    click.option(
        "--image-template",
        help="With --runtime docker: the image per instance; "
        "placeholders {instance_id} and {instance_id_1776}.  [default: the "
        "record's image, else SWE-bench's naming]",
    ),  # fmt: skip
)
@stack(
    setting_option("test_cmd"),
    setting_option("test_timeout"),
    click.option(
        "--tests",
        "tests",
        metavar="FILE",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False),
        help="Reproduction scripts for the execution stage (printing 'Issue reproduced', "
        "'Issue resolved' or 'Other issues'): a .py file for every instance, or a .jsonl "
        'file of {"instance_id": ..., "code": ...} lines. Repeatable.',
    ),  # fmt: skip
    setting_option("max_test_runs"),
    setting_option("max_seconds"),
    setting_option("early_stop"),
)
@stack(
    click.option(
        "--stages",
        metavar="LIST",
        help="Stages to run, of static,group,reward,"
        "execute.  [default: every stage whose inputs are there]",
    ),  # fmt: skip
    click.option(
        "--keep",
        type=click.IntRange(min=1),
        default=5,
        show_default=True,
        help="Groups the reward stage passes on to execution.",
    ),  # fmt: skip
    click.option(
        "--emit",
        type=click.Choice(EMITS),
        default=AS_WRITTEN,
        show_default=True,
        help="The prediction: the chosen patch as written, or its code change alone "
        "(code-only: without the test infrastructure its checks left out; as-written warns "
        "when the chosen patch has any).",
    ),  # fmt: skip
    setting_option(
        "verifier_model", metavar="NAME", help="The reward stage's model.  [default: --model]"
    ),  # fmt: skip
    setting_option("verifier_base_url", metavar="URL"),
    click.option(
        "--verifier-workers",
        type=click.IntRange(min=1),
        default=4,
        show_default=True,
        help="Verifier requests at a time.",
    ),  # fmt: skip
    click.option(
        "--verifier-max-tokens",
        type=click.IntRange(min=1),
        default=16,
        show_default=True,
        help="Tokens of a verifier reply; raise it for models that reason before answering.",
    ),  # fmt: skip
    click.option(
        "--verifier-cache",
        metavar="DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="Scores kept on disk.  [default: ~/.cache/cwm-agent/verifier]",
    ),  # fmt: skip
    setting_option(
        "prompts", help="Prompt set: its folder's verifier.j2, if any, is the verifier's prompt."
    ),  # fmt: skip
)
@model_options
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Instances at a time.")  # fmt: skip
@executor_options("instances")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress; warnings and errors only.")
def select(**opts: Any) -> None:
    """Choose one patch per instance from the candidates in INPUT...; write OUT.

    INPUT: SWE-bench predictions files (JSONL or JSON, any number of lines per instance),
    `cwm-agent batch` output folders (every attempt of --attempts runs), or a folder of
    *.patch files for one repository (with --repo and --issue-file). The instances come
    from --dataset (SWE-bench records) or --repo.

    The cascade, cheapest stage first, each pruning with a recorded reason: static (the
    patch parses, applies to the base as SWE-bench's harness applies it, is not empty,
    compiles, and changes code other than tests; test infrastructure never takes part in
    verification), group (the same code change is one group: its votes), reward (a
    verifier model's P(YES) from the answer's logprobs; --keep N groups go on), execute
    (in one warm runtime per instance, best first: the impacted existing tests that pass
    on the base, then the reproduction scripts of --tests and of batch folders' rollouts
    that reproduce the issue there; early stop and budgets). The choice: tests passed,
    then reward score, then votes, then the smaller change. A stage that cannot run is
    warned about loudly, with the signal that decided instead.

    OUT gets preds.jsonl (one winner per instance, for the SWE-bench harness),
    selection.jsonl (every candidate, stage, score and the reason of each choice),
    report.html and summary.json. Re-running resumes: finished instances are skipped.

    \b
    Examples:
      cwm-agent select runs/a/preds.jsonl runs/b/preds.jsonl other.json -o sel \\
          --dataset lite --repos-dir ~/clones
      cwm-agent select runs/best8 -o sel --dataset swebench_lite.jsonl --repos-dir ~/clones \\
          --verifier-model facebook/cwm --verifier-base-url http://gpu:8000/v1 --keep 3
      cwm-agent select patches/ -o sel --repo ./myrepo --issue-file ISSUE.md --json \\
          --tests check_issue.py --test-cmd 'python -m pytest -q {tests}'
      cwm-agent select preds.jsonl -o sel --dataset verified --runtime docker \\
          --max-test-runs 20 --tests repro.jsonl
      cwm-agent select preds.jsonl -o sel --dataset lite --stages static,group \\
          --executor ray --workers 16
    """
    from cwm_agent.select import command

    install_signal_handlers()
    if opts["executor"] == "ray":
        from cwm_agent.verification.ray_support import require_ray

        require_ray()
    elif opts["ray_address"]:
        raise UsageError("--ray-address is for --executor ray", hint="add --executor ray")
    command.run(opts)
