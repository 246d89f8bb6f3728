"""Selection logic, free of I/O: patch normalization, test ranking, scoring and the choice.

- Two patches are *the same* when they change the same files at the same places with the
  same added and removed lines, ignoring whitespace inside lines, blank lines and context
  (so `git diff -U3` and `-U5` of one change, or `a+b` vs `a + b`, are one patch).
- Reproduction tests are ranked by *majority of behaviour*: a test's behaviour is its
  verdict on every distinct candidate patch; tests that behave alike vote together, and
  the tests of the largest bloc (by samples) come first.
- A candidate's score is the number of checks it passes: the existing test command (exit
  0) counts as one check, each kept reproduction test printing "Issue resolved" as one.
  Ties go to the patch produced by the most attempts, then to the fewest tokens.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from .records import Candidate, Group, Score


def normalize_patch(patch: str) -> tuple[object, ...]:
    """The whitespace-insensitive identity of a patch (raises ValueError if unparsable)."""
    try:
        parsed = PatchSet(patch)
    except UnidiffParseError as exc:
        raise ValueError(f"unparsable patch: {exc}") from exc
    files: list[object] = []
    for patched in sorted(parsed, key=lambda f: f.path):
        if patched.is_binary_file:
            files.append((patched.path, "binary", str(patched)))
            continue
        hunks = []
        for hunk in patched:
            lines = list(hunk)
            lead = next((i for i, line in enumerate(lines) if line.line_type in "+-"), 0)
            changes = tuple(
                (line.line_type, "".join(line.value.split()))
                for line in lines
                if line.line_type in "+-" and line.value.strip()
            )
            if changes:
                hunks.append((hunk.source_start + lead, changes))
        kind = "added" if patched.is_added_file else "removed" if patched.is_removed_file else ""
        files.append((patched.path, kind, tuple(hunks)))
    return tuple(files)


def short_hash(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def patch_hash(patch: str) -> str | None:
    try:
        return short_hash(normalize_patch(patch))
    except ValueError:
        return None


def code_hash(code: str) -> str:
    """Identity of a test script: trailing spaces and blank lines do not count."""
    lines = [line.rstrip() for line in code.splitlines()]
    return short_hash([line for line in lines if line])


def group_candidates(candidates: Sequence[Candidate]) -> list[Group]:
    """Groups of candidates with a patch, in the order of their first attempt."""
    keyed: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        if candidate.patch_hash is not None:
            keyed.setdefault(candidate.patch_hash, []).append(candidate)
    return [Group(key, tuple(members)) for key, members in keyed.items()]


def rank_tests(
    votes: Mapping[str, int],
    verdicts: Mapping[tuple[str, str], str],
    group_keys: Sequence[str],
    keep: int,
) -> list[tuple[str, int]]:
    """The ``keep`` best tests as (test id, size of its behaviour bloc), best first.

    ``votes``: test id -> samples that wrote it (insertion order = first sample);
    ``verdicts``: (group key, test id) -> the test's verdict on that candidate patch.
    """
    behaviour = {t: tuple(verdicts.get((g, t), "?") for g in group_keys) for t in votes}
    bloc: dict[tuple[str, ...], int] = {}
    for test, signature in behaviour.items():
        bloc[signature] = bloc.get(signature, 0) + votes[test]
    order = {test: i for i, test in enumerate(votes)}
    ranked = sorted(votes, key=lambda t: (-bloc[behaviour[t]], -votes[t], order[t]))
    return [(test, bloc[behaviour[test]]) for test in ranked[: max(0, keep)]]


def promise_order(groups: Sequence[Group], repro_passed: Mapping[str, int]) -> list[Group]:
    """Order for running the existing tests: the likeliest winner first (early stop)."""
    return sorted(
        groups,
        key=lambda g: (-repro_passed.get(g.key, 0), -g.votes, g.tokens, g.attempts[0]),
    )


def choose(
    scores: Sequence[Score], attempts: int, early_stopped: bool = False
) -> tuple[Score, str]:
    """The winning score and the reason, in words, that it won."""
    ranked = sorted(scores, key=Score.sort_key)
    best, rest = ranked[0], ranked[1:]
    group, rep = best.group, best.group.representative
    if best.total == 0:
        head = f"attempt {rep.attempt} selected without checks (no test command, and no "
        head += "reproduction test reproduced the issue)"
    else:
        head = f"attempt {rep.attempt} selected: it passes {best.passed} of {best.total} checks"
        head += f" ({_detail(best)})"
    tied = [s for s in rest if s.passed == best.passed]
    if early_stopped:
        decided = "it passed every check, so verification stopped early (--early-stop)"
    elif not rest:
        decided = "it is the only valid distinct patch"
    elif not tied:
        runner = rest[0]
        decided = "the most of any patch (runner-up: attempt "
        decided += f"{runner.group.representative.attempt}, {runner.passed} of {runner.total})"
    elif all(s.group.votes < group.votes for s in tied):
        decided = f"tied on checks with {len(tied)} other patch(es); the majority decided"
    else:
        decided = f"tied on checks and majority with {len(tied)} other patch(es); "
        decided += "the fewest tokens decided"
    made = f"{group.votes} of {attempts} attempts produced this patch"
    if group.votes > 1:
        attempts_list = ", ".join(map(str, group.attempts))
        made += f" (attempts {attempts_list}; attempt {rep.attempt} used the fewest tokens, "
        made += f"{rep.tokens})"
    else:
        made += f" ({rep.tokens} tokens)"
    return best, f"{head}; {decided}; {made}."


def _detail(score: Score) -> str:
    parts = []
    if score.existing is not None:
        parts.append(f"existing tests {score.existing}")
    if score.repro_total:
        parts.append(
            f"{score.repro_passed} of {score.repro_total} reproduction tests print 'Issue resolved'"
        )
    return "; ".join(parts)
