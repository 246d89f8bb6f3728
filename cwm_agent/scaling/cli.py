"""CLI glue for `--attempts K`: the option decorator and the function `run` hands over to.

Imports only click at module level: `cwm_agent.cli` imports ``scale_options`` at start-up
and `--help` must stay fast.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def _scale_options(default_attempts: int) -> list[Callable[[F], F]]:
    return [
        click.option(
            "--attempts",
            type=click.IntRange(min=1),
            default=default_attempts,
            show_default=True,
            help="Independent rollouts; with more than one, sample that many patches and "
            "select one with tests (CWM's test-time scaling).",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            default=None,
            help="Rollouts and test runs at a time [default: the number of attempts].",
        ),
        click.option(
            "--test-cmd",
            default=None,
            help="The repository's tests, run on every distinct patch (exit 0 = pass) "
            "[default: 'python3 -m pytest -x -q' when the repository has a tests folder "
            "or test_*.py files; '' for none].",
        ),
        click.option(
            "--test-timeout",
            type=float,
            default=900.0,
            show_default=True,
            help="Seconds for one run of --test-cmd.",
        ),
        click.option(
            "--repro-tests",
            type=click.IntRange(min=0),
            default=5,
            show_default=True,
            help="Model-written reproduction tests kept for the selection (0: none written).",
        ),
        click.option(
            "--early-stop",
            is_flag=True,
            help="Stop verifying once one patch passes every check.",
        ),
    ]


def stack(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        for option in reversed(options):  # --help lists them in the order written
            func = option(func)
        return func

    return decorate


scale_options = stack(_scale_options(1))


class ScalingProgress:
    """Plain stderr lines: the pipeline's own events, and the rollouts' warnings.

    Plain, not a live display: K rollouts run at once and report from several threads.
    """

    def __init__(self, verbosity: int = 1, stream: Any = None) -> None:
        self.verbosity = verbosity
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if event == "warning":
            self._write(f"warning: {data['message']}")
        elif event == "scaling" and self.verbosity >= 1:
            elapsed = time.monotonic() - self.started
            self._write(f"[{elapsed:6.1f}s] {data['message']}")

    def echo(self, text: str) -> None:
        if self.verbosity >= 1:
            self._write(text)

    def _write(self, text: str) -> None:
        from cwm_agent.progress import printable  # model text must not drive the terminal

        with self._lock:
            self.stream.write(printable(text) + "\n")
            self.stream.flush()


def run_scaled(settings: Any, issue: str, opts: dict[str, Any], verbosity: int = 1) -> int:
    """`run --attempts K` (and `best-of`) from the parsed options; returns the exit code.

    Writes the selected patch (or the ``--json`` document) on stdout, or to ``-o``.
    """
    from cwm_agent.run import apply_to_repo, emit_patch
    from cwm_agent.scaling import report
    from cwm_agent.scaling.attempts import run_with_attempts

    printer = ScalingProgress(verbosity)
    traj_dir = opts.get("traj_dir")
    outcome = run_with_attempts(
        settings,
        issue,
        opts["attempts"],
        workers=opts.get("workers"),
        test_cmd=opts.get("test_cmd"),
        test_timeout=opts.get("test_timeout", 900.0),
        repro_tests=opts.get("repro_tests", 5),
        early_stop=bool(opts.get("early_stop")),
        traj_dir=Path(traj_dir).resolve() if traj_dir else None,
        progress=printer,
    )
    result = outcome.result
    if opts.get("as_json"):
        click.echo(json.dumps(report.document(outcome), indent=2))
    elif result.patch is not None:
        emit_patch(result.patch, opts.get("output"))
    if result.patch is not None and opts.get("apply_patch"):
        apply_to_repo(result.patch, settings.repo)
    printer.echo(report.table(outcome.selection))
    printer.echo(f"{result.status}: {result.reason} (selection: {outcome.path})")
    return result.exit_code
