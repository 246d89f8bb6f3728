"""Reading the fields of a trajectory that may be damaged or hand-made.

A missing field (a run in progress, an older format) reads as its default; a field of
the wrong type (``"model_seconds": "x"``, ``"usage": []``, a step that is ``null``) is
``NotATrajectory``, whose message names it: ``show`` turns that into a usage error
instead of a traceback.
"""

from __future__ import annotations

import json
from typing import Any


class NotATrajectory(ValueError):
    """A field of the wrong type; the message says which and what it holds."""


def _quoted(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _wrong(where: str, value: Any, expected: str) -> NotATrajectory:
    return NotATrajectory(f"{where} is {_quoted(value)}, not {expected}")


def obj(container: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """An object (JSON ``{}``); missing or null: empty."""
    value = container.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong(f"{where}{key}", value, "an object")
    return value


def items(container: dict[str, Any], key: str, where: str) -> list[Any]:
    """A list; missing or null: empty."""
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _wrong(f"{where}{key}", value, "a list")
    return value


def number(container: dict[str, Any], key: str, where: str) -> float | None:
    """A number (not a boolean); missing or null: None."""
    value = container.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong(f"{where}{key}", value, "a number")
    return float(value)


def integer(container: dict[str, Any], key: str, where: str) -> int | None:
    """A whole number (``3.0`` too); missing or null: None."""
    value = number(container, key, where)
    if value is None:
        return None
    if not value.is_integer():
        raise _wrong(f"{where}{key}", container[key], "a whole number")
    return int(value)


def text(container: dict[str, Any], key: str, where: str) -> str | None:
    """A string; missing or null: None."""
    value = container.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _wrong(f"{where}{key}", value, "a string")


def label(container: dict[str, Any], key: str, default: str = "?") -> str:
    """A value shown as it is: any scalar reads as its text."""
    value = container.get(key)
    return default if value is None else str(value)


TOKEN_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")


def counts(container: dict[str, Any], key: str, where: str) -> dict[str, int]:
    """The token counts of a usage object, each a whole number (missing ones: 0); other
    members (a newer version's) are left out."""
    usage = obj(container, key, where)
    return {name: integer(usage, name, f"{where}{key}.") or 0 for name in TOKEN_COUNTS}


def entry(value: Any, where: str) -> dict[str, Any]:
    """An item of a list that must be an object (a step, a message)."""
    if not isinstance(value, dict):
        raise _wrong(where, value, "an object")
    return value
