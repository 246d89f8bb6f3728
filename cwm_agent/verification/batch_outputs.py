"""Candidates from a `cwm-agent batch` output folder (read, never written).

Per instance folder (the one holding ``result.json``, whose ``instance_id`` names it):

- with ``--attempts K``: every fix rollout's trajectory ``attempt-N.json`` that ended with a
  patch is a candidate (its ``patch``, its ``usage`` as tokens, the model it recorded, the
  attempt number), so the K samples are selected among again, not just the batch's pick;
- otherwise: the instance's own patch (``patch.diff``'s exact bytes, else the result's
  ``patch_base64`` or ``patch``), with the run's tokens;
- an instance with a line in ``preds.jsonl`` but no folder: that line.

The reproduction rollouts of ``--attempts`` (``repro-N.json``) are the candidates'
companions: the tests they submitted are read too (``companions``), for the execution stage.

Instances that have not finished (no ``result.json``) are skipped and counted in a note.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cwm_agent.verification import layout
from cwm_agent.verification.predictions import read_predictions
from cwm_agent.verification.records import Candidate, Origin
from cwm_agent.verification.scripts import Written, from_rollout

MARKERS = (layout.PREDICTIONS, layout.SUMMARY, layout.MANIFEST)


def is_batch_folder(path: Path) -> bool:
    return any((path / name).is_file() for name in MARKERS) or any(path.glob(f"*/{layout.RESULT}"))


def read(path: Path, spec: str) -> tuple[list[Candidate], list[str]]:
    candidates: list[Candidate] = []
    unfinished = 0
    for folder in sorted(p for p in path.iterdir() if p.is_dir()):
        result = _load(folder / layout.RESULT)
        if result is None or not isinstance(result.get("instance_id"), str):
            unfinished += any(folder.glob("*.json"))
            continue
        attempts = sorted(folder.glob(layout.ATTEMPTS), key=layout.rollout_number)
        if attempts:
            candidates.extend(_attempts(result["instance_id"], attempts, spec))
        else:
            found = _single(result, folder, spec)
            candidates.extend([found] if found is not None else [])
    seen = {c.instance_id for c in candidates}
    candidates.extend(c for c in _predictions(path, spec) if c.instance_id not in seen)
    notes = [f"{spec}: {unfinished} unfinished instance(s) skipped"] if unfinished else []
    return candidates, notes


def companions(path: Path) -> dict[str, list[Written]]:
    """Instance id -> the tests its reproduction rollouts submitted (``repro-N.json``)."""
    found: dict[str, list[Written]] = {}
    for folder in sorted(p for p in path.iterdir() if p.is_dir()):
        result = _load(folder / layout.RESULT)
        if result is None or not isinstance(result.get("instance_id"), str):
            continue
        for file in sorted(folder.glob(layout.REPROS), key=layout.rollout_number):
            code = from_rollout(file)
            if code is not None:
                found.setdefault(result["instance_id"], []).append(Written(code, str(file)))
    return found


def _predictions(path: Path, spec: str) -> list[Candidate]:
    """``preds.jsonl``'s lines, for instances without a folder (a copied or trimmed OUTDIR);
    a line cut short by a kill is skipped, as batch's own resume skips it."""
    preds = path / layout.PREDICTIONS
    if not preds.is_file():
        return []
    found = []
    for prediction in read_predictions(preds, spec, lenient=True):
        if prediction.patch.strip():
            origin = Origin(spec, line=prediction.line, model=prediction.model, path=str(preds))
            found.append(Candidate(prediction.instance_id, prediction.patch, origin))
    return found


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _attempts(instance_id: str, files: list[Path], spec: str) -> list[Candidate]:
    found = []
    for file in files:
        trajectory = _load(file)
        if trajectory is None or not isinstance(trajectory.get("patch"), str):
            continue
        patch = trajectory["patch"]
        if not patch.strip():
            continue
        config = trajectory.get("config") or {}
        model = (config.get("model") or {}).get("name")
        origin = Origin(spec, model=model, attempt=layout.rollout_number(file), path=str(file))
        found.append(Candidate(instance_id, patch, origin, _tokens(trajectory)))
    return found


def _single(result: dict[str, Any], folder: Path, spec: str) -> Candidate | None:
    diff = folder / layout.PATCH
    patch: str | None = None
    if diff.is_file():
        patch = diff.read_bytes().decode("utf-8", "surrogateescape")
    elif isinstance(result.get("patch_base64"), str):
        patch = base64.b64decode(result["patch_base64"]).decode("utf-8", "surrogateescape")
    elif isinstance(result.get("patch"), str):
        patch = result["patch"]
    if not patch or not patch.strip():
        return None
    model = result.get("model_name_or_path")
    origin = Origin(spec, model=model if isinstance(model, str) else None, path=str(folder))
    return Candidate(result["instance_id"], patch, origin, _tokens(result))


def _tokens(document: dict[str, Any]) -> int | None:
    usage = document.get("usage")
    if isinstance(usage, dict):
        total = usage.get("total_tokens")
        if total is None and "prompt_tokens" in usage:
            total = (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0)
        if isinstance(total, int) and not isinstance(total, bool):
            return total
    return None
