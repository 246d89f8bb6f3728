"""`cwm-agent cleanup`: remove containers left behind by killed runs (and only those)."""

from __future__ import annotations

import click


@click.command()
@click.option("--run-id", help="Only the containers of this run.")
def cleanup(run_id: str | None) -> None:
    """Remove Docker containers that cwm-agent runs left behind.

    Only containers carrying cwm-agent's label (cwm-agent.run) are touched; the
    engine is the one at DOCKER_HOST (or the default socket).

    \b
    Examples:
      cwm-agent cleanup
      DOCKER_HOST=unix:///tmp/cwm-docker/docker.sock cwm-agent cleanup --run-id RUN
    """
    from cwm_agent.runtimes.docker_engine import cleanup_containers

    removed = cleanup_containers(run_id=run_id)
    click.echo(f"removed {len(removed)} container(s)", err=True)
    for container_id in removed:
        click.echo(container_id)
