"""The selection's pure parts: patch identity, test ranking, the choice and its reason."""

from __future__ import annotations

import threading
import time

import pytest

from cwm_agent.scaling.pool import DaemonPool, OnceCache
from cwm_agent.scaling.records import Candidate
from cwm_agent.scaling.repro import extract_test
from cwm_agent.scaling.select import (
    Group,
    Score,
    choose,
    code_hash,
    group_candidates,
    patch_hash,
    promise_order,
    rank_tests,
)
from cwm_agent.scaling.verify import classify


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


def test_code_hash_ignores_trailing_space_and_blank_lines():
    assert code_hash("print(1)\n\nprint(2)  \n") == code_hash("print(1)\nprint(2)\n")
    assert code_hash("print(1)\n") != code_hash("print(2)\n")


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


def test_tests_are_ranked_by_the_size_of_their_behaviour_bloc():
    votes = {"t1": 1, "t2": 1, "t3": 2, "lonely": 2}
    verdicts = {}
    for test in ("t1", "t2", "t3"):  # these three agree: fix p resolves, q does not
        verdicts[("p", test)], verdicts[("q", test)] = "resolved", "reproduced"
    verdicts[("p", "lonely")], verdicts[("q", "lonely")] = "reproduced", "resolved"
    ranked = rank_tests(votes, verdicts, ["p", "q"], keep=3)
    assert ranked == [("t3", 4), ("t1", 4), ("t2", 4)]
    assert rank_tests(votes, verdicts, ["p", "q"], keep=0) == []


def group(key: str, *members: Candidate) -> Group:
    return Group(key, members)


def test_choose_prefers_checks_then_majority_then_tokens():
    a = group("a", candidate(1, "a", 500))
    b = group("b", candidate(2, "b", 900), candidate(3, "b", 800))
    c = group("c", candidate(4, "c", 100))
    best, reason = choose([Score(a, 2, 2, "passed"), Score(b, 1, 2, "passed")], 4)
    assert best.group is a
    assert reason.startswith("attempt 1 selected: it passes 3 of 3 checks")
    assert "the most of any patch (runner-up: attempt 3, 2 of 3)" in reason

    best, reason = choose([Score(a, 2, 2, "failed"), Score(b, 2, 2, "failed")], 4)
    assert best.group is b and best.group.representative.attempt == 3
    assert "the majority decided" in reason
    assert "2 of 4 attempts produced this patch (attempts 2, 3; attempt 3 used the fewest" in reason

    best, reason = choose([Score(a, 1, 1, None), Score(c, 1, 1, None)], 4)
    assert best.group is c and "the fewest tokens decided" in reason

    best, reason = choose([Score(a, 0, 0, None), Score(c, 0, 0, None)], 4)
    assert "selected without checks" in reason


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


def test_the_test_script_is_taken_from_the_submitted_patch():
    patch = (
        "diff --git a/test_issue.py b/test_issue.py\nnew file mode 100644\n"
        "--- /dev/null\n+++ b/test_issue.py\n@@ -0,0 +1,2 @@\n"
        "+import sys\n+print('Issue reproduced')\n"
    ) + SPACED
    assert extract_test(patch) == ("test_issue.py", "import sys\nprint('Issue reproduced')\n")
    with pytest.raises(ValueError, match="does not create test_issue.py"):
        extract_test(SPACED)
    modified = diff(" x = 1\n-y = 2\n+y = 3\n", path="test_issue.py")
    with pytest.raises(ValueError, match="must be a new file"):
        extract_test(modified)


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
