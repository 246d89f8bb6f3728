"""The group stage: candidates that make the same code change are one group, with votes.

Two candidates are the same change when their patches *without test infrastructure*
(``testinfra.py``) have the same identity (``identity.py``: same files and places, same
added and removed lines, whitespace inside lines and context ignored). So the same fix
written with different added tests is one group: the tests never take part in its
verification anyway. A group's votes are its members.

The representative, the patch a group emits (and whose code change is verified), is the
member that touches no test infrastructure, else any; among those the fewest tokens where
known, then the smallest patch, then the first in input order. Preferring a member
without test changes makes the emitted patch exactly what was verified, and keeps a
conftest.py that forces "passed" out of the predictions file whenever a clean twin exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cwm_agent.verification.identity import patch_hash, short_hash
from cwm_agent.verification.records import Candidate, Group
from cwm_agent.verification.testinfra import Split


@dataclass(frozen=True)
class Entry:
    """A candidate going into the group stage, with its code change."""

    number: int  # 1-based, in input order: how records refer to it
    candidate: Candidate
    split: Split


def group(entries: Sequence[Entry]) -> list[Group]:
    """Groups in the order later stages take them when nothing else tells them apart:
    most votes, then the smallest change, then the first seen."""
    keyed: dict[str, list[Entry]] = {}
    for entry in entries:
        keyed.setdefault(group_key(entry), []).append(entry)
    groups = []
    for key, members in keyed.items():
        ordered = sorted(members, key=_representative_order)
        chosen = ordered[0]
        rest = [m for m in members if m is not chosen]
        groups.append(
            Group(
                key=key,
                members=tuple(m.candidate for m in [chosen, *rest]),
                verify_patch=chosen.split.code,
                stripped=chosen.split.stripped,
            )
        )
    first_seen = {key: n for n, key in enumerate(keyed)}
    groups.sort(key=lambda g: (-g.votes, change_size(g.verify_patch), first_seen[g.key]))
    return groups


def group_key(entry: Entry) -> str:
    """The code change's identity; a change unidiff cannot read is its own group."""
    return patch_hash(entry.split.code) or short_hash(["bytes", entry.candidate.sha256])


def _representative_order(entry: Entry) -> tuple[int, int, int, int]:
    tokens = entry.candidate.tokens
    return (
        1 if entry.split.stripped else 0,
        tokens if tokens is not None else 1 << 62,
        len(entry.candidate.patch),
        entry.number,
    )


def change_size(patch: str) -> int:
    """Lines added or removed (headers aside): the "size" of the choice's last tie-break."""
    size = 0
    for line in patch.splitlines():
        if line.startswith(("+++ ", "--- ")):
            continue
        if line.startswith(("+", "-")):
            size += 1
    return size


def singletons(entries: Sequence[Entry]) -> list[Group]:
    """Without the group stage: every candidate is a group of one, in input order."""
    return [
        Group(f"c{e.number}-{group_key(e)}", (e.candidate,), e.split.code, e.split.stripped)
        for e in entries
    ]
