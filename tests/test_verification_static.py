"""The static and group stages on real git repositories: what they prune, and why."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import git, snapshot
from unidiff import PatchSet

from cwm_agent.verification import pycheck, static
from cwm_agent.verification.basecode import GitBase
from cwm_agent.verification.grouping import Entry, group
from cwm_agent.verification.records import Candidate, Origin
from cwm_agent.verification.testinfra import is_test_path, split_patch

CALC = '''\
"""A small calculator."""


class Calc:
    def add(self, a, b):
        return a - b

    def scale(self, values, factor):
        return [v * factor for v in values]


def helper(x):
    return x
'''
FILLER = "".join(f"key{n} = {n}\n" for n in range(10))
SETUP_CFG = f"[metadata]\nname = calc\n{FILLER}\n[tool:pytest]\naddopts = -q\n"
PY2 = "print 'hello'\n"


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "tests").mkdir(parents=True)
    (repo / "calc.py").write_text(CALC)
    (repo / "old.py").write_text(PY2)
    (repo / "setup.cfg").write_text(SETUP_CFG)
    (repo / "tests" / "test_calc.py").write_text("def test_add():\n    assert True\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def _diff(repo: Path, changes: dict[str, str], *flags: str) -> str:
    """The patch of ``changes`` (path -> new text) against HEAD; the repo is put back."""
    for path, text in changes.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git(repo, "add", "-A")
    patch = git(repo, "diff", "--cached", *flags)
    git(repo, "reset", "-q", "--hard")
    git(repo, "clean", "-qfd")
    return patch


FIX = CALC.replace("return a - b", "return a + b")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return _repo(tmp_path)


def _check(repo: Path, patch: str) -> static.StaticResult:
    with GitBase(repo, "HEAD") as base:
        return static.check(patch, base, "no base")


def _statuses(result: static.StaticResult) -> dict[str, str]:
    return {c.name: c.status for c in result.checks}


def test_a_good_patch_passes_every_check_and_the_clone_is_not_written(repo):
    patch = _diff(repo, {"calc.py": FIX})
    before = snapshot(repo)
    result = _check(repo, patch)
    assert snapshot(repo) == before
    assert result.passed
    assert _statuses(result) == dict.fromkeys(
        ["parse", "nonempty", "non_test", "apply", "compile"], "pass"
    )
    assert "git apply --verbose" in result.checks[3].reason


def test_what_the_static_stage_prunes(repo):
    add = "    def add(self, a, b):\n        return a - b\n\n"
    moved = CALC.replace(add, "").replace("\n\n\ndef helper", "\n\n" + add + "\ndef helper")
    assert moved != CALC  # the same lines in another order: not whitespace-only
    assert static.check(_diff(repo, {"calc.py": moved}), None, "").checks[1].status == "pass"
    broken = CALC.replace("return a - b", "return a +")
    whitespace = CALC.replace("return a - b", "return a - b   ") + "\n\n"
    cases = {
        "parse": "this is not a patch\n",
        "nonempty": _diff(repo, {"calc.py": whitespace}),
        "non_test": _diff(repo, {"tests/conftest.py": "x = 1\n", "tests/test_calc.py": "\n"}),
        "compile": _diff(repo, {"calc.py": broken}),
    }
    for name, patch in cases.items():
        failure = _check(repo, patch).failure
        assert failure is not None and failure.name == name, (name, failure)
    assert "calc.py:6: SyntaxError" in _check(repo, cases["compile"]).failure.reason


def test_a_patch_that_does_not_apply_is_pruned_and_one_already_applied_says_so(repo):
    patch = _diff(repo, {"calc.py": FIX})
    # Without its index line: --3way could otherwise rebuild it from the blobs _diff left.
    other = re.sub(r"(?m)^index .*\n", "", patch).replace(
        "-        return a - b", "-        return a * b"
    )
    assert _check(repo, other).failure.name == "apply"
    (repo / "calc.py").write_text(FIX)
    git(repo, "commit", "-qam", "fixed")
    failure = _check(repo, patch).failure
    assert failure.name == "apply" and "already applied" in failure.reason


def test_the_harness_fallbacks_apply_a_patch_git_apply_refuses(repo):
    # A context line that differs from the base: git apply refuses it (so does --3way
    # without the blob), patch --fuzz applies it, as SWE-bench's harness would.
    patch = _diff(repo, {"calc.py": FIX}).replace(
        "     def add(self, a, b):", "     def add(self, a, b):  # changed context"
    )
    result = _check(repo, patch)
    assert result.passed, result.failure
    assert "patch --batch --forward --fuzz=5" in result.checks[3].reason


def test_a_file_that_does_not_compile_at_the_base_is_not_held_against_the_patch(repo):
    patch = _diff(repo, {"old.py": "print 'hello, world'\n", "calc.py": FIX})
    result = _check(repo, patch)
    assert result.passed
    assert _statuses(result)["compile"] == "not_checked"
    assert "old.py (does not compile at the base" in result.checks[-1].reason


def test_without_base_code_apply_is_not_checked_and_new_files_still_compile(repo):
    patch = _diff(repo, {"calc.py": FIX, "extra.py": "def f(:\n"})
    result = static.check(patch, None, "no clone of this repository: pass --repos-dir")
    assert _statuses(result)["apply"] == "not_checked"
    assert result.checks[3].reason == "no clone of this repository: pass --repos-dir"
    assert result.failure is not None and result.failure.name == "compile"
    fine = static.check(_diff(repo, {"calc.py": FIX}), None, "no base")
    assert fine.passed and _statuses(fine)["compile"] == "not_checked"


def test_test_infrastructure_is_split_off_byte_for_byte(repo):
    cfg = SETUP_CFG.replace("addopts = -q", "addopts = -q -p no:cacheprovider -k 'not add'")
    cfg = cfg.replace("name = calc", "name = calc2")
    patch = _diff(
        repo,
        {"calc.py": FIX, "conftest.py": "import pytest\n", "setup.cfg": cfg},
    )
    with GitBase(repo, "HEAD") as base:
        split = split_patch(patch, PatchSet(patch), base.text)
    assert split.stripped == ("conftest.py", "setup.cfg [tool:pytest]")
    assert split.code_files == ("calc.py", "setup.cfg")
    assert "+name = calc2" in split.code and "addopts" not in split.code
    calc_section = patch[patch.index("diff --git a/calc.py") : patch.index("diff --git a/conftest")]
    assert calc_section in split.code


def test_a_setup_cfg_hunk_whose_section_needs_the_base_file(repo):
    cfg = SETUP_CFG.replace("key5 = 5", "key5 = 50")  # no section header in the hunk
    patch = _diff(repo, {"setup.cfg": cfg})
    with GitBase(repo, "HEAD") as base:
        assert split_patch(patch, PatchSet(patch), base.text).stripped == ()
    unknown = split_patch(patch, PatchSet(patch), None)
    assert unknown.stripped == ("setup.cfg (a section that cannot be told without the base file)",)
    assert unknown.code == ""


@pytest.mark.parametrize(
    ("path", "is_test"),
    [
        ("conftest.py", True),
        ("pkg/tests/helpers.py", True),
        ("tests/runtests.py", True),
        ("pkg/test_mod.py", True),
        ("pkg/mod_test.py", True),
        ("tox.ini", True),
        ("django/test/runner.py", True),
        ("src/_pytest/unittest.py", False),
        ("sympy/utilities/randtest.py", False),
        ("pkg/contest.py", False),
        ("setup.cfg", False),
    ],
)
def test_what_counts_as_test_infrastructure(path, is_test):
    assert is_test_path(path) is is_test


def test_the_changed_block_is_compiled_and_the_whole_file_decides_otherwise():
    before = CALC.encode()
    in_method = CALC.replace("return a - b", "return (a +").encode()
    assert pycheck.syntax_error(in_method, before, "calc.py").startswith("calc.py:")
    block = pycheck.changed_block(before, CALC.replace("a - b", "a + b").encode())
    assert block is not None and block.strip() == b"def add(self, a, b):\n    return a + b"
    # A block that cannot stand alone (nonlocal needs its function): the whole file decides.
    outer = "def f():\n    x = 1\n    def g():\n        nonlocal x\n        x = 2\n    return g\n"
    changed = outer.replace("x = 2", "x = 3")
    assert pycheck.syntax_error(changed.encode(), outer.encode(), "m.py") is None
    top = "import os\n" + CALC
    assert pycheck.syntax_error(("import os,\n" + CALC).encode(), top.encode(), "c.py")


def _entry(n: int, patch: str, tokens: int | None = None) -> Entry:
    candidate = Candidate("i-1", patch, Origin("preds.jsonl", line=n), tokens)
    return Entry(n, candidate, split_patch(patch, PatchSet(patch)))


def test_the_same_fix_with_different_tests_is_one_group_emitted_without_its_tests(repo):
    plain = _diff(repo, {"calc.py": FIX})
    with_test = _diff(repo, {"calc.py": FIX, "tests/test_new.py": "def test_x():\n    pass\n"})
    forcing = _diff(repo, {"calc.py": FIX, "conftest.py": "# everything passes\n"})
    wider = _diff(repo, {"calc.py": FIX}, "-U8")
    other = _diff(repo, {"calc.py": CALC.replace("return a - b", "return b + a")})
    groups = group(
        [_entry(1, with_test, 5), _entry(2, forcing, 1), _entry(3, other), _entry(4, wider, 9)]
        + [_entry(5, plain, 9)]
    )
    assert [g.votes for g in groups] == [4, 1]
    top = groups[0]
    # No test changes first (wider and plain), then fewest tokens (a tie), then smallest.
    assert top.representative.origin.line == 5
    assert top.stripped == () and top.verify_patch == plain
    assert [c.origin.line for c in top.members] == [5, 1, 2, 4]


def test_the_three_way_fallback_reads_the_clones_objects(tmp_path):
    """A patch made on a later commit: its context differs from the base, but its blob is in
    the clone, so `git apply --3way` (before patch --fuzz, as the harness orders them)
    merges it in the scratch repository that borrows the clone's objects."""
    repo = tmp_path / "repo"
    repo.mkdir()
    lines = [f"x{n} = {n}\n" for n in range(1, 13)]
    (repo / "m.py").write_text("".join(lines))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    base = git(repo, "rev-parse", "HEAD").strip()
    later = [*lines]
    later[4] = "x5 = 50\n"
    (repo / "m.py").write_text("".join(later))
    git(repo, "commit", "-qam", "later")
    changed = [*later]
    changed[6] = "x7 = 70\n"
    patch = _diff(repo, {"m.py": "".join(changed)})
    with GitBase(repo, base) as scratch:
        result = static.check(patch, scratch, "")
    assert result.passed, result.failure
    assert result.checks[3].reason == "applies with `git apply --verbose --3way`"
