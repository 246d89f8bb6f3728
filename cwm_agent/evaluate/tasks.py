"""What `evaluate` grades: each prediction with its dataset record and image.

The predictions file is read as the official harness reads it (JSONL, or JSON holding a
list or an object keyed by id), by the reader select uses too
(``verification/predictions.py``); every prediction must name an instance of the dataset,
and every record graded must carry what the swebench package grades with (its eval
script, log parser, eval type: the official datasets have them).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cwm_agent.errors import UsageError
from cwm_agent.verification.images import record_image
from cwm_agent.verification.predictions import read_predictions

PREDICTION_KEYS = ("instance_id", "model_name_or_path", "model_patch")
GRADING_KEYS = (
    "repo",
    "version",
    "FAIL_TO_PASS",
    "PASS_TO_PASS",
    "eval_script",
    "log_parser",
    "eval_type",
)


@dataclass(frozen=True)
class Task:
    """One prediction to grade: its record (with the grading fields) and the image."""

    instance_id: str
    prediction: dict[str, Any]
    record: dict[str, Any]
    image: str
    line: int | None = None  # with --candidates: its line in PREDS (1-based)

    @property
    def patch(self) -> str:
        return self.prediction.get("model_patch") or ""

    @property
    def sha256(self) -> str:
        """Of the patch's exact bytes: identical patches of an instance are graded once."""
        return hashlib.sha256(self.patch.encode("utf-8", "surrogateescape")).hexdigest()

    @property
    def model(self) -> str:
        return str(self.prediction.get("model_name_or_path") or "None")

    def key(self) -> str:
        """What a stored verdict was made from: the patch, the grading fields, the image."""
        grading = {k: self.record.get(k) for k in GRADING_KEYS}
        blob = json.dumps([self.patch, grading, self.image], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def last_predictions(path: Path) -> list[dict[str, Any]]:
    """PREDS as the harness accepts it; the last prediction of an id wins, in file order."""
    found: dict[str, dict[str, Any]] = {}
    for _, pred in read_lines(path):
        found.pop(pred["instance_id"], None)
        found[pred["instance_id"]] = pred
    return list(found.values())


def read_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """Every prediction of PREDS with its line (1-based; a JSON file's item number), any
    number per instance (``--candidates``): read as select reads it
    (``verification/predictions.py``), UTF-8 only (what the harness can grade)."""
    found = read_predictions(path, utf8_only=True)
    if not found:
        raise UsageError(f"{path} holds no predictions", hint="one JSON object per line")
    return [(p.line, p.data) for p in found]


def match(
    predictions: list[dict[str, Any]],
    records: list[dict[str, Any]],
    image_template: str | None = None,
    lines: list[int] | None = None,
) -> list[Task]:
    """Each prediction with its record (and its line in PREDS, when ``lines`` are given);
    refused up front when any cannot be graded."""
    by_id = {r.get("instance_id"): r for r in records}
    unknown = [p["instance_id"] for p in predictions if p["instance_id"] not in by_id]
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        shown = ", ".join(unknown[:5]) + more
        raise UsageError(
            f"{len(unknown)} prediction(s) name no instance of the dataset: {shown}",
            hint="check --dataset (and --split): the predictions must come from it",
        )
    tasks = []
    for n, pred in enumerate(predictions):
        record = by_id[pred["instance_id"]]
        missing = [k for k in GRADING_KEYS if record.get(k) in (None, "")]
        if missing and pred.get("model_patch"):
            raise UsageError(
                f"{pred['instance_id']}: its record has no {', '.join(missing)}",
                hint="grading uses the records' own eval scripts and log parsers (swebench "
                "5): pass the official dataset (verified, lite, full) or a file exported "
                "from it",
            )
        image = record_image(record, image_template)
        tasks.append(Task(pred["instance_id"], pred, record, image, lines[n] if lines else None))
    return tasks
