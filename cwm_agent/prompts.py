"""Model-facing text: every prompt is a Jinja2 template, bundled under ``prompts/`` or in
a prompt set (``prompt_sets.py``) that replaces some of them; all render in Jinja's
sandboxed environment."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import UsageError
from .prompt_sets import SET_TEMPLATES, PromptSet, bundled_dir


def prompts_dir() -> Path:
    """The bundled templates folder."""
    return bundled_dir()


@lru_cache(maxsize=8)
def environment(folder: str | None = None) -> Any:
    """Templates from ``folder`` first, then the bundled ones (``None``: bundled only)."""
    import jinja2  # imported on first use: keeps `import cwm_agent` and --help fast
    from jinja2.sandbox import SandboxedEnvironment

    bundled = jinja2.FileSystemLoader(str(prompts_dir()))
    loader = (
        bundled
        if folder is None
        else jinja2.ChoiceLoader([jinja2.FileSystemLoader(folder), bundled])
    )
    # A prompt set is text from elsewhere (an imported checkout, a folder): its templates
    # render in Jinja's sandbox, where they cannot reach Python's internals.
    return SandboxedEnvironment(
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
    import jinja2

    folder = None
    if prompt_set is not None and prompt_set.directory is not None and name in SET_TEMPLATES:
        folder = str(prompt_set.directory)
    try:
        return environment(folder).get_template(f"{name}.j2").render(**values).strip()
    except jinja2.TemplateError as exc:  # syntax errors and the sandbox's refusals
        where = os.path.join(folder or str(prompts_dir()), f"{name}.j2")
        raise UsageError(
            f"the prompt template {where} cannot be rendered: {type(exc).__name__}: {exc}",
            hint="fix that template, or choose another prompt set with --prompts",
        ) from None
