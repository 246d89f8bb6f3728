"""``report.html``: the selection on one self-contained page.

The funnel (candidates, what is left after each stage, the choices), each stage's cost,
and a table of instances that unfolds into each one's candidates. Inline CSS, no script, a
Content-Security-Policy that forbids every request; every value escaped by Jinja2's
autoescape (patch origins and reasons are text from the inputs).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from cwm_agent import __version__
from cwm_agent.select.summary import FUNNEL
from cwm_agent.verification.choice import ORDER

TEMPLATES = Path(__file__).resolve().parent / "templates"
BAR_PIXELS = 400
_UNITS = {
    "candidates": "candidates in",
    "static": "candidates that pass the static checks",
    "group": "groups (distinct code changes)",
    "reward": "groups kept by the verifier",
    "execute": "groups left after execution",
    "chosen": "instances with a choice",
}


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def render(
    summary: dict[str, Any], records: list[dict[str, Any]], facts: list[tuple[str, str]]
) -> str:
    return str(
        _environment()
        .get_template("report.html.j2")
        .render(
            summary=summary,
            records=records,
            facts=facts,
            funnel=_funnel(summary),
            groups_of={r["instance_id"]: {g["key"]: g for g in r["groups"]} for r in records},
            origin_text=origin_text,
            score_text=score_text,
            order=ORDER,
            version=__version__,
        )
    )


def _funnel(summary: dict[str, Any]) -> list[dict[str, Any]]:
    counts = summary["funnel"]
    top = max(counts.get("candidates", 0), 1)
    rows = []
    for stage in FUNNEL:
        ran = stage in counts
        count = counts.get(stage, 0)
        width = round(BAR_PIXELS * count / top)
        rows.append(
            {"stage": stage, "count": count, "ran": ran, "unit": _UNITS[stage], "width": width}
        )
    return rows


def origin_text(origin: dict[str, Any]) -> str:
    parts = [str(origin.get("model") or Path(str(origin.get("source", ""))).name)]
    if origin.get("line"):
        parts.append(f"line {origin['line']}")
    if origin.get("attempt"):
        parts.append(f"attempt {origin['attempt']}")
    if origin.get("path") and not origin.get("attempt"):
        parts.append(Path(str(origin["path"])).name)
    return ", ".join(parts)


def score_text(group: dict[str, Any] | None) -> str:
    reward = (group or {}).get("reward")
    if not reward or reward.get("score") is None:
        return "–"
    return f"{reward['score']:.3f}"
