"""Candidates from any input, each with where it came from (``records.Origin``).

INPUT is one of:

- a SWE-bench predictions file: JSONL (one ``{"instance_id", "model_patch",
  "model_name_or_path"}`` object a line, any number of lines per instance) or JSON (a list
  of such objects, or an object keyed by instance id); ``model_name_or_path`` is optional;
  read by ``predictions.py``, as evaluate reads it;
- a `cwm-agent batch` output folder: every attempt of an ``--attempts`` run, else each
  instance's prediction (``batch_outputs.py``); its reproduction rollouts' tests come along
  (``Found.scripts``);
- a folder of ``*.patch`` / ``*.diff`` files, all for one instance (``--repo`` /
  ``--issue-file``): their ``instance_id`` is left empty for the caller to fill.

A malformed line is a usage error naming ``FILE:LINE``. Empty patches are not candidates
(SWE-bench counts them as no prediction); how many were skipped is said in ``notes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cwm_agent.errors import UsageError
from cwm_agent.verification import batch_outputs
from cwm_agent.verification.predictions import read_predictions
from cwm_agent.verification.records import Candidate, Origin
from cwm_agent.verification.scripts import Written

PATCH_SUFFIXES = (".patch", ".diff")


@dataclass
class Found:
    """Everything read from the inputs."""

    candidates: list[Candidate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # INPUT -> predictions/batch/patches
    scripts: dict[str, list[Written]] = field(default_factory=dict)  # id -> batch's repro tests
    empty: dict[str, int] = field(default_factory=dict)  # id -> its empty predictions (skipped)

    @property
    def for_one_instance(self) -> bool:
        """Some candidates came without an instance id (a folder of patches)."""
        return any(not c.instance_id for c in self.candidates)


def read_inputs(specs: Sequence[str]) -> Found:
    found = Found()
    seen: set[Path] = set()
    for spec in specs:
        path = Path(spec).expanduser()
        if not path.exists():
            raise UsageError(
                f"INPUT {spec} does not exist", hint="give predictions files or folders"
            )
        if path.resolve() in seen:  # its candidates would vote twice
            found.notes.append(f"{spec} given twice: read once")
            continue
        seen.add(path.resolve())
        if path.is_dir():
            if batch_outputs.is_batch_folder(path):
                found.kinds[spec] = "batch"
                candidates, notes = batch_outputs.read(path, spec)
                found.notes.extend(notes)
                for iid, written in batch_outputs.companions(path).items():
                    found.scripts.setdefault(iid, []).extend(written)
            else:
                found.kinds[spec] = "patches"
                candidates = _patch_folder(path, spec)
        else:
            found.kinds[spec] = "predictions"
            candidates, skipped = _predictions(path, spec)
            for iid in skipped:
                found.empty[iid] = found.empty.get(iid, 0) + 1
            if skipped:
                found.notes.append(f"{spec}: {len(skipped)} empty prediction(s) skipped")
        found.candidates.extend(candidates)
    if not found.candidates:
        raise UsageError(
            "the inputs hold no candidate patch", hint="check INPUT: " + ", ".join(specs)
        )
    return found


def _predictions(path: Path, spec: str) -> tuple[list[Candidate], list[str]]:
    """(the candidates, the instance ids of the empty predictions skipped)."""
    candidates: list[Candidate] = []
    skipped: list[str] = []
    for prediction in read_predictions(path, spec):
        if not prediction.patch.strip():
            skipped.append(prediction.instance_id)
            continue
        origin = Origin(spec, line=prediction.line, model=prediction.model)
        candidates.append(Candidate(prediction.instance_id, prediction.patch, origin))
    return candidates, skipped


def _patch_folder(path: Path, spec: str) -> list[Candidate]:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PATCH_SUFFIXES)
    if not files:
        raise UsageError(
            f"INPUT {spec} is a folder with neither *.patch / *.diff files nor a batch's outputs",
            hint="give a folder of patches, a `cwm-agent batch` OUTDIR, or a predictions file",
        )
    candidates = []
    for file in files:
        patch = file.read_bytes().decode("utf-8", "surrogateescape")
        if patch.strip():
            candidates.append(Candidate("", patch, Origin(spec, path=str(file))))
    return candidates
