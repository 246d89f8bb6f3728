"""`cwm-agent cleanup`: remove containers left behind by killed runs (and only those)."""

from __future__ import annotations

import click


@click.command()
@click.option("--run-id", help="Only the containers of this run.")
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Also containers of runs still alive, and of runs started on another machine.",
)
def cleanup(run_id: str | None, everything: bool) -> None:
    """Remove Docker containers that cwm-agent runs left behind.

    Only containers carrying cwm-agent's label (cwm-agent.run) are touched, and of those
    only the ones whose run is gone: a run still going on this machine keeps its
    container, and so does one started on another machine sharing the engine (it cannot
    be checked from here); --all removes those too. The engine is the one at DOCKER_HOST
    (or the default socket). Prints the removed containers' ids on stdout.

    \b
    Examples:
      cwm-agent cleanup
      DOCKER_HOST=unix:///tmp/cwm-docker/docker.sock cwm-agent cleanup --run-id RUN
      cwm-agent cleanup --all
    """
    from cwm_agent.runtimes.docker_engine import cleanup_containers

    done = cleanup_containers(run_id=run_id, everything=everything)
    kept = ""
    if done.alive:
        kept += f"; kept {len(done.alive)} of runs still going"
    if done.elsewhere:
        kept += f"; kept {len(done.elsewhere)} started elsewhere (--all removes them)"
    click.echo(f"removed {len(done.removed)} container(s){kept}", err=True)
    for container_id in done.removed:
        click.echo(container_id)
