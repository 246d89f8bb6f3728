"""SWE-bench predictions files, read one way for every command (`select`, `evaluate`, a
batch folder's ``preds.jsonl``).

A file is JSONL (one object a line) or, with a ``.json`` suffix, JSON: a list of objects,
or an object keyed by instance id (the key is the ``instance_id`` of a value that names
none, as the harness reads it). Each prediction: ``instance_id`` (a non-empty string),
``model_patch`` (a string, or missing / null: no prediction), ``model_name_or_path``
(optional, a string); other fields are kept. A line is numbered from 1 (in JSON, the item).

Anything malformed is a usage error naming ``FILE:LINE``, except with ``lenient`` (a
batch's own ``preds.jsonl``, whose last line a kill may have cut short): then it is
skipped. Bytes that are not UTF-8 survive as surrogate escapes (a patch of a Latin-1 file
keeps them), or, with ``utf8_only`` (what the harness can write into a container), are a
usage error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cwm_agent.errors import UsageError

FORMAT_HINT = (
    'each line a JSON object {"instance_id": ..., "model_patch": ..., '
    '"model_name_or_path": ...} (SWE-bench predictions)'
)


@dataclass(frozen=True)
class Prediction:
    """One prediction as written, with its place in the file."""

    line: int
    data: dict[str, Any]

    @property
    def instance_id(self) -> str:
        return str(self.data["instance_id"])

    @property
    def patch(self) -> str:
        return self.data.get("model_patch") or ""

    @property
    def model(self) -> str | None:
        model = self.data.get("model_name_or_path")
        return model if isinstance(model, str) else None


def read_predictions(
    path: Path, name: str | None = None, *, lenient: bool = False, utf8_only: bool = False
) -> list[Prediction]:
    """Every prediction of ``path`` in file order (``name``: how messages call it)."""
    name = name or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc}") from exc
    try:
        text = data.decode("utf-8", "strict" if utf8_only else "surrogateescape")
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {name}: not UTF-8 ({exc})") from exc
    items = _json_items(text, name) if path.suffix.lower() == ".json" else _lines(text, name)
    found = []
    for line, item in items:
        problem = _problem(item)
        if problem and lenient:
            continue
        if problem:
            raise UsageError(f"{name}:{line}: {problem}", hint=FORMAT_HINT)
        found.append(Prediction(line, item))
    return found


def _lines(text: str, name: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, ValueError(f"not valid JSON ({exc.msg})")


def _json_items(text: str, name: str) -> list[tuple[int, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{name}:{exc.lineno}: not valid JSON ({exc.msg})", hint=FORMAT_HINT
        ) from None
    if isinstance(data, dict):  # keyed by instance id
        return [
            (n, {"instance_id": key, **value} if isinstance(value, dict) else value)
            for n, (key, value) in enumerate(data.items(), 1)
        ]
    if isinstance(data, list):
        return list(enumerate(data, 1))
    raise UsageError(f"{name}: a .json file holds a list or an object keyed by instance id")


def _problem(item: Any) -> str:
    """What is wrong with one prediction ("" when nothing is)."""
    if isinstance(item, ValueError):
        return str(item)
    if not isinstance(item, dict):
        return "a prediction must be a JSON object"
    if not isinstance(item.get("instance_id"), str) or not item["instance_id"]:
        return "no instance_id (a non-empty string)"
    if item.get("model_patch") is not None and not isinstance(item["model_patch"], str):
        return "model_patch must be a string"
    model = item.get("model_name_or_path")
    if model is not None and not isinstance(model, str):
        return "model_name_or_path must be a string"
    return ""
