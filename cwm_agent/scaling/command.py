"""`cwm-agent best-of`: `run` with test-time scaling on by default (K = 4)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from cwm_agent.batch.options import limit_options, model_options
from cwm_agent.scaling.cli import _scale_options, stack

EXIT_CODES_HELP = (
    "Exit codes: 0 patch produced; 1 no attempt produced a valid patch; 2 usage error; "
    "3 model/API failure (every attempt); 4 runtime failure; 130 interrupted."
)


@click.command("best-of", epilog=EXIT_CODES_HELP)
@click.argument("repo", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--issue", help="The issue text.")
@click.option("--issue-file", help="File holding the issue; - reads stdin.")
@model_options
@limit_options
@stack(_scale_options(4))
@click.option(
    "--traj-dir",
    type=click.Path(file_okay=False),
    help="Folder for the trajectories and selection.json [default: the runs folder/RUN_ID].",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the patch here.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (with the table).")
@click.option("--apply", "apply_patch", is_flag=True, help="Apply the selected patch to REPO.")
@click.option("-v", "--verbose", count=True, help="More progress on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
def best_of(**opts: Any) -> None:
    """Sample several patches for an issue in REPO and print the one that tests select.

    K rollouts run in parallel, each in its own copy of REPO. In K more short rollouts the
    model writes a reproduction script (printing "Issue reproduced", "Issue resolved" or
    "Other issues"); those that reproduce the issue on the unpatched code are kept. Every
    distinct patch runs against the existing tests (--test-cmd) and the kept scripts; the
    patch that passes the most wins, ties going to the patch most attempts produced, then
    to the fewest tokens. The trajectories and selection.json (every candidate, every test
    run, the reason) go to --traj-dir.

    \b
    Examples:
      cwm-agent best-of ./myrepo --issue-file ISSUE.md --attempts 8 \\
          --base-url http://gpu:8000/v1 --model facebook/cwm | git apply
      cwm-agent best-of . --issue "parse() drops the last field" --model m \\
          --test-cmd 'python -m pytest tests/test_parse.py -q' --early-stop --json
    """
    from cwm_agent.batch.options import resolve_settings
    from cwm_agent.cli import _install_sigterm, _read_issue
    from cwm_agent.run import RunSettings
    from cwm_agent.scaling.cli import run_scaled
    from cwm_agent.settings import agent_config, model_settings

    cfg = resolve_settings(opts)  # flag > env CWM_AGENT_* > config file > default, as in `run`
    issue = _read_issue(opts["issue"], opts["issue_file"])
    settings = RunSettings(
        repo=Path(opts["repo"]).resolve(),
        model=model_settings(cfg, opts),
        agent=agent_config(cfg, opts),
        trace_prediction=opts["trace_prediction"],
    )
    _install_sigterm()
    sys.exit(run_scaled(settings, issue, opts, 0 if opts["quiet"] else 1 + opts["verbose"]))
