"""`batch --attempts K`: each instance solved by `run_with_attempts` in its own folder.

The instance folder then holds what `run --attempts K --traj-dir FOLDER` writes:
``attempt-N.json`` (one trajectory per fix rollout), ``repro-N.json`` (the reproduction
rollouts) and ``selection.json`` (the verification cascade's record of the instance, as a
line of select's ``selection.jsonl``, plus the rollouts' rows); its ``result.json`` is the
`run --attempts K --json` document, and its prediction is the selected patch. A SWE-bench
record's own test command (its eval script's, as plain facts) is the execution stage's
default there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from cwm_agent.verification import layout

if TYPE_CHECKING:
    from cwm_agent.costs import Meter
    from cwm_agent.settings import RunSettings

# What an earlier attempt at the instance may have left; a new attempt starts without it.
SCALED_FILES = (layout.SELECTION, layout.ATTEMPTS, layout.REPROS)


def solve_scaled(
    settings: RunSettings,
    issue: str,
    folder: Path,
    log: TextIO,
    meter: Meter | None = None,
    stopping: Callable[[], bool] | None = None,
    instance: tuple[str, Mapping[str, Any]] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The `--json` document of a scaled run whose records go to ``folder``; ``instance``:
    (its id, what the selection may know of its record); ``on_warning``: the run's
    warnings (the selection's loud ones among them) for the batch's display, besides the
    instance's log.

    Raises what `run_with_attempts` raises (e.g. ModelError when every attempt failed so).
    The rollouts run on `workers = attempts` threads of their own: a batch with
    ``--workers N --attempts K`` has up to N * K rollouts (and as many reproduction
    rollouts) at once. ``meter``: the instance's budget (all its rollouts together);
    ``stopping``: the batch stopping, which every rollout follows at once.
    """
    from cwm_agent.scaling import report
    from cwm_agent.scaling.attempts import run_with_attempts

    progress = _log_lines(log, on_warning)
    outcome = run_with_attempts(
        settings,
        issue,
        traj_dir=folder,
        progress=progress,
        meter=meter,
        stopping=stopping,
        instance=instance,
    )
    log.write(report.table(outcome.selection) + "\n")
    return report.document(outcome)


def first_trajectory(folder: Path) -> Path:
    """The trajectory an error document is filled from when a scaled run raised."""
    return folder / layout.attempt_file(1)


def _log_lines(log: TextIO, on_warning: Callable[[str], None] | None) -> Any:
    """The pipeline's events as lines of the instance's stderr.log (written from K
    threads); its warnings to ``on_warning`` too."""
    lock = threading.Lock()

    def progress(event: str, data: dict[str, Any]) -> None:
        if event in ("scaling", "warning"):
            prefix = "warning: " if event == "warning" else ""
            with lock:
                log.write(f"{prefix}{data['message']}\n")
        if event == "warning" and on_warning is not None:
            on_warning(str(data["message"]))

    return progress
