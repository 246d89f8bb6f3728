"""Batch inputs as Instances: SWE-bench-style records (``sources.py``) or a folder of issue
files; the selection flags (``--filter``, ``--shuffle``, ``--slice``, ``--limit``).

Records are read as they come (the official SWE-bench files carry many more fields:
patches, tests, hints); an Instance keeps only the fields below. That is where grading
stays post-hoc: ``test_patch``, ``FAIL_TO_PASS``, ``PASS_TO_PASS`` and the gold ``patch``
never reach the agent, its prompts or the selection of patches (``--attempts`` gets the
record's own test command as plain facts: ``verification.workspace.safe_record``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cwm_agent.errors import UsageError
from cwm_agent.verification.checkout import check_repo_name
from cwm_agent.verification.sources import Placed, Source, read_records
from cwm_agent.verification.store import folder_name
from cwm_agent.verification.workspace import safe_record

ISSUE_SUFFIXES = (".md", ".txt")


@dataclass(frozen=True)
class Instance:
    instance_id: str
    problem_statement: str
    repo: str | None = None  # "owner/name", resolved against --repos-dir
    base_commit: str | None = None
    image: str | None = None  # the record's own image (SWE-bench Verified files carry one)
    # What --attempts' execution may know of the record (its own test command, no tests).
    facts: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def dirname(self) -> str:
        return folder_name(self.instance_id)


@dataclass(frozen=True)
class Selection:
    """``--filter`` (a regex searched in the id), ``--shuffle`` (with ``--seed``), ``--slice``
    (Python's ``A:B``), ``--limit`` (the first N), applied in that order."""

    pattern: str | None = None
    shuffle: bool = False
    seed: int = 0
    slice: str | None = None
    limit: int | None = None


def load(source: Source) -> list[Instance]:
    """Every instance of INPUT, in record order (files, datasets) or name order (folder)."""
    if source.kind == "folder":
        instances = _from_folder(source.path)
        _check_unique(instances)
        return instances
    return from_records(read_records(source))


def from_records(placed: Placed) -> list[Instance]:
    """The agent's view of each record (see the module's docstring); ids must differ."""
    instances = [_from_record(record, where) for where, record in placed]
    _check_unique(instances)
    return instances


def select(instances: list[Instance], selection: Selection) -> list[Instance]:
    if selection.pattern:
        try:
            regex = re.compile(selection.pattern)
        except re.error as exc:
            raise UsageError(f"--filter is not a valid regular expression: {exc}") from exc
        instances = [i for i in instances if regex.search(i.instance_id)]
    if selection.shuffle:  # by id first: the same records in any order shuffle alike
        instances = sorted(instances, key=lambda i: i.instance_id)
        random.Random(selection.seed).shuffle(instances)
    if selection.slice is not None:
        instances = instances[parse_slice(selection.slice)]
    return instances[: selection.limit] if selection.limit is not None else instances


def describe(selection: Selection) -> str:
    """The selection as the flags that made it."""
    parts = [f"--filter {selection.pattern!r}"] if selection.pattern else []
    parts += [f"--shuffle --seed {selection.seed}"] if selection.shuffle else []
    parts += [f"--slice {selection.slice}"] if selection.slice is not None else []
    parts += [f"--limit {selection.limit}"] if selection.limit is not None else []
    return " ".join(parts) or "all"


def parse_slice(text: str) -> slice:
    """``A:B`` or ``A:B:C`` as in Python (each part optional, negatives from the end)."""
    parts = text.split(":")
    try:
        if not 2 <= len(parts) <= 3:
            raise ValueError(text)
        bounds = [int(p) if p.strip() else None for p in parts]
        if len(bounds) == 3 and bounds[2] == 0:
            raise ValueError(text)
    except ValueError:
        raise UsageError(
            f"--slice {text!r} is not a slice",
            hint="give START:STOP as in Python, e.g. 0:50, 100:, -20: (or START:STOP:STEP)",
        ) from None
    return slice(*bounds)


def _from_record(record: dict[str, Any], where: str) -> Instance:
    instance_id = record.get("instance_id")
    text = record.get("problem_statement")
    if not isinstance(instance_id, str) or not instance_id.strip():
        raise UsageError(f"{where}: the record has no instance_id")
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"{where}: {instance_id} has no problem_statement")
    repo = _optional(record, "repo", where)
    return Instance(
        instance_id,
        text,
        None if repo is None else check_repo_name(repo, f"{where} ({instance_id})"),
        _optional(record, "base_commit", where),
        _optional(record, "image", where),
        safe_record(record),
    )


def _optional(record: dict[str, Any], key: str, where: str) -> str | None:
    value = record.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UsageError(f"{where}: {key} must be a string, not {type(value).__name__}")
    return value


def _from_folder(folder: Path) -> list[Instance]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in ISSUE_SUFFIXES)
    if not files:
        raise UsageError(
            f"no issue files in {folder}", hint="put one issue per *.md or *.txt file there"
        )
    instances = []
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            raise UsageError(f"{file} is empty", hint="write the issue in it, or remove it")
        instances.append(Instance(file.stem, text))
    return instances


def _check_unique(instances: list[Instance]) -> None:
    """Each instance owns one folder in OUTDIR: ids (and their folder names) must differ."""
    owners: dict[str, str] = {}
    for instance in instances:
        owner = owners.setdefault(instance.dirname, instance.instance_id)
        if owner != instance.instance_id:
            raise UsageError(
                f"instances {owner!r} and {instance.instance_id!r} would share the folder "
                f"{instance.dirname!r}",
                hint="instance ids must differ in more than punctuation",
            )
    if len(owners) < len(instances):
        ids = [i.instance_id for i in instances]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise UsageError(f"duplicate instance ids in INPUT: {', '.join(dupes[:5])}")
