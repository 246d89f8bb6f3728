"""`cwm-agent best-of`: `run` with test-time scaling on by default (K = 4)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from cwm_agent.options import (
    agent_options,
    check_output,
    install_signal_handlers,
    issue_options,
    model_options,
    output_options,
    read_issue,
    resolve_options,
    runtime_options,
    scaling_options,
    verbosity,
    warn_unpriced,
)

DEFAULT_ATTEMPTS = 4
EXIT_CODES_HELP = (
    "Exit codes: 0 patch produced; 1 no attempt produced a valid patch; 2 usage error; "
    "3 model/API failure (every attempt); 4 runtime failure; 130 interrupted."
)


@click.command("best-of", epilog=EXIT_CODES_HELP)
@click.argument("repo", default=".", type=click.Path(exists=True, file_okay=False))
@issue_options
@model_options
@agent_options
@runtime_options
@scaling_options(DEFAULT_ATTEMPTS)
@click.option(
    "--traj-dir",
    type=click.Path(file_okay=False),
    help="Folder for the trajectories and selection.json [default: the runs folder/RUN_ID].",
)
@output_options("Apply the selected patch to REPO.")
def best_of(**opts: Any) -> None:
    """Sample several patches for an issue in REPO and print the one that tests select.

    K rollouts run in parallel, each in its own copy of REPO (or container, with --runtime
    docker). In K more rollouts the model writes a reproduction script (printing "Issue
    reproduced", "Issue resolved" or "Other issues") and submits it; scripts that reproduce
    the issue on the unpatched code are grouped by their normalized text and the
    --repro-tests largest groups are kept. Every distinct patch runs the kept scripts and
    the existing tests (--test-cmd), counted per test: of the tests that pass on the
    unpatched code, those that still pass. The patch that passes the most tests wins, ties
    going to the patch most attempts produced, then to the fewest tokens. The trajectories
    and selection.json (every candidate, every count, every test run, the reason, the cost)
    go to --traj-dir. --max-cost and --max-total-tokens bound all the rollouts together.

    \b
    Examples:
      cwm-agent best-of ./myrepo --issue-file ISSUE.md --attempts 8 \\
          --base-url http://gpu:8000/v1 --model facebook/cwm | git apply
      cwm-agent best-of . --issue "parse() drops the last field" --model m \\
          --test-cmd 'python -m pytest tests/test_parse.py -q' --early-stop --json
      cwm-agent best-of . --issue-file ISSUE.md --runtime docker --image python:3.11 \\
          --model facebook/cwm
    """
    from cwm_agent.scaling.cli import run_scaled
    from cwm_agent.settings import build

    cfg = resolve_options(opts, attempts=DEFAULT_ATTEMPTS)
    settings = build(cfg, Path(opts["repo"]).resolve())
    issue = read_issue(opts["issue"], opts["issue_file"])
    check_output(opts["output"])
    install_signal_handlers()
    warn_unpriced(settings.model, ("--max-cost", settings.agent.max_cost))
    sys.exit(run_scaled(settings, issue, opts, verbosity(opts), "best-of"))
