"""`cwm-agent best-of`: `run` with test-time scaling on by default (K = 4)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from cwm_agent.options import (
    agent_options,
    check_output,
    check_runs_home,
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
    "Exit codes: 0 patch produced; 1 no attempt produced a valid patch (or a budget was "
    "spent first); 2 usage error; 3 model/API failure (every attempt); 4 runtime failure; "
    "6 --apply could not apply the patch to REPO (the patch is still printed); "
    "130 interrupted."
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
    reproduced", "Issue resolved" or "Other issues") and submits it. The patches then go
    through the verification cascade of `cwm-agent select`: static checks, one group per
    distinct change (its votes), a verifier's score with --verifier-model, and execution in
    one warm runtime: the existing tests the changes impact (--test-cmd overrides them) that
    pass on the unpatched code must still pass, and the --repro-tests largest groups of
    scripts that print "Issue reproduced" there must print "Issue resolved"; best first,
    with early stop and budgets. A candidate's own changes to tests (a conftest.py...) take
    no part in its verification. The most checks passed wins, then the most votes, then
    the fewest tokens; a check that cannot run is said loudly, with what decided instead.
    The trajectories and selection.json (every candidate, check, run, the reason and the
    cost) go to --traj-dir. --max-cost and --max-total-tokens bound all the rollouts
    together.

    \b
    Examples:
      cwm-agent best-of ./myrepo --issue-file ISSUE.md --attempts 8 \\
          --base-url http://gpu:8000/v1 --model facebook/cwm | git apply
      cwm-agent best-of . --issue "parse() drops the last field" --model m \\
          --test-cmd 'python -m pytest -q {tests}' --max-test-runs 20 --json
      cwm-agent best-of . --issue-file ISSUE.md --runtime docker --image python:3.11 \\
          --model facebook/cwm
    """
    from cwm_agent.scaling.cli import run_scaled
    from cwm_agent.settings import build

    cfg = resolve_options(opts, attempts=DEFAULT_ATTEMPTS)
    settings = build(cfg, Path(opts["repo"]).resolve())
    issue = read_issue(opts["issue"], opts["issue_file"])
    check_output(opts["output"])
    check_runs_home(opts["traj_dir"])  # without --traj-dir, the runs folder holds them
    install_signal_handlers()
    warn_unpriced(settings.model, ("--max-cost", settings.agent.max_cost))
    sys.exit(run_scaled(settings, issue, opts, verbosity(opts), "best-of"))
