"""Selection logic, free of I/O: grouping, the tests that count, scores and the choice.

As CWM's report describes it (after Agentless):

- Candidates are grouped by patch identity (``identity.patch_hash``); a group's size is
  its vote count (the majority).
- Reproduction tests are grouped by their normalized text (``identity.script_key``);
  only tests that print "Issue reproduced" (and no other verdict) on the unpatched base
  are grouped, and the ``keep`` largest groups count (CWM: the top 5).
- Existing tests: those that pass on the unpatched base count, one check each; a
  candidate passes the ones that still pass with its patch.
- The score is the number of tests passed. Ties go to the patch produced by the most
  attempts, then to the fewest tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cwm_agent.verification import junit

from .records import Candidate, ExistingCount, Group, ReproTest, Score, SuiteRun, TestGroup

SHOWN_REGRESSIONS = 20
NO_REPORT = (
    "the test command wrote no per-test report on the base (it does not run pytest, or "
    "it did not finish): its exit code counts as one check"
)


def group_candidates(candidates: Sequence[Candidate]) -> list[Group]:
    """Groups of candidates with a patch, in the order of their first attempt."""
    keyed: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        if candidate.patch_hash is not None:
            keyed.setdefault(candidate.patch_hash, []).append(candidate)
    return [Group(key, tuple(members)) for key, members in keyed.items()]


def top_tests(tests: Sequence[ReproTest], keep: int) -> list[TestGroup]:
    """The ``keep`` largest groups of tests that reproduce the issue on the base.

    Largest first; between groups of one size, the one whose first sample came first.
    """
    keyed: dict[str, list[ReproTest]] = {}
    for test in tests:
        if test.test_hash is not None and test.base_outcome == "reproduced":
            keyed.setdefault(test.test_hash, []).append(test)
    groups = [
        TestGroup(key, tuple(t.sample for t in members), members[0].code or "")
        for key, members in keyed.items()
    ]
    groups.sort(key=lambda g: (-g.size, g.samples[0]))
    return groups[: max(0, keep)]


def count_existing(base: SuiteRun, run: SuiteRun | None) -> ExistingCount:
    """A candidate's existing-tests checks against the base's (``run`` None: not run)."""
    if base.results is None:  # nothing per test on the base: the exit code is the check
        passed = run is not None and run.outcome == "passed"
        return ExistingCount("exit_code", int(passed), 1, skipped=run is None, note=NO_REPORT)
    counted = junit.passing(base.results)
    if run is None:
        return ExistingCount("per_test", 0, len(counted), skipped=True)
    still = junit.passing(run.results or {})
    lost = sorted(counted - still)
    note = ""
    if run.results is None:
        note = f"no per-test report with this patch (the run {run.outcome}): none counted"
    return ExistingCount(
        "per_test",
        len(counted & still),
        len(counted),
        regressions=tuple(lost[:SHOWN_REGRESSIONS]),
        note=note,
    )


def promise_order(groups: Sequence[Group], repro_passed: Mapping[str, int]) -> list[Group]:
    """Order for running the existing tests: the likeliest winner first (early stop)."""
    return sorted(
        groups,
        key=lambda g: (-repro_passed.get(g.key, 0), -g.votes, g.tokens, g.attempts[0]),
    )


def ranked(scores: Sequence[Score]) -> list[Score]:
    return sorted(scores, key=Score.sort_key)


def choose(
    scores: Sequence[Score], attempts: int, early_stopped: bool = False
) -> tuple[Score, str]:
    """The winning score and the reason, in words, that it won."""
    order = ranked(scores)
    best, rest = order[0], order[1:]
    group, rep = best.group, best.group.representative
    if best.total == 0:
        head = f"attempt {rep.attempt} selected without tests (no existing test passes on "
        head += "the base, and no reproduction test reproduced the issue)"
    else:
        head = f"attempt {rep.attempt} selected: it passes {best.passed} of {best.total} tests"
        head += f" ({_detail(best)})"
    tied = [s for s in rest if s.passed == best.passed]
    if early_stopped:
        decided = "it passed every test, so verification stopped early (--early-stop)"
    elif not rest:
        decided = "it is the only valid distinct patch"
    elif not tied:
        runner = rest[0]
        decided = "the most of any patch (runner-up: attempt "
        decided += f"{runner.group.representative.attempt}, {runner.passed} of {runner.total})"
    elif all(s.group.votes < group.votes for s in tied):
        decided = f"tied on tests passed with {len(tied)} other patch(es); the majority decided"
    else:
        decided = f"tied on tests passed and majority with {len(tied)} other patch(es); "
        decided += "the fewest tokens decided"
    made = f"{group.votes} of {attempts} attempts produced this patch"
    if group.votes > 1:
        attempts_list = ", ".join(map(str, group.attempts))
        made += f" (attempts {attempts_list}; attempt {rep.attempt} used the fewest tokens, "
        made += f"{rep.tokens})"
    else:
        made += f" ({rep.tokens} tokens)"
    return best, f"{head}; {decided}; {made}."


def standing(score: Score, best: Score) -> str:
    """Why a candidate did or did not win, against the winner."""
    if score is best:
        return "selected"
    if score.passed != best.passed:
        return f"fewer tests passed ({score.passed} of {score.total}; the winner {best.passed})"
    if score.group.votes != best.group.votes:
        theirs = f"{score.group.votes}; the winner {best.group.votes}"
        return f"tied on tests passed; fewer votes ({theirs})"
    if score.group.tokens != best.group.tokens:
        theirs = f"{score.group.tokens}; the winner {best.group.tokens}"
        return f"tied on tests passed and votes; more tokens ({theirs})"
    return "tied on tests passed, votes and tokens; the earlier attempt won"


def _detail(score: Score) -> str:
    parts = []
    existing = score.existing
    if existing is not None and existing.mode == "exit_code":
        outcome = "not run" if existing.skipped else "passed" if existing.passed else "failed"
        parts.append(f"the existing test command {outcome} (exit code: no per-test report)")
    elif existing is not None:
        parts.append(
            f"{existing.passed} of the {existing.total} existing tests that pass on the base"
            + (" (not run: early stop)" if existing.skipped else "")
        )
    if score.repro_total:
        parts.append(
            f"{score.repro_passed} of {score.repro_total} reproduction tests print 'Issue resolved'"
        )
    return "; ".join(parts)
