"""Per-test results of the existing tests: pytest's JUnit XML report, asked for and read.

Why a JUnit report and not pytest's ``-rA`` summary lines: the summary is part of the
command's output, which the runtime bounds (its head and tail are kept, the middle is
cut), so a large suite's lines would be lost; the report is a file, read whole. It is
asked for through ``PYTEST_ADDOPTS``, so it works with any command that runs pytest
(``python3 -m pytest -q``, ``cd src && pytest tests/unit``, a script that calls pytest)
without changing the command; a command that does not run pytest writes no report, and
its exit code is all there is.
"""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping

# Outcomes of one test case in the report.
PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"


def with_report(command: str, report_path: str) -> str:
    """``command`` run in a subshell whose pytest writes its JUnit report to ``report_path``.

    Options the user already put in ``PYTEST_ADDOPTS`` are kept (pytest splits the
    variable like a shell, hence the inner quoting). The newline before ``)`` keeps a
    trailing comment in ``command`` from swallowing it.
    """
    option = shlex.quote(f"--junitxml={report_path}")
    value = f'"${{PYTEST_ADDOPTS:+$PYTEST_ADDOPTS }}"{shlex.quote(option)}'
    return f"( export PYTEST_ADDOPTS={value}\n{command}\n)"


def parse_report(text: str) -> dict[str, str] | None:
    """Test id -> outcome for every test case of a JUnit report; None if it is unreadable.

    The id is ``classname::name`` (pytest: ``tests.test_ops::test_add[1-2]``); a second
    case with the same id (rare: two same-named modules) gets ``#2``. A case with a
    ``failure`` is failed, with an ``error`` (collection, set-up or teardown) is an error,
    with ``skipped`` (skips and expected failures) is skipped, else passed.
    """
    try:
        root = ElementTree.fromstring(text)  # expat >= 2.4 refuses entity bombs
    except ElementTree.ParseError:
        return None  # e.g. pytest was killed while writing it
    results: dict[str, str] = {}
    for case in root.iter("testcase"):
        base = f"{case.get('classname', '')}::{case.get('name', '')}"
        test_id, n = base, 1
        while test_id in results:
            n += 1
            test_id = f"{base}#{n}"
        results[test_id] = _outcome(case)
    return results


def _outcome(case: ElementTree.Element) -> str:
    tags = {child.tag for child in case}
    if "failure" in tags:
        return FAILED
    if "error" in tags:
        return ERROR
    if "skipped" in tags:
        return SKIPPED
    return PASSED


def passing(results: Mapping[str, str]) -> set[str]:
    return {test for test, outcome in results.items() if outcome == PASSED}


def counts(results: Mapping[str, str]) -> dict[str, int]:
    """How many tests had each outcome (for the record)."""
    found = {PASSED: 0, FAILED: 0, ERROR: 0, SKIPPED: 0}
    for outcome in results.values():
        found[outcome] += 1
    return found
