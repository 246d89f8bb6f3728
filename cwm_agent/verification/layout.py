"""The files of a `cwm-agent batch` OUTDIR and of a scaled run's records, named once: the
writers (``batch``, ``scaling``) and the reader (``batch_outputs``, for `select`) agree.

OUTDIR: ``preds.jsonl``, ``summary.json``, ``manifest.json``, one folder per instance.
An instance folder: ``result.json`` (written last: the instance finished),
``patch.diff``, ``trajectory.json``, ``stderr.log``; with ``--attempts K`` (the records of
`run --attempts`, in any folder): ``attempt-N.json`` (each fix rollout's trajectory),
``repro-N.json`` (each reproduction rollout's; the test it counts under ``REPRO_TEST``,
also one taken from the working tree under ``--submit-on-limit``, which is in no
submission) and ``selection.json``.
"""

from __future__ import annotations

import re
from pathlib import Path

PREDICTIONS = "preds.jsonl"
SUMMARY = "summary.json"
MANIFEST = "manifest.json"
RESULT = "result.json"
PATCH = "patch.diff"
TRAJECTORY = "trajectory.json"
LOG = "stderr.log"
SELECTION = "selection.json"
ATTEMPTS = "attempt-*.json"
REPROS = "repro-*.json"
REPRO_TEST = "reproduction_test"  # a repro-N.json's {"path", "test", "source"}
_NUMBERED = re.compile(r"(?:attempt|repro)-(\d+)\.json")


def attempt_file(number: int) -> str:
    """The trajectory of fix rollout ``number`` (from 1)."""
    return f"attempt-{number}.json"


def repro_file(number: int) -> str:
    """The trajectory of reproduction rollout ``number`` (from 1)."""
    return f"repro-{number}.json"


def rollout_number(path: Path) -> int:
    """N of ``attempt-N.json`` / ``repro-N.json`` (0 for another name)."""
    found = _NUMBERED.fullmatch(path.name)
    return int(found.group(1)) if found else 0
