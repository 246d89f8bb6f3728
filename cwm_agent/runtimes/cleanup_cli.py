"""`cwm-agent cleanup`: what killed runs left behind (and only that).

Local runs: their temp folders and trajectories stuck at `running`; no Docker engine
needed. Docker runs: their containers, when an engine answers.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from cwm_agent.console import say
from cwm_agent.errors import RuntimeFailure, UsageError


@click.command()
@click.option("--run-id", help="Only the containers of this run.")
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Also containers of runs still alive, and of runs started on another machine.",
)
@click.option(
    "--trajectories",
    "folders",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Also look for trajectories stuck at `running` here (repeatable; e.g. a batch "
    "output folder) [default: the runs folder only].",
)
def cleanup(run_id: str | None, everything: bool, folders: tuple[Path, ...]) -> None:
    """Clear what killed cwm-agent runs left behind.

    A run killed outright (SIGKILL, the out-of-memory killer) cannot clean up after
    itself. This removes, of runs that are gone: their temporary folders (cwm-agent-* in
    the temp directory, with anything still working inside them); marks their
    trajectories still at `running` (in the runs folder and in each --trajectories
    folder) as `killed`; and removes their Docker containers, those carrying cwm-agent's
    label (cwm-agent.run), when an engine answers at DOCKER_HOST (or the default socket).
    Whatever belongs to a run still going on this machine is kept, and so is what was
    started on another machine (it cannot be checked from here; for containers --all
    removes those too). Prints the removed containers' ids on stdout, the rest on
    stderr.

    \b
    Examples:
      cwm-agent cleanup
      cwm-agent cleanup --trajectories runs/lite
      DOCKER_HOST=unix:///tmp/cwm-docker/docker.sock cwm-agent cleanup --run-id RUN
      cwm-agent cleanup --all
    """
    problem: UsageError | None = None
    if run_id is None:  # --run-id names containers only
        from cwm_agent.options import check_runs_home

        # A file where the runs folder goes is a mistake to say, not "marked 0"; what
        # does not need that folder (temp folders, containers) is cleared all the same.
        try:
            check_runs_home(None, instead=" (or unset it)")
        except UsageError as exc:
            problem = exc
        _local(folders, with_home=problem is None)
    _containers(run_id, everything)
    if problem is not None:
        raise problem


def _local(folders: tuple[Path, ...], with_home: bool = True) -> None:
    from cwm_agent.runtimes.leftovers import clear
    from cwm_agent.trajectory import default_runs_dir, mark_killed

    done = clear()
    kept = f"; kept {len(done.kept)} of runs still going" if done.kept else ""
    if done.unknown:  # cannot be told apart from a live run's: the user decides
        kept += (
            f"; kept {len(done.unknown)} with no owner recorded (another version's, or a "
            "patch check in progress: remove it by hand once no cwm-agent runs)"
        )
    _say(f"removed {len(done.removed)} temporary folder(s) of killed local runs{kept}")
    for removed in done.removed:
        _say(f"  {removed}")
    for unknown in done.unknown:
        _say(f"  kept, no owner: {unknown}")
    searched = (default_runs_dir(), *folders) if with_home else folders
    if not searched:
        return
    marked: list[Path] = []
    going: list[Path] = []
    for folder in searched:
        found, alive = mark_killed(folder)
        marked += found
        going += alive
    kept = f"; {len(going)} of runs still going" if going else ""
    _say(f"marked {len(marked)} trajectory(ies) stuck at `running` as killed{kept}")
    for path in marked:
        _say(f"  {path}")


def _containers(run_id: str | None, everything: bool) -> None:
    from cwm_agent.runtimes.docker_engine import cleanup_containers

    try:
        done = cleanup_containers(run_id=run_id, everything=everything)
    except RuntimeFailure:
        if run_id is not None or everything:  # containers were what was asked for
            raise
        where = os.environ.get("DOCKER_HOST") or "the default socket"
        _say(f"containers: not checked (no Docker engine answers at {where})")
        return
    kept = ""
    if done.alive:
        kept += f"; kept {len(done.alive)} of runs still going"
    if done.elsewhere:
        kept += f"; kept {len(done.elsewhere)} started elsewhere (--all removes them)"
    _say(f"removed {len(done.removed)} container(s){kept}")
    for container_id in done.removed:
        click.echo(container_id)


def _say(line: str) -> None:
    say(line)  # paths from the temp and runs folders
