"""`cwm-agent show`: a trajectory as a terminal transcript or a self-contained HTML page."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from cwm_agent.console import say
from cwm_agent.errors import UsageError

# Longer lines are cut (head and tail kept, a marker between) unless --full: a terminal
# wraps a 5 MB line into 50,000 rows, a browser stalls laying it out.
TERMINAL_MAX_LINE = 2_000
HTML_MAX_LINE = 20_000


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


def read_trajectory(path: Path, attempts: int = 5, *, follow: bool = True) -> dict[str, Any]:
    """The document; a read that races a live run's write (a torn page) is tried again.

    A result document (what `run --json` prints, batch's result.json) is followed to the
    trajectory it names, with a note on stderr.
    """
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
    if follow and not (isinstance(data, dict) and isinstance(data.get("steps"), list)):
        from cwm_agent.run import is_result_document  # only then: it imports the agent

        if is_result_document(data):
            return _followed(data, path, attempts)
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise UsageError(f"{path} is not a cwm-agent trajectory (no list of 'steps')")
    return data


def _followed(result: dict[str, Any], path: Path, attempts: int) -> dict[str, Any]:
    from cwm_agent.run import trajectory_of_result

    target = trajectory_of_result(result, path)
    data = read_trajectory(target, attempts, follow=False)
    note = f"{path} is a result document; showing its trajectory {target}"
    say(note)  # the document named the target: untrusted
    return data


@click.command()
@click.argument("traj", required=False)
@click.option(
    "--html",
    "html_out",
    metavar="OUT.html",
    help="Write one self-contained HTML page (no network needed) instead; - for stdout.",
)
@click.option(
    "--full",
    is_flag=True,
    help="Do not fold long observations, reasoning or issue, nor cut long lines.",
)
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
    from cwm_agent.show.fields import NotATrajectory
    from cwm_agent.show.view import load_view

    limit = None if full else HTML_MAX_LINE if html_out else TERMINAL_MAX_LINE
    folder = Path(html_out or ".").resolve().parent
    if html_out not in (None, "-") and not folder.is_dir():  # refused before the work
        raise UsageError(
            f"--html {html_out}: the folder {folder} does not exist", f"mkdir -p {folder}"
        )
    path = find_trajectory(traj)
    try:
        view = load_view(read_trajectory(path), limit)
    except NotATrajectory as exc:
        raise UsageError(
            f"{path} is not a valid trajectory: {exc}",
            hint="was it edited by hand or written by another program? "
            "`python -m json.tool FILE` shows the document",
        ) from None
    if html_out:
        from cwm_agent.show.html import render_html

        page = render_html(view)
        if html_out == "-":
            click.echo(page, nl=False)
        else:
            try:
                Path(html_out).write_text(page, encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"cannot write {html_out}: {exc}") from exc
            say(f"wrote {html_out} ({len(view.steps)} steps)")
        return
    from rich.console import Console

    from cwm_agent.show.terminal import render

    render(view, Console(file=sys.stdout, width=width, highlight=False), full=full)
