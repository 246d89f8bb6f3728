"""The selection's pure parts: patch and script identity, the tests that count, the choice."""

from __future__ import annotations

import threading
import time

import pytest

from cwm_agent.scaling.pool import DaemonPool, OnceCache
from cwm_agent.scaling.records import Candidate, ExistingCount, Group, ReproTest, Score, SuiteRun
from cwm_agent.scaling.select import (
    choose,
    count_existing,
    group_candidates,
    promise_order,
    standing,
    top_tests,
)
from cwm_agent.scaling.verify import classify
from cwm_agent.verification.identity import normalize_test, patch_hash, script_key


def diff(body: str, start: int = 1, path: str = "pkg/mod.py") -> str:
    lines = body.splitlines(keepends=True)
    old = sum(not line.startswith("+") for line in lines)
    new = sum(not line.startswith("-") for line in lines)
    head = f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n"
    return head + f"@@ -{start},{old} +{start},{new} @@\n" + body


# The same change to a module whose line 1 is a docstring, with 1 and 2 lines of context.
SPACED = diff(" def add(a, b):\n-    return a - b\n+    return a + b\n", start=2)
TIGHT = diff(" def add(a, b):\n-    return a - b\n+    return a+b\n", start=2)
MORE_CONTEXT = diff(' """Math."""\n def add(a, b):\n-    return a - b\n+    return a + b\n \n')


def test_whitespace_and_context_do_not_change_a_patchs_identity():
    assert patch_hash(SPACED) == patch_hash(TIGHT) == patch_hash(MORE_CONTEXT)
    other_change = diff(" def add(a, b):\n-    return a - b\n+    return b\n", start=2)
    assert patch_hash(SPACED) != patch_hash(other_change)
    elsewhere = diff(" def add(a, b):\n-    return a - b\n+    return a + b\n", start=40)
    assert patch_hash(SPACED) != patch_hash(elsewhere)  # same lines, another place
    other_file = SPACED.replace("pkg/mod.py", "pkg/other.py")
    assert patch_hash(SPACED) != patch_hash(other_file)


SCRIPT = '''"""Check add()."""
from mathlib.ops import add  # the function of the issue


def check():
    """Two and three."""
    if add(2, 3) == 5:
        print("Issue resolved")
    else:
        print("Issue reproduced")


check()
'''
# The same program: other comments and docstrings, other quotes, spacing and line breaks.
SAME_PROGRAM = """from mathlib.ops import add
def check():
    # no docstring here
    if add(2,3)==5: print('Issue resolved')
    else:
        print( 'Issue reproduced' )
check()
"""


def test_scripts_are_the_same_when_their_syntax_trees_are():
    assert script_key(SCRIPT) == script_key(SAME_PROGRAM)
    assert script_key(SCRIPT)[1] == "ast"
    other = SAME_PROGRAM.replace("add(2,3)==5", "add(2,3)==6")
    assert script_key(other) != script_key(SCRIPT)
    other_message = SAME_PROGRAM.replace("'Issue resolved'", "'Issue resolved!'")
    assert script_key(other_message) != script_key(SCRIPT)
    # A string that is not a docstring (the first statement of no body) still counts.
    assert script_key('x = 1\n"text"\n') != script_key("x = 1\n")
    # A def whose body was only a docstring.
    assert normalize_test('def f():\n    """Doc."""\n') == ("ast", "def f():\n    pass")


def test_a_script_that_does_not_parse_is_compared_by_its_whitespace_normalized_text():
    py2 = 'print "Issue reproduced"\n\nif  x :\n    print  "Issue resolved"   \n'
    assert normalize_test(py2) == (
        "text",
        'print "Issue reproduced"\nif x :\nprint "Issue resolved"',
    )
    assert script_key(py2) == script_key(py2.replace("    ", "\t") + "\n\n")
    assert script_key(py2)[1] == "text"
    assert script_key(py2) != script_key(py2.replace("x", "y"))


def candidate(attempt: int, key: str | None, tokens: int = 100) -> Candidate:
    return Candidate(
        attempt, "submitted", 0, "", "patch" if key else None, tokens, 3, 1.0, "t.json", key
    )


def test_groups_and_their_representative():
    groups = group_candidates(
        [candidate(1, "a", 300), candidate(2, None), candidate(3, "b"), candidate(4, "a", 200)]
    )
    assert [(g.key, g.attempts) for g in groups] == [("a", [1, 4]), ("b", [3])]
    assert groups[0].representative.attempt == 4 and groups[0].votes == 2


def repro(sample: int, code: str, base: str | None = "reproduced") -> ReproTest:
    key, how = script_key(code)
    path = "test_issue.py"
    return ReproTest(sample, "submitted", 7, 1.0, "r.json", path, code, key, how, base_outcome=base)


def test_the_largest_groups_of_reproducing_tests_are_kept():
    a, b, c, d = "print('a')\n", "print('b')\n", "print('c')\n", "print('d')\n"
    tests = [
        repro(1, b),
        repro(2, a),
        repro(3, "print( 'a' )  # the same as 2\n"),
        repro(4, c, base="resolved"),  # does not reproduce the issue on the base
        repro(5, c, base="resolved"),
        repro(6, c, base="resolved"),
        repro(7, d),
        repro(8, "x", base=None),  # not run (filtered out)
        ReproTest(9, "limit", 7, 1.0, "r9.json", problem="no test was submitted"),
    ]
    kept = top_tests(tests, keep=2)
    assert [(t.samples, t.code) for t in kept] == [((2, 3), a), ((1,), b)]  # ties: first sample
    assert [t.size for t in top_tests(tests, keep=5)] == [2, 1, 1]
    assert top_tests(tests, keep=0) == []


def test_existing_tests_count_those_that_pass_on_the_base():
    base = SuiteRun(
        "failed", {"t::a": "passed", "t::b": "passed", "t::c": "failed", "t::d": "skipped"}
    )
    right = SuiteRun(
        "failed", {"t::a": "passed", "t::b": "passed", "t::c": "passed", "t::d": "passed"}
    )
    wrong = SuiteRun("failed", {"t::a": "passed", "t::b": "failed", "t::c": "failed"})
    assert count_existing(base, right) == ExistingCount("per_test", 2, 2)
    assert count_existing(base, wrong) == ExistingCount("per_test", 1, 2, regressions=("t::b",))
    crashed = count_existing(base, SuiteRun("timeout", None))
    assert (crashed.passed, crashed.total, crashed.regressions) == (0, 2, ("t::a", "t::b"))
    assert "no per-test report with this patch (the run timeout)" in crashed.note
    assert count_existing(base, None) == ExistingCount("per_test", 0, 2, skipped=True)


def test_without_a_report_on_the_base_the_exit_code_is_one_check():
    base = SuiteRun("failed", None)
    passed = count_existing(base, SuiteRun("passed", None))
    assert (passed.mode, passed.passed, passed.total) == ("exit_code", 1, 1)
    assert "exit code counts as one check" in passed.note
    assert count_existing(base, SuiteRun("failed", {"t::a": "passed"})).passed == 0
    assert count_existing(base, None).skipped


def group(key: str, *members: Candidate) -> Group:
    return Group(key, members)


def existing(passed: int, total: int) -> ExistingCount:
    return ExistingCount("per_test", passed, total)


def verdicts(*outcomes: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"t{n}", outcome) for n, outcome in enumerate(outcomes))


def test_choose_prefers_tests_passed_then_majority_then_tokens():
    a = group("a", candidate(1, "a", 500))
    b = group("b", candidate(2, "b", 900), candidate(3, "b", 800))
    c = group("c", candidate(4, "c", 100))
    # The count of tests decides, not all-or-nothing: 9 of 10 existing tests beat 7 of 10.
    sa, sb = (
        Score(a, verdicts("resolved"), existing(9, 10)),
        Score(b, verdicts("resolved"), existing(7, 10)),
    )
    best, reason = choose([sb, sa], 4)
    assert best.group is a
    assert reason.startswith("attempt 1 selected: it passes 10 of 11 tests")
    assert "9 of the 10 existing tests that pass on the base" in reason
    assert "1 of 1 reproduction tests print 'Issue resolved'" in reason
    assert "the most of any patch (runner-up: attempt 3, 8 of 11)" in reason
    assert standing(sb, best) == "fewer tests passed (8 of 11; the winner 10)"

    tied = [
        Score(a, verdicts("resolved", "reproduced"), None),
        Score(b, verdicts("reproduced", "resolved"), None),
    ]
    best, reason = choose(tied, 4)
    assert best.group is b and best.group.representative.attempt == 3
    assert "the majority decided" in reason
    assert "2 of 4 attempts produced this patch (attempts 2, 3; attempt 3 used the fewest" in reason
    assert standing(tied[0], best) == "tied on tests passed; fewer votes (1; the winner 2)"

    best, reason = choose(
        [Score(a, verdicts("resolved"), None), Score(c, verdicts("resolved"), None)], 4
    )
    assert best.group is c and "the fewest tokens decided" in reason

    best, reason = choose([Score(a, (), existing(0, 0)), Score(c, (), None)], 4)
    assert "selected without tests" in reason

    fallback = ExistingCount("exit_code", 1, 1)
    best, reason = choose(
        [Score(a, (), fallback), Score(c, (), ExistingCount("exit_code", 0, 1))], 4
    )
    assert best.group is a and "the existing test command passed (exit code" in reason


def test_promise_order_puts_the_likeliest_winner_first():
    a = group("a", candidate(1, "a"))
    b = group("b", candidate(2, "b"), candidate(3, "b"))
    assert [g.key for g in promise_order([a, b], {"a": 1, "b": 1})] == ["b", "a"]
    assert [g.key for g in promise_order([a, b], {"a": 2, "b": 1})] == ["a", "b"]


@pytest.mark.parametrize(
    ("output", "verdict"),
    [
        ("Issue reproduced\n", "reproduced"),
        ("add(2, 3) = -1\nIssue reproduced: wrong sum\n", "reproduced"),
        ("case 1: Issue reproduced\ncase 2: Issue reproduced\n", "reproduced"),  # per case
        ("  Issue resolved\n", "resolved"),
        ("Other issues\n", "other"),
        ("Traceback (most recent call last):\nImportError\n", "other"),
        ("Issue reproduced\nIssue resolved\n", "other"),  # two verdicts: not trusted
    ],
)
def test_verdicts(output, verdict):
    assert classify(output) == verdict


def test_a_timeout_is_its_own_verdict():
    assert classify("Issue reproduced\n", timed_out=True) == "timeout"


def test_once_cache_runs_a_key_once_across_threads():
    calls = []

    def slow() -> int:
        calls.append(1)
        time.sleep(0.05)
        return 42

    cache = OnceCache()
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get("k", slow))) for _ in "1234"
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [42] * 4 and len(calls) == 1 and cache.hits == 3


def test_daemon_pool_runs_jobs_and_cancels_pending_ones():
    gate = threading.Event()
    with DaemonPool(1) as pool:
        first = pool.submit(gate.wait, 5)
        second = pool.submit(lambda: "never")
        failing = pool.submit(lambda: 1 / 0)
        while not first.running():
            time.sleep(0.001)
        pool.cancel_pending()  # the first is running already: it finishes
        gate.set()
        assert first.result() is True
    assert second.cancelled() and failing.cancelled()
    with DaemonPool(2) as pool:
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result()
