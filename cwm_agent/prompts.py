"""Model-facing text: every prompt is a Jinja2 template, bundled under ``prompts/`` or in
a prompt set (``prompt_sets.py``) that replaces some of them."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from .prompt_sets import SET_TEMPLATES, PromptSet, bundled_dir


def prompts_dir() -> Path:
    """The bundled templates folder."""
    return bundled_dir()


@lru_cache(maxsize=8)
def environment(folder: str | None = None) -> Any:
    """Templates from ``folder`` first, then the bundled ones (``None``: bundled only)."""
    import jinja2  # imported on first use: keeps `import cwm_agent` and --help fast

    bundled = jinja2.FileSystemLoader(str(prompts_dir()))
    loader = (
        bundled
        if folder is None
        else jinja2.ChoiceLoader([jinja2.FileSystemLoader(folder), bundled])
    )
    return jinja2.Environment(
        loader=loader,
        keep_trailing_newline=False,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def _environment() -> Any:
    return environment(None)


def render(name: str, prompt_set: PromptSet | None = None, **values: Any) -> str:
    """Render template ``NAME`` with ``values`` (a missing value is an error).

    The templates a set may replace (``SET_TEMPLATES``) come from ``prompt_set`` when it
    has them; everything else, and every template of the bundled set, from ``prompts/``.
    """
    folder = None
    if prompt_set is not None and prompt_set.directory is not None and name in SET_TEMPLATES:
        folder = str(prompt_set.directory)
    return environment(folder).get_template(f"{name}.j2").render(**values).strip()
