"""Model-facing text: every prompt is a Jinja2 template under ``prompts/``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent


def prompts_dir() -> Path:
    """The templates folder: inside the installed package, else the source checkout's."""
    for candidate in (_HERE / "prompts", _HERE.parent / "prompts"):
        if (candidate / "system.j2").is_file():
            return candidate
    raise FileNotFoundError(
        f"prompt templates not found next to {_HERE}; reinstall cwm-agent (pip install cwm-agent)"
    )


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2  # imported on first use: keeps `import cwm_agent` and --help fast

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(prompts_dir())),
        keep_trailing_newline=False,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )


def render(name: str, **values: Any) -> str:
    """Render ``prompts/NAME.j2`` with ``values`` (a missing value is an error)."""
    return _environment().get_template(f"{name}.j2").render(**values).strip()
