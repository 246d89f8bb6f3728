"""`cwm-agent show`: a trajectory as a terminal transcript or a self-contained HTML page."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from cwm_agent.errors import UsageError


def find_trajectory(name: str | None) -> Path:
    """A path, a run id from the runs folder, or (no name) the newest run there."""
    from cwm_agent.trajectory import default_runs_dir

    runs = default_runs_dir()
    if name:
        for candidate in (Path(name), runs / name, runs / f"{name}.json"):
            if candidate.is_file():
                return candidate
        raise UsageError(f"no trajectory {name!r}", hint=f"give a file path or a run id in {runs}")
    newest = max(runs.glob("*.json"), key=lambda p: p.stat().st_mtime, default=None)
    if newest is None:
        raise UsageError(
            f"no trajectories in {runs}", hint="give the path: cwm-agent show RUN.json"
        )
    return newest


def read_trajectory(path: Path, attempts: int = 5) -> dict[str, Any]:
    """The document; a read that races a live run's write (a torn page) is tried again."""
    for attempt in range(1, attempts + 1):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            break
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if attempt == attempts:
                raise UsageError(f"cannot read the trajectory {path}: {exc}") from exc
            time.sleep(0.05 * attempt)
        except OSError as exc:
            raise UsageError(f"cannot read the trajectory {path}: {exc}") from exc
    if not isinstance(data, dict) or "steps" not in data:
        raise UsageError(f"{path} is not a cwm-agent trajectory (no 'steps')")
    return data


@click.command()
@click.argument("traj", required=False)
@click.option(
    "--html",
    "html_out",
    metavar="OUT.html",
    help="Write one self-contained HTML page (no network needed) instead; - for stdout.",
)
@click.option("--full", is_flag=True, help="Do not fold long observations, reasoning or issue.")
@click.option("--width", type=int, help="Terminal width for the transcript (default: detected).")
def show(traj: str | None, html_out: str | None, full: bool, width: int | None) -> None:
    """Show a trajectory: a readable transcript, or an HTML page with --html.

    TRAJ is a trajectory file, a run id from the runs folder, or nothing for the newest
    run. The transcript shows each step's reasoning (folded), action, observation
    (folded), timings and tokens, trace-prediction comparisons and the final patch in
    colour. The page holds the same, with folds you open in the browser.

    \b
    Examples:
      cwm-agent show run.json
      cwm-agent show                      # the newest run
      cwm-agent show run.json --full | less -R
      cwm-agent show run.json --html run.html && xdg-open run.html
    """
    from cwm_agent.show.view import load_view

    path = find_trajectory(traj)
    view = load_view(read_trajectory(path))
    if html_out:
        from cwm_agent.show.html import render_html

        page = render_html(view)
        if html_out == "-":
            click.echo(page, nl=False)
        else:
            Path(html_out).write_text(page, encoding="utf-8")
            click.echo(f"wrote {html_out} ({len(view.steps)} steps)", err=True)
        return
    from rich.console import Console

    from cwm_agent.show.terminal import render

    render(view, Console(file=sys.stdout, width=width, highlight=False), full=full)
