"""Batch inputs as Instances: a JSONL of SWE-bench-style records or a folder of issue files.

Records are read as they come (the official SWE-bench files carry many more fields:
patches, tests, hints); only the fields below are used, the rest is ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cwm_agent.errors import UsageError

ISSUE_SUFFIXES = (".md", ".txt")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Instance:
    instance_id: str
    problem_statement: str
    repo: str | None = None  # "owner/name", resolved against --repos-dir
    base_commit: str | None = None
    image: str | None = None  # the record's own image (SWE-bench Verified files carry one)

    @property
    def dirname(self) -> str:
        """The instance's folder name in OUTDIR: the id, made safe for any filesystem."""
        name = _UNSAFE.sub("_", self.instance_id)
        return "_" + name if name.startswith(".") else name


def load(path: Path) -> list[Instance]:
    """Every instance of INPUT, in file order (JSONL) or name order (folder)."""
    instances = _from_folder(path) if path.is_dir() else _from_jsonl(path)
    _check_unique(instances)
    return instances


def select(instances: list[Instance], pattern: str | None, limit: int | None) -> list[Instance]:
    """``--filter`` (a regex searched in the id), then ``--limit`` (the first N)."""
    if pattern:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise UsageError(f"--filter is not a valid regular expression: {exc}") from exc
        instances = [i for i in instances if regex.search(i.instance_id)]
    return instances[:limit] if limit is not None else instances


def image_from_template(template: str, instance_id: str) -> str:
    """``{instance_id}`` as is; ``{instance_id_1776}`` the way SWE-bench names its images."""
    # Docker image names are lower-case; SWE-bench lower-cases ids for its images too.
    id_1776 = instance_id.replace("__", "_1776_").lower()
    try:
        return template.format(instance_id=instance_id, instance_id_1776=id_1776)
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(
            f"--image-template {template!r} is not a valid template: {exc!r}",
            hint="use the placeholders {instance_id} and {instance_id_1776}",
        ) from exc


def _from_jsonl(path: Path) -> list[Instance]:
    instances = []
    try:
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                if line.strip():
                    instances.append(_from_line(line, f"{path}:{lineno}"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    if not instances:
        raise UsageError(f"{path} holds no records", hint="one JSON object per line")
    return instances


def _from_line(line: str, where: str) -> Instance:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{where}: not valid JSON ({exc})",
            hint="INPUT must be JSONL: one JSON object per line (or a folder of issue files)",
        ) from exc
    if not isinstance(record, dict):
        raise UsageError(f"{where}: a record must be a JSON object")
    instance_id = record.get("instance_id")
    text = record.get("problem_statement")
    if not isinstance(instance_id, str) or not instance_id.strip():
        raise UsageError(f"{where}: the record has no instance_id")
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"{where}: {instance_id} has no problem_statement")
    return Instance(
        instance_id,
        text,
        _optional(record, "repo", where),
        _optional(record, "base_commit", where),
        _optional(record, "image", where),
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
