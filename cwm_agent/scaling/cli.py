"""What `run --attempts K` and `best-of` hand over to: the scaled run, its output, its lines."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from cwm_agent.settings import RunSettings


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
        from cwm_agent.console import visible  # model text must not drive the terminal

        with self._lock:
            self.stream.write(visible(text) + "\n")
            self.stream.flush()


def run_scaled(
    settings: RunSettings,
    issue: str,
    opts: dict[str, Any],
    verbosity: int = 1,
    command: str = "run",
) -> int:
    """`run --attempts K` (and `best-of`) from the parsed options; returns the exit code.

    Writes the selected patch (or the ``--json`` document) on stdout, or to ``-o``; ends
    with the summary line on stderr.
    """
    from cwm_agent.errors import CwmError
    from cwm_agent.run import deliver
    from cwm_agent.run_summary import scaled_error_line, scaled_line
    from cwm_agent.scaling import report
    from cwm_agent.scaling.attempts import records_dir, run_with_attempts

    printer = ScalingProgress(verbosity)
    traj_dir = opts.get("traj_dir")
    folder = Path(traj_dir).resolve() if traj_dir else records_dir(settings)
    started = time.monotonic()
    try:
        outcome = run_with_attempts(
            settings, issue, workers=opts.get("workers"), traj_dir=folder, progress=printer
        )
    except CwmError as exc:  # the error follows; the line says how far the rollouts got
        line = scaled_error_line(command, exc, folder, settings.run_id, time.monotonic() - started)
        if line is not None:
            printer.echo(line)
        raise
    result = outcome.result
    printer.echo(report.table(outcome.selection))
    applied = None
    try:
        applied = deliver(
            result.patch,
            lambda: report.document(outcome),
            as_json=bool(opts.get("as_json")),
            output=opts.get("output"),
            apply_to=settings.repo if opts.get("apply_patch") else None,
        )
    finally:
        if applied is not None:
            printer.echo(applied.line())
        printer.echo(scaled_line(report.document(outcome), command))
    return result.exit_code
