"""The trajectory as one self-contained HTML page: inline CSS and JS, no network at all.

Every value is escaped by Jinja2's autoescape (model text is hostile), and a
Content-Security-Policy forbids any request, so even a mistake here cannot load anything.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from cwm_agent import __version__
from cwm_agent.show.view import RunView, diff_lines, edit_diff, hook_parts

TEMPLATES = Path(__file__).resolve().parent / "templates"
OPEN_OBSERVATION_LINES = 40  # longer observations start folded


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2  # lazy: keeps --help fast

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["diff_lines"] = diff_lines
    env.filters["edit_diff"] = edit_diff
    env.filters["hook_parts"] = hook_parts
    env.filters["line_count"] = lambda text: len(str(text).splitlines())
    return env


def render_html(view: RunView) -> str:
    return (
        _environment()
        .get_template("page.html.j2")
        .render(
            view=view,
            version=__version__,
            open_lines=OPEN_OBSERVATION_LINES,
            has_hooks=any(step.hooks for step in view.steps),
        )
    )
