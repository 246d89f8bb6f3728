"""Every option group the commands share, declared once, plus issue reading and signals.

Settings (``config.SETTINGS``) become click options here with no click default, so that
``resolve`` can tell a typed flag from the env, file and default layers. Commands stack the
groups they need: `run` and `best-of` take model, agent, runtime, scaling and output
options; `batch` the same with its own few on top.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from cwm_agent.config import LOCAL_FILE, SETTINGS, Resolved, in_group, resolve
from cwm_agent.console import say
from cwm_agent.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]

# Help that differs from the setting's own (the env variable a user may already have set).
_ENV_HINTS = {"model": " [env CWM_AGENT_MODEL]", "base_url": " [env OPENAI_BASE_URL]"}


def stack(*decorators: Callable[[Any], Any]) -> Callable[[F], F]:
    """Apply click decorators so that --help lists them in the order given."""

    def decorate(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return decorate


def setting_option(
    name: str, *decls: str, shown_default: Any = None, **kwargs: Any
) -> Callable[[F], F]:
    """A click option for a setting: no click default, so `resolve` can tell it was not given."""
    spec = SETTINGS[name]
    kwargs.setdefault("help", spec.help + _ENV_HINTS.get(name, ""))
    default = spec.default if shown_default is None else shown_default
    if default not in (None, False):  # shown by hand: click would print a default=None bare
        kwargs["help"] += f"  [default: {default}]"
    decls = decls or spec.flags or (spec.flag,)
    if spec.kind is bool:
        if "/" not in decls[0]:
            kwargs["is_flag"] = True
    elif isinstance(spec.kind, tuple):
        kwargs["type"] = click.Choice(list(spec.kind))
    elif spec.kind in (int, float):
        kwargs["type"] = spec.kind
    return click.option(*decls, name, default=None, **kwargs)


def settings_of(group: str, *, skip: tuple[str, ...] = (), **help: str) -> Callable[[F], F]:
    """The options of every setting in ``group`` (``help`` overrides some help texts)."""
    return stack(
        *(
            setting_option(s.name, **({"help": help[s.name]} if s.name in help else {}))
            for s in in_group(group)
            if s.name not in skip
        )
    )


def config_options(func: F) -> F:
    """``--config`` and ``--profile``, shared by every command that reads settings."""
    return stack(
        click.option(
            "--config",
            "config_path",
            metavar="PATH",
            help="Config file, trusted [env CWM_AGENT_CONFIG; default "
            f"~/.config/cwm-agent/config.toml, then ./{LOCAL_FILE} for the few settings a "
            "project file may set].",
        ),
        click.option(
            "--profile",
            metavar="NAME",
            help="Use [profiles.NAME] of the config file [env CWM_AGENT_PROFILE].",
        ),
    )(func)


model_options = stack(config_options, settings_of("model"))
agent_options = settings_of("agent")
runtime_options = settings_of("runtime")


def scaling_options(default_attempts: int, *, with_workers: bool = True) -> Callable[[F], F]:
    """The `--attempts K` options; `batch` has its own --workers (instances)."""
    workers = click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=None,
        help="Rollouts at a time [default: the number of attempts].",
    )
    attempts = setting_option("attempts", shown_default=default_attempts)
    rest = settings_of("scaling", skip=("attempts",))
    return stack(attempts, *([workers] if with_workers else []), rest)


def executor_options(what: str) -> Callable[[F], F]:
    """``--executor thread|ray`` and ``--ray-address``, for the commands that run many
    ``what`` (instances, predictions) at once."""
    return stack(
        click.option(
            "--executor",
            type=click.Choice(["thread", "ray"]),
            default="thread",
            show_default=True,
            help=f"What runs the {what}: --workers threads here, or Ray tasks, one per "
            "item (needs: pip install 'cwm-agent[ray]').",
        ),
        click.option(
            "--ray-address",
            metavar="ADDR",
            help="With --executor ray: join this Ray cluster (head:6379 from a node, or "
            "ray://head:10001) [default: start a local Ray instance with --workers CPUs].",
        ),
    )


issue_options = stack(
    click.option("--issue", help="The issue text."),
    click.option("--issue-file", help="File holding the issue; - reads stdin."),
)


def output_options(patch_help: str = "Apply the patch to REPO.") -> Callable[[F], F]:
    return stack(
        click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False),
            help="Write the patch here (with --json too: the document goes to stdout).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON result document."),
        click.option("--apply", "apply_patch", is_flag=True, help=patch_help),
        click.option("-v", "--verbose", count=True, help="More progress on stderr."),
        click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr."),
    )


def typed_settings(ctx: click.Context, params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings the user typed on this command line (the flag layer)."""
    typed = click.core.ParameterSource.COMMANDLINE
    return {n: params[n] for n in SETTINGS if n in params and ctx.get_parameter_source(n) is typed}


def resolve_options(params: Mapping[str, Any], **defaults: Any) -> Resolved:
    """Resolve every setting with the ones typed on the current command line; what the
    resolution has to say (a project file read, keys of it ignored) goes to stderr."""
    ctx = click.get_current_context()
    flags = typed_settings(ctx, params)
    cfg = resolve(flags, params.get("config_path"), params.get("profile"), defaults=defaults)
    say_notices(cfg)
    return cfg


def say_notices(cfg: Resolved) -> None:
    """A project file is never read silently, not even with -q."""
    for notice in cfg.notices:
        say(f"notice: {notice}")


def warn_unpriced(model: Any, *budgets: tuple[str, float | None]) -> None:
    """A cost budget for a model without a price counts nothing: said, even with -q."""
    from cwm_agent.costs import unpriced_warning

    warning = unpriced_warning(model.prices, model.name, *budgets)
    if warning:
        say(f"warning: {warning}")


def verbosity(opts: Mapping[str, Any]) -> int:
    return 0 if opts.get("quiet") else 1 + int(opts.get("verbose") or 0)


def check_output(path: str | None) -> None:
    """``-o PATH``: refused before the run when its folder does not exist."""
    if path is None:
        return
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise UsageError(
            f"-o {path}: the folder {folder} does not exist", hint=f"mkdir -p {folder}"
        )


def check_record_path(flag: str, path: str | None) -> None:
    """``--traj`` / ``--traj-dir``: refused before the run when a file stands where one of
    its folders must go (the first save would fail after the first model request)."""
    if path is None:
        return
    for parent in Path(path).resolve().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(
                    f"{flag} {path}: {parent} is a file, not a folder",
                    hint=f"choose another {flag} path",
                )
            return


def check_runs_home(traj: str | None, *, instead: str = ", or pass --traj PATH") -> None:
    """Without ``--traj`` the trajectory goes under ``$CWM_AGENT_HOME`` (or the XDG state
    folder): a file standing where a folder must go is refused before the run (and before
    ``cleanup`` reads the folder). ``instead`` ends the hint: the command's other way out."""
    if traj is not None:
        return
    from cwm_agent.trajectory import default_runs_dir

    runs = default_runs_dir()
    for parent in (runs, *runs.parents):
        if parent.exists():
            if not parent.is_dir():
                home = os.environ.get("CWM_AGENT_HOME")
                raise UsageError(
                    f"{parent} is a file, not a folder: trajectories go to {runs}"
                    + (f" (CWM_AGENT_HOME={home})" if home else ""),
                    hint=f"point CWM_AGENT_HOME at a folder{instead}",
                )
            return


def read_issue(issue: str | None, issue_file: str | None) -> str:
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


STOP_SIGNALS = ("SIGTERM", "SIGHUP", "SIGQUIT")


def install_signal_handlers() -> None:
    """SIGTERM, SIGHUP (a closed terminal) and SIGQUIT end the run like Ctrl-C: trajectory
    saved, runtime torn down, exit 130."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    for name in STOP_SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)
