"""The command line: thin click commands; the work lives in run.py and friends."""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from cwm_agent import __version__
from cwm_agent.config import config_options, resolve_from_context, setting_option
from cwm_agent.errors import CwmError, Interrupted, UsageError
from cwm_agent.scaling.cli import scale_options

EXIT_CODES_HELP = (
    "Exit codes: 0 patch produced; 1 no patch (gave up or hit a limit); 2 usage error; "
    "3 model/API failure; 4 runtime failure; 5 patch failed validation (a bug); 130 interrupted."
)


# Subcommands that live in their own modules, imported only when invoked (fast --help).
LAZY_COMMANDS: dict[str, str] = {
    "trace": "cwm_agent.traces.cli:trace",
    "cleanup": "cwm_agent.runtimes.cleanup_cli:cleanup",
    "config": "cwm_agent.config:config_group",
    "doctor": "cwm_agent.doctor:doctor",
    "show": "cwm_agent.show.cli:show",
    "batch": "cwm_agent.batch.cli:batch",
    "best-of": "cwm_agent.scaling.command:best_of",
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
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:  # before the agent's own handling took over (e.g. set-up)
            click.echo("Error: interrupted", err=True)
            sys.exit(Interrupted.exit_code)


@click.group(cls=CwmGroup, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="cwm-agent")
def main() -> None:
    """A coding agent for Meta FAIR's Code World Model (CWM) tool protocol.

    It gives a model a repository and an issue, runs the model's bash / edit / create /
    submit actions in a private copy (or a container), and prints one validated unified
    diff on stdout, ready for `git apply`.
    """


def _read_issue(issue: str | None, issue_file: str | None) -> str:
    if issue and issue_file:
        raise UsageError("give either --issue or --issue-file, not both")
    if issue_file == "-" or (issue is None and issue_file is None and not sys.stdin.isatty()):
        text = sys.stdin.read()
    elif issue_file is not None:
        try:
            text = Path(issue_file).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(f"cannot read the issue file: {exc}") from exc
    else:
        text = issue or ""
    if not text.strip():
        raise UsageError(
            "no issue text",
            hint="pass --issue TEXT, --issue-file PATH (- for stdin), or pipe the issue in",
        )
    return text


def _install_sigterm() -> None:
    """SIGTERM ends the run like Ctrl-C: trajectory saved, runtime torn down, exit 130."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("repo", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--issue", help="The issue text.")
@click.option("--issue-file", help="File holding the issue; - reads stdin.")
@config_options
@setting_option("model", help="Model name [env CWM_AGENT_MODEL].")
@setting_option("base_url", help="OpenAI-compatible API base URL [env OPENAI_BASE_URL].")
@setting_option("tool_format")
@setting_option("api")
@setting_option("temperature")
@setting_option("top_p")
@setting_option("max_tokens")
@setting_option("request_timeout")
@setting_option("max_retries")
@click.option(
    "--chat-template-kwargs",
    default=None,
    help="JSON for vLLM's chat_template_kwargs (default: CWM's thinking switches "
    "when the model name contains 'cwm'; '{}' sends none).",
)
@setting_option("runtime")
@setting_option("image")
@setting_option("workdir")
@click.option("--repo-in-image", is_flag=True, help="Use the repository already in the image.")
@click.option("--network", is_flag=True, help="Give the container networking (off by default).")
@click.option("--memory", default="4g", show_default=True, help="Container memory limit.")
@click.option(
    "--pids-limit", type=int, default=1024, show_default=True, help="Container process limit."
)
@setting_option("max_steps")
@setting_option("timeout")
@setting_option("max_context")
@setting_option("max_format_errors")
@click.option(
    "--submit-on-limit",
    is_flag=True,
    help="At a limit without a submission, emit the working-tree diff if valid.",
)
@click.option(
    "--trace-prediction/--no-trace-prediction",
    default=False,
    show_default=True,
    help="Before showing a test's result, compare the model's predicted trace.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the patch here.")
@click.option("--traj", type=click.Path(dir_okay=False), help="Trajectory JSON path.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON result document.")
@click.option("--apply", "apply_patch", is_flag=True, help="Apply the patch to REPO.")
@click.option("-v", "--verbose", count=True, help="More progress on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@scale_options
def run(**opts: Any) -> None:
    """Solve an issue in REPO and print the validated patch on stdout.

    Model, runtime and limit settings come from the flag, else env CWM_AGENT_<NAME>
    (OPENAI_BASE_URL for the base URL), else the config file and its --profile, else the
    default; `cwm-agent config show` prints what a run would use. The key is read only
    from env OPENAI_API_KEY. Progress goes to stderr: a live status line on a terminal.

    \b
    Examples:
      cwm-agent run ./myrepo --issue-file ISSUE.md \\
          --base-url http://gpu:8000/v1 --model facebook/cwm | git apply
      gh issue view 42 | cwm-agent run . --model gpt-4.1 --tool-format openai
      cwm-agent run . --profile vllm-cwm --issue "fix the failing test" --json
      cwm-agent run . --issue-file ISSUE.md -v --traj run.json && cwm-agent show run.json
    """
    from cwm_agent import run as run_mod
    from cwm_agent.progress import make_progress
    from cwm_agent.settings import agent_config, model_settings

    cfg = resolve_from_context(click.get_current_context(), opts)
    issue = _read_issue(opts["issue"], opts["issue_file"])
    settings = run_mod.RunSettings(
        repo=Path(opts["repo"]).resolve(),
        model=model_settings(cfg, opts),
        agent=agent_config(cfg, opts),
        runtime=cfg["runtime"],
        image=cfg["image"],
        workdir=cfg["workdir"],
        repo_in_image=opts["repo_in_image"],
        network=opts["network"],
        memory=opts["memory"],
        pids_limit=opts["pids_limit"],
        traj_path=Path(opts["traj"]).resolve() if opts["traj"] else None,
        trace_prediction=opts["trace_prediction"],
    )
    verbosity = 0 if opts["quiet"] else 1 + opts["verbose"]
    _install_sigterm()
    if opts["attempts"] > 1:
        from cwm_agent.scaling.cli import run_scaled

        sys.exit(run_scaled(settings, issue, opts, verbosity))
    with make_progress(verbosity) as progress:
        result, traj = run_mod.execute(settings, issue, progress)
    if opts["as_json"]:
        click.echo(json.dumps(run_mod.result_document(result, traj), indent=2))
    elif result.patch is not None:
        run_mod.emit_patch(result.patch, opts["output"])
    if result.patch is not None and opts["apply_patch"]:
        run_mod.apply_to_repo(result.patch, settings.repo)
    if verbosity:
        click.echo(f"{result.status}: {result.reason} (trajectory: {traj.path})", err=True)
    sys.exit(result.exit_code)


@main.command()
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
    from cwm_agent.patches import validate_patch

    text = patch.read()
    validate_patch(text, os.path.abspath(repo), base)
    click.echo("valid patch", err=True)


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
    click.echo(f"replayed {result.actions} actions: {verdict}", err=True)
    sys.exit(0 if result.same else 1)
