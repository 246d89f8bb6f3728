"""Helpers for the select tests (no tests here): a clone with a base commit, SWE-bench-style
records, candidate patches made with git, a scripted verifier."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from batch_support import make_repo
from conftest import git

REPO = "acme/calc"
RIGHT = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return a * b\n"
BROKEN = "def add(a, b):\n    return (a +\n"
# A conftest.py that makes every test report "passed" from the moment it is made: the JUnit
# report, the summary and the exit status all believe it (a candidate grading itself).
FORCING = """import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    made = yield
    made.get_result().outcome = "passed"
"""


def setup(tmp_path: Path, ids: tuple[str, ...] = ("calc-1", "calc-2")) -> dict[str, Any]:
    """``repos/acme__calc`` (base commit with the bug, HEAD fixed upstream), its records,
    and candidate patches against the base."""
    repos = tmp_path / "repos"
    clone = repos / "acme__calc"
    base = make_repo(clone)
    records = tmp_path / "records.jsonl"
    lines = [
        {
            "instance_id": iid,
            "repo": REPO,
            "base_commit": base,
            "version": "1.0",
            "problem_statement": f"[{iid}] add() subtracts instead of adding.",
            "FAIL_TO_PASS": '["secret"]',
        }  # fmt: skip
        for iid in ids
    ]
    records.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return {
        "repos": repos,
        "clone": clone,
        "base": base,
        "records": records,
        "patches": patches(clone, base),
    }


def patches(clone: Path, base: str) -> dict[str, str]:
    work = clone.parent / "work"
    if not work.exists():
        git(clone.parent, "clone", "-q", str(clone), str(work))
    git(work, "checkout", "-q", base)

    def diff(files: dict[str, str], *flags: str) -> str:
        for path, text in files.items():
            (work / path).write_text(text)
        git(work, "add", "-A")
        patch = git(work, "diff", "--cached", *flags)
        git(work, "reset", "-q", "--hard")
        git(work, "clean", "-qfd")
        return patch

    return {
        "right": diff({"calc.py": RIGHT}),
        "right_spaced": diff({"calc.py": RIGHT.replace("a + b", "a+b")}),  # the same change
        "wrong": diff({"calc.py": WRONG}),
        "broken": diff({"calc.py": BROKEN}),
        "forcing_only": diff({"conftest.py": FORCING}),
        "forcing_wrong": diff({"calc.py": WRONG, "conftest.py": FORCING}),
    }


def prediction(iid: str, patch: str, model: str = "m1") -> dict[str, Any]:
    return {"instance_id": iid, "model_name_or_path": model, "model_patch": patch}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def judge(body: dict[str, Any]) -> dict[str, Any]:
    """A verifier: YES (0.9) for a change that adds, NO (P(YES) 0.1) otherwise."""
    content = json.dumps(body)
    p = 0.9 if "+    return a + b" in content else 0.1
    top = {"YES": math.log(p), "NO": math.log(1 - p)}
    first = "YES" if p > 0.5 else "NO"
    return {"logprobs": [{first: top[first], **top}]}
