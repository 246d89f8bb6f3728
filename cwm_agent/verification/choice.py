"""The choice: which group wins, and what decided it, in words.

The order, strongest signal first:

1. **tests passed** (execution): the checks a group's code change passes in a real run:
   impacted existing tests that pass on the base and still pass, and reproduction tests
   that turn from "Issue reproduced" to "Issue resolved". Nothing says more about a patch
   than running it; groups that were run come before those that were not;
2. **reward score**: the verifier model's P(YES), a judgement of the change against the
   issue, cheap but fallible (unscored groups come last);
3. **votes**: how many candidates made the same change: independent samples that agree
   are more often right (majority vote);
4. **size**: the smaller change (lines added and removed), the one with less room for
   collateral damage;
5. input order, so the same inputs always give the same choice.

With ``prefer="tokens"`` (the scaled runs: CWM's order), the fewest tokens spent producing
the change comes before size: tests passed, reward score, votes, tokens, size, input order.

Each signal counts only when its stage ran; ``decided_by`` names the first signal that
separates the winner from the runner-up. When tests decided against a group that was not
run for a budget or a failure (not the lossless early stop), ``decided_by`` says so
(``PARTLY_RUN``): the runner-up might have passed more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cwm_agent.verification.grouping import change_size
from cwm_agent.verification.records import ExecVerdict, Group

ORDER = "tests passed, then reward score, then votes, then size (smaller first), then input order"
TOKENS_ORDER = (
    "tests passed, then reward score, then votes, then tokens (fewest first), then size "
    "(smaller first), then input order"
)
_NO_TOKENS = 1 << 62  # a change whose cost is unknown comes after every known one
TESTS = "tests passed"
PARTLY_RUN = "tests passed, only some groups ran"  # a budget or a failure stopped the rest
EARLY_STOP = "early stop"  # how a lossless stop's reason begins (``execute.py``)


def order(prefer: str = "size") -> str:
    """The order in words, for the record."""
    return TOKENS_ORDER if prefer == "tokens" else ORDER


@dataclass(frozen=True)
class Ranked:
    group: Group
    position: int  # 0-based, as the groups came (the group stage's order)
    tests: int | None = None  # checks passed, for a group that was run
    tests_total: int | None = None
    score: float | None = None
    size: int = 0
    tokens: int | None = None  # the representative's, where known
    by_tokens: bool = False  # fewest tokens before size (CWM's order)
    not_run: str = ""  # why execution did not reach it, where it was meant to run

    @property
    def votes(self) -> int:
        return self.group.votes

    def sort_key(self) -> tuple[int, int, int, float, int, int, int, int]:
        tokens = self.tokens if self.by_tokens and self.tokens is not None else _NO_TOKENS
        return (
            0 if self.tests is not None else 1,
            -(self.tests or 0),
            0 if self.score is not None else 1,
            -(self.score or 0.0),
            -self.votes,
            tokens if self.by_tokens else 0,
            self.size,
            self.position,
        )


@dataclass(frozen=True)
class Decision:
    winner: Ranked | None
    decided_by: str  # tests passed, reward score, votes, tokens, size, input order, ...
    reason: str


def rank(
    groups: Sequence[Group],
    scores: Mapping[str, float | None] | None = None,
    verdicts: Mapping[str, ExecVerdict] | None = None,
    prefer: str = "size",
) -> list[Ranked]:
    """The groups best first (``prefer``: "size", or "tokens" before size)."""
    ranked = []
    for position, group in enumerate(groups):
        verdict = (verdicts or {}).get(group.key)
        ran = verdict is not None and verdict.status == "ran"
        skipped = verdict.reason if verdict is not None and verdict.status == "not_run" else ""
        ranked.append(
            Ranked(
                group,
                position,
                tests=verdict.passed if ran and verdict else None,
                tests_total=verdict.total if ran and verdict else None,
                score=(scores or {}).get(group.key),
                size=change_size(group.verify_patch),
                tokens=group.representative.tokens,
                by_tokens=prefer == "tokens",
                not_run=skipped,
            )
        )
    return sorted(ranked, key=Ranked.sort_key)


def decide(ranked: Sequence[Ranked]) -> Decision:
    if not ranked:
        return Decision(None, "none", "no candidate is left to choose from")
    best = ranked[0]
    if len(ranked) == 1:
        return Decision(best, "only one", "the only group left " + _facts(best))
    second = ranked[1]
    if best.tests is not None and (second.tests is None or best.tests != second.tests):
        if second.tests is not None:
            why = f"passes {best.tests} of {best.tests_total} checks; the next best passes "
            why += str(second.tests)
            return Decision(best, TESTS, why)
        why = f"passes {best.tests} of {best.tests_total} checks; the next best was not run"
        if second.not_run.startswith(EARLY_STOP) or not second.not_run:
            return Decision(best, TESTS, why)
        return Decision(best, PARTLY_RUN, f"{why} ({second.not_run})")
    if best.score is not None and (second.score is None or best.score != second.score):
        other = "has no score" if second.score is None else f"{second.score:.3f}"
        return Decision(best, "reward score", f"reward score {best.score:.3f}; next best {other}")
    if best.votes != second.votes:
        why = f"{best.votes} candidates made this change; the next best {second.votes}"
        return Decision(best, "votes", why)
    if best.by_tokens and best.tokens is not None and best.tokens != second.tokens:
        other = "unknown" if second.tokens is None else f"{second.tokens}"
        return Decision(best, "tokens", f"the fewest tokens: {best.tokens}; the next best {other}")
    if best.size != second.size:
        why = f"the smaller change: {best.size} lines; the next best {second.size}"
        return Decision(best, "size", why)
    return Decision(best, "input order", "a tie on every signal: the first in input order")


def _facts(best: Ranked) -> str:
    facts = [f"{best.votes} vote(s)", f"{best.size} changed lines"]
    if best.score is not None:
        facts.insert(0, f"reward score {best.score:.3f}")
    if best.tests is not None:
        facts.insert(0, f"{best.tests} of {best.tests_total} checks passed")
    return "(" + ", ".join(facts) + ")"
