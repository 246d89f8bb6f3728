"""A scaled run's selection, its pure parts: patch and script identity, the rollouts as
candidates and scripts, CWM's order for the choice, script verdicts, the pool."""

from __future__ import annotations

import json
import threading
import time

import pytest

from cwm_agent.errors import UsageError
from cwm_agent.scaling.pool import DaemonPool
from cwm_agent.scaling.records import Attempt, ReproTest, Rollout
from cwm_agent.scaling.verify import candidates, scripts
from cwm_agent.verification import choice
from cwm_agent.verification.checks import classify
from cwm_agent.verification.identity import normalize_test, patch_hash, script_key
from cwm_agent.verification.records import Candidate as VCandidate
from cwm_agent.verification.records import ExecVerdict, Group, Origin
from cwm_agent.verification.scripts import EVERY, group_scripts, read_tests


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
    trailing = diff(" def add(a, b):\n-    return a - b\n+    return  a +  b   \n", start=2)
    assert patch_hash(trailing) == patch_hash(SPACED)


def test_indentation_changes_a_patchs_identity():
    """In Python indentation decides the block: `h()` inside the `if` and after it are
    two changes (**was**: every whitespace dropped, one group, votes merged)."""
    inside = diff(" def f(x):\n     if x:\n         g()\n+        h()\n", start=2)
    after = diff(" def f(x):\n     if x:\n         g()\n+    h()\n", start=2)
    assert patch_hash(inside) != patch_hash(after)


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


def rollout(attempt: int, patch: str | None, tokens: int = 100) -> Attempt:
    status = "submitted" if patch else "limit"
    return Attempt(Rollout(attempt, status, 0, "", patch, tokens, 3, 1.0, f"a{attempt}.json"))


def test_rollouts_with_a_patch_are_the_candidates(tmp_path):
    runs = [rollout(1, SPACED, 300), rollout(2, None), rollout(3, TIGHT, 200)]
    found = candidates("i-1", runs, tmp_path, "m")
    assert [(c.origin.attempt, c.tokens, c.patch) for c in found] == [(1, 300, SPACED),
                                                                      (3, 200, TIGHT)]  # fmt: skip
    assert found[0].origin == Origin(str(tmp_path), model="m", attempt=1, path="a1.json")


def test_cwms_order_after_votes_is_the_fewest_tokens():
    """Tests passed, then votes, then tokens (no verifier in CWM's pipeline): the larger
    change that cost fewer tokens wins a tie on the rest; with "size" the smaller one."""

    def grp(key: str, votes: int, patch: str, tokens: int) -> Group:
        members = tuple(VCandidate("i", patch, Origin("f"), tokens) for _ in range(votes))
        return Group(key, members, patch)

    small, large = "+a\n", "+a\n+b\n+c\n"
    groups = [grp("cheap-large", 1, large, 100), grp("costly-small", 1, small, 900)]
    by_tokens = choice.decide(choice.rank(groups, prefer="tokens"))
    assert (by_tokens.winner.group.key, by_tokens.decided_by) == ("cheap-large", "tokens")
    assert by_tokens.reason == "the fewest tokens: 100; the next best 900"
    by_size = choice.decide(choice.rank(groups))
    assert (by_size.winner.group.key, by_size.decided_by) == ("costly-small", "size")
    more_votes = [*groups, grp("twice", 2, large, 5000)]
    assert choice.decide(choice.rank(more_votes, prefer="tokens")).decided_by == "votes"
    verdicts = {"costly-small": ExecVerdict("costly-small", "ran", 2, 2)}
    tested = choice.decide(choice.rank(more_votes, None, verdicts, prefer="tokens"))
    assert (tested.winner.group.key, tested.decided_by) == ("costly-small", "tests passed")


def repro(sample: int, code: str, problem: str = "") -> ReproTest:
    key, how = script_key(code)
    return ReproTest(sample, "submitted", 7, 1.0, f"/r/repro-{sample}.json", "test_issue.py",
                     code, key, how, problem=problem)  # fmt: skip


def test_reproduction_tests_are_one_script_per_program_most_votes_first():
    good = "print('Issue resolved' if f() else 'Issue reproduced')\n"
    other = "print('Issue reproduced' if g() else 'Issue resolved')\n"
    tests = [
        repro(1, other),
        repro(2, good),
        repro(3, "print( 'Issue resolved' if f( ) else 'Issue reproduced' )  # the same\n"),
        repro(4, "print('x')\n", problem="filtered out: it never mentions 'Issue reproduced'"),
        ReproTest(5, "limit", 7, 1.0, "/r/repro-5.json", problem="no test was submitted"),
    ]
    found = scripts(tests)
    assert [(s.code, s.votes, s.source) for s in found] == [
        (good, 2, "repro-2.json, repro-3.json"),
        (other, 1, "repro-1.json"),
    ]
    assert found[0].key == script_key(good)[0]


def test_scripts_given_with_tests_and_what_is_left_out(tmp_path):
    one = tmp_path / "check.py"
    one.write_text("print('Issue resolved' if ok() else 'Issue reproduced')\n")
    many = tmp_path / "tests.jsonl"
    many.write_text(json.dumps({"instance_id": "a-1", "code": "print('Other issues')"}) + "\n")
    found = read_tests([str(one), str(many)])
    assert set(found) == {EVERY, "a-1"} and found["a-1"][0].source == f"{many}:1"
    grouped, notes = group_scripts([*found[EVERY], *found["a-1"]])
    assert len(grouped) == 1 and grouped[0].source == str(one)
    assert notes == [f"{many}:1: reproduction script left out: it never mentions "
                     "'Issue reproduced' or 'Issue resolved'"]  # fmt: skip
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"code": "x"}\n')
    with pytest.raises(UsageError, match=f"--tests {bad}:1: no instance_id"):
        read_tests([str(bad)])
    text = tmp_path / "x.txt"
    text.write_text("print('Issue resolved')")
    with pytest.raises(UsageError, match="not a .py or .jsonl file"):
        read_tests([str(text)])


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
