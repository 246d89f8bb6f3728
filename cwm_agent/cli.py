"""The command line: thin click commands; the work lives in run.py and friends."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import click

from cwm_agent import __version__
from cwm_agent.console import guard_streams, say, stdout_lost
from cwm_agent.errors import CwmError, Interrupted
from cwm_agent.options import (
    agent_options,
    check_output,
    check_record_path,
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

EXIT_CODES_HELP = (
    "Exit codes: 0 patch produced; 1 no patch (gave up, or hit a limit or a budget); 2 usage "
    "error (REPO "
    "not a git repository included); 3 model/API failure; 4 runtime failure; 5 our final "
    "validation rejected the patch (a bug: please report it); 6 --apply could not apply the "
    "patch to REPO (the patch is still printed); 130 interrupted."
)
VALIDATE_EXIT_CODES = (
    "Exit codes: 0 the patch is valid; 1 it does not parse or does not apply (as with "
    "git apply --check); 2 usage error (REPO not a git repository, BASE unknown)."
)


# Subcommands that live in their own modules, imported only when invoked (fast --help).
LAZY_COMMANDS: dict[str, str] = {
    "trace": "cwm_agent.traces.cli:trace",
    "cleanup": "cwm_agent.runtimes.cleanup_cli:cleanup",
    "config": "cwm_agent.config_cli:config_group",
    "doctor": "cwm_agent.doctor:doctor",
    "show": "cwm_agent.show.cli:show",
    "batch": "cwm_agent.batch.cli:batch",
    "best-of": "cwm_agent.scaling.command:best_of",
    "evaluate": "cwm_agent.evaluate.cli:evaluate",
    "select": "cwm_agent.select.cli:select",
    "prompts": "cwm_agent.prompts_cli:prompts_group",
}


class CwmGroup(click.Group):
    """Maps our exception family to exit codes in one place; loads subcommands lazily."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            module_name, attr = LAZY_COMMANDS[name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CwmError as exc:
            say(f"Error: {exc}")  # may quote a server: say makes it visible
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:  # before the agent's own handling took over (e.g. set-up)
            say("Error: interrupted")
            sys.exit(Interrupted.exit_code)


@click.group(cls=CwmGroup, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="cwm-agent")
def main() -> None:
    """A coding agent for Meta FAIR's Code World Model (CWM) tool protocol.

    It gives a model a repository and an issue, runs the model's bash / edit / create /
    submit actions in a private copy (or a container), and prints one validated unified
    diff on stdout, ready for `git apply`.
    """
    guard_streams()  # a reader that goes away (`2>&1 | head`) must not end the run


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("repo", default=".", type=click.Path(exists=True, file_okay=False))
@issue_options
@model_options
@agent_options
@runtime_options
@scaling_options(1)
@click.option("--traj", type=click.Path(dir_okay=False), help="Trajectory JSON path.")
@output_options()
def run(**opts: Any) -> None:
    """Solve an issue in REPO and print the validated patch on stdout.

    Model, runtime and limit settings come from the flag, else env CWM_AGENT_<NAME>
    (OPENAI_BASE_URL for the base URL), else the config file and its --profile, else the
    default; `cwm-agent config show` prints what a run would use. The key is read only
    from env OPENAI_API_KEY. Progress goes to stderr: a live status line on a terminal
    (tokens, and the cost when the model has a price), and one closing line: outcome,
    steps, tokens, cost, time, where the trajectory is.

    Budgets: --max-cost USD (needs --price-input and --price-output, or the config
    file's [prices."MODEL"] table) and --max-total-tokens N end the run as a step limit
    does once spent.

    \b
    Examples:
      cwm-agent run ./myrepo --issue-file ISSUE.md \\
          --base-url http://gpu:8000/v1 --model facebook/cwm | git apply
      gh issue view 42 | cwm-agent run . --model gpt-4.1 --tool-format openai
      cwm-agent run . --profile vllm-cwm --issue "fix the failing test" --json
      cwm-agent run . --issue-file ISSUE.md -v --traj run.json && cwm-agent show run.json
      cwm-agent run . --issue-file ISSUE.md --model gpt-4.1 --tool-format openai \\
          --price-input 2 --price-output 8 --max-cost 0.50
    """
    from cwm_agent import run as run_mod
    from cwm_agent import run_summary
    from cwm_agent.progress import make_progress
    from cwm_agent.settings import build

    traj = Path(opts["traj"]).resolve() if opts["traj"] else None
    settings = build(resolve_options(opts), Path(opts["repo"]).resolve(), traj)
    issue = read_issue(opts["issue"], opts["issue_file"])
    check_output(opts["output"])
    check_record_path("--traj", opts["traj"])
    check_runs_home(opts["traj"])
    level = verbosity(opts)
    install_signal_handlers()
    warn_unpriced(settings.model, ("--max-cost", settings.agent.max_cost))
    if settings.scaling.enabled:
        from cwm_agent.scaling.cli import run_scaled

        sys.exit(run_scaled(settings, issue, opts, level))
    try:
        with make_progress(level) as progress:
            result, trajectory = run_mod.execute(settings, issue, progress)
    except CwmError:  # the error follows; the line says how far the run got
        if level:
            _say_run_line(run_mod.trajectory_path(settings))
        raise
    applied = None
    try:
        applied = run_mod.deliver(
            result.patch,
            lambda: run_mod.result_document(result, trajectory),
            as_json=opts["as_json"],
            output=opts["output"],
            apply_to=settings.repo if opts["apply_patch"] else None,
        )
    finally:
        if level:
            if applied is not None:
                say(applied.line())
            say(run_summary.run_line(trajectory.data, trajectory.path))
    if result.patch is not None and stdout_lost():
        say(f"warning: stdout was closed; the patch is in {trajectory.path}")
    sys.exit(result.exit_code)


def _say_run_line(path: Path) -> None:
    """The summary line of a run that ended with an error, from its trajectory on disk."""
    from cwm_agent import run_summary
    from cwm_agent.trajectory import load

    try:
        data = load(path)
    except (OSError, ValueError):
        return  # it ended before its first save: the error says all there is
    if isinstance(data, dict):
        say(run_summary.run_line(data, path))


@main.command(epilog=VALIDATE_EXIT_CODES)
@click.argument("patch", type=click.File("r"))
@click.option(
    "--repo",
    default=".",
    type=click.Path(exists=True, file_okay=False),
    show_default=True,
    help="Repository whose HEAD the patch must apply to.",
)
@click.option("--base", default="HEAD", show_default=True, help="Commit to check against.")
def validate(patch: Any, repo: str, base: str) -> None:
    """Check that PATCH is a well-formed unified diff that applies to REPO at BASE.

    \b
    Examples:
      cwm-agent validate fix.patch --repo ./myrepo
      git diff | cwm-agent validate - --repo .
    """
    from cwm_agent.errors import PatchError, PatchRejected, UsageError
    from cwm_agent.patches import BaseRepoError, validate_patch
    from cwm_agent.run import toplevel, warn_outside_links

    text = patch.read()
    try:
        validate_patch(text, os.path.abspath(repo), base)
    except BaseRepoError as exc:  # REPO or BASE, not the patch
        raise UsageError(exc.message, exc.hint) from None
    except PatchError as exc:
        raise PatchRejected(exc.message, exc.hint) from None
    warn_outside_links(text, toplevel(Path(repo).resolve()))
    say("valid patch")


@main.command()
@click.argument("traj", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False),
    help="Repository to replay on (default: the one recorded in TRAJ).",
)
def replay(traj: str, repo: str | None) -> None:
    """Re-run TRAJ's recorded actions in a fresh copy, without a model.

    Prints the resulting patch on stdout and says on stderr whether it matches the
    recorded one (exit 0) or differs (exit 1).

    \b
    Examples:
      cwm-agent replay ~/.local/state/cwm-agent/runs/20261123-101500-ab12cd.json
      cwm-agent replay run.json --repo ./myrepo | git apply
    """
    from cwm_agent.replay import replay as replay_trajectory
    from cwm_agent.run import emit_patch

    result = replay_trajectory(traj, repo)
    if result.patch:
        emit_patch(result.patch, None)
    verdict = "the same patch as recorded" if result.same else "a DIFFERENT patch than recorded"
    say(f"replayed {result.actions} actions: {verdict}")
    sys.exit(0 if result.same else 1)
