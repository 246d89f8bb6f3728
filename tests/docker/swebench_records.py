"""SWE-bench records and predictions for the project of the SWE-bench-shaped test image.

The image (``tests/docker/swebench``, built by ``scripts/provision-docker.sh``) holds the
small project ``vercmp`` at /testbed with two bugs; ``swebench-instances/`` beside this
file holds, per bug, the issue text, the tests that grade it (``*.test.patch``), the
reference fix (``*.gold.patch``) and a plausible fix that is wrong (``*.wrong.patch``).
Records come in the official datasets' shape (swebench 5: each carries its image, eval
script, log parser and eval type), so that the official harness and ``cwm-agent
evaluate`` both read them as they are. Used by the tests and ``benchmarks/bench_evaluate.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent / "swebench-instances"
IMAGE = "cwm-agent-swebench:latest"
REPO = "cwm-agent/vercmp"
# /testbed's HEAD in the image: fixed names and dates make it the same on every build.
BASE_COMMIT = "4559278977275953ae526422c9a29df113c6699c"
TEST_FILE = "vercmp/tests.py"
EXISTING_TESTS = [
    f"{TEST_FILE}::test_newest_single_digits",
    f"{TEST_FILE}::test_bump_patch",
    f"{TEST_FILE}::test_bump_major",
]
BUGS = {  # name -> the test its test patch adds (FAIL_TO_PASS)
    "newest": f"{TEST_FILE}::test_newest_two_digit_minor",
    "bump": f"{TEST_FILE}::test_bump_minor_resets_patch",
}
DELIMITER = "EOF_CWM_TEST_PATCH"

# The shape of SWE-bench's eval scripts: activate the env, put the test files back at the
# base, apply the test patch, run the tests between the harness's markers, reset again.
EVAL_SCRIPT = """#!/bin/bash
set -uxo pipefail
source /opt/miniconda3/bin/activate
conda activate testbed
cd /testbed
git config --global --add safe.directory /testbed
git status
git -c core.fileMode=false diff {base}
git checkout {base} {tests}
git apply -v - <<'{delimiter}'
{test_patch}{delimiter}
: '>>>>> Start Test Output'
python -m pytest -rA {tests}
: '>>>>> End Test Output'
git checkout {base} {tests}
"""


def instance_id(n: int) -> str:
    return f"cwm-agent__vercmp-{n}"


def bug_of(n: int) -> str:
    """Instance n's bug: odd numbers are `newest`, even ones `bump`."""
    return "newest" if n % 2 else "bump"


def text(name: str) -> str:
    return (HERE / name).read_text(encoding="utf-8")


def record(n: int, image: str = IMAGE, base_commit: str = BASE_COMMIT) -> dict[str, Any]:
    bug = bug_of(n)
    test_patch = text(f"{bug}.test.patch")
    script = EVAL_SCRIPT.format(
        base=base_commit, tests=TEST_FILE, delimiter=DELIMITER, test_patch=test_patch
    )
    return {
        "repo": REPO,
        "instance_id": instance_id(n),
        "base_commit": base_commit,
        "patch": text(f"{bug}.gold.patch"),
        "test_patch": test_patch,
        "problem_statement": text(f"{bug}.md"),
        "hints_text": "",
        "created_at": "2024-01-01T00:00:00Z",
        "version": "0.1",
        "FAIL_TO_PASS": json.dumps([BUGS[bug]]),
        "PASS_TO_PASS": json.dumps(EXISTING_TESTS),
        "environment_setup_commit": base_commit,
        "image": image,
        "eval_script": script,
        "log_parser": "parse_log_pytest",
        "eval_type": "pass_and_fail",
    }


def records(count: int = 2, image: str = IMAGE) -> list[dict[str, Any]]:
    return [record(n, image) for n in range(1, count + 1)]


def prediction(n: int, kind: str, model: str = "m") -> dict[str, Any]:
    """``kind``: gold (resolves), wrong (applies, tests fail), empty, or garbage (no diff)."""
    patches = {
        "gold": lambda: text(f"{bug_of(n)}.gold.patch"),
        "wrong": lambda: text(f"{bug_of(n)}.wrong.patch"),
        "empty": lambda: "",
        "garbage": lambda: "this is not a diff\n",
    }
    patch = patches[kind]()
    return {"instance_id": instance_id(n), "model_name_or_path": model, "model_patch": patch}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
