"""Reproduction scripts, wherever they come from, as the execution stage takes them.

A reproduction script prints "Issue reproduced", "Issue resolved" or "Other issues" (CWM's
test-generation format). They come from:

- ``--tests FILE`` (select): a ``.py`` file is one script for every instance; a ``.jsonl``
  file holds one ``{"instance_id": ..., "code": ...}`` object a line (any number per
  instance);
- a `cwm-agent batch` folder's reproduction rollouts (``repro-N.json``: the test the
  rollout counted), the companions of its ``--attempts`` candidates;
- a scaled run's own reproduction rollouts.

As CWM's test-generation environment filters them, a script that never mentions both
"Issue reproduced" and "Issue resolved" cannot tell a fix from the bug and is left out
(said in a note). Scripts that are the same program (``identity.script_key``) are one
``ReproScript`` whose votes are their number; most votes first, then first seen: the
execution stage counts the largest groups first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cwm_agent.errors import UsageError
from cwm_agent.verification import layout
from cwm_agent.verification.identity import script_key
from cwm_agent.verification.records import ReproScript

PHRASES = ("Issue reproduced", "Issue resolved")
EVERY = ""  # the instance id of a script given for every instance
TESTS_HINT = (
    'a .py script (for every instance) or a .jsonl file of {"instance_id": ..., "code": ...} '
    "lines, each script printing 'Issue reproduced', 'Issue resolved' or 'Other issues'"
)


@dataclass(frozen=True)
class Written:
    """One script as it was written, and where (a rollout's trajectory, FILE:LINE)."""

    code: str
    source: str


def problem(code: str) -> str:
    """Why a script cannot decide between candidates ("": it can)."""
    missing = [p for p in PHRASES if p not in code]
    if missing:
        return f"it never mentions {' or '.join(map(repr, missing))}"
    return ""


def group_scripts(written: Iterable[Written]) -> tuple[tuple[ReproScript, ...], list[str]]:
    """(the scripts that can decide, one per program, most votes first; notes on the rest)."""
    groups: dict[str, list[Written]] = {}
    notes = []
    for item in written:
        why = problem(item.code)
        if why:
            notes.append(f"{item.source}: reproduction script left out: {why}")
            continue
        key, _ = script_key(item.code)
        groups.setdefault(key, []).append(item)
    ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))  # stable: first seen first
    scripts = tuple(
        ReproScript(key, items[0].code, len(items), ", ".join(i.source for i in items))
        for key, items in ordered
    )
    return scripts, notes


def from_rollout(trajectory: Path) -> str | None:
    """The test a reproduction rollout counted (``layout.REPRO_TEST``: also one taken from
    the working tree), else (an older trajectory) the one it submitted last."""
    try:
        data = json.loads(trajectory.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    kept = data.get(layout.REPRO_TEST)
    submissions = data.get("submissions")
    if isinstance(kept, dict):
        last = kept
    elif isinstance(submissions, list) and submissions:
        last = submissions[-1]
    else:
        return None
    test = last.get("test") if isinstance(last, dict) else None
    return test if isinstance(test, str) and test.strip() else None


def read_tests(specs: Sequence[str]) -> dict[str, list[Written]]:
    """``--tests FILE...``: instance id (``EVERY`` for all) -> its scripts, in file order."""
    found: dict[str, list[Written]] = {}
    for spec in specs:
        path = Path(spec).expanduser()
        try:
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as exc:
            raise UsageError(f"--tests {spec}: cannot read it ({exc})", hint=TESTS_HINT) from None
        if path.suffix.lower() == ".py":
            found.setdefault(EVERY, []).append(Written(text, spec))
        elif path.suffix.lower() == ".jsonl":
            for iid, written in _jsonl(text, spec):
                found.setdefault(iid, []).append(written)
        else:
            raise UsageError(f"--tests {spec}: not a .py or .jsonl file", hint=TESTS_HINT)
    return found


def _jsonl(text: str, spec: str) -> Iterable[tuple[str, Written]]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{spec}:{number}"
        try:
            item: Any = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"--tests {where}: not valid JSON ({exc})", hint=TESTS_HINT) from None
        if not isinstance(item, dict) or not isinstance(item.get("code"), str):
            raise UsageError(f"--tests {where}: no code (a string)", hint=TESTS_HINT)
        iid = item.get("instance_id")
        if not isinstance(iid, str) or not iid:
            raise UsageError(f"--tests {where}: no instance_id", hint=TESTS_HINT)
        yield iid, Written(item["code"], where)
