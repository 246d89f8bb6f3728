"""Per-test results of the existing tests: a real pytest run asked for its JUnit report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cwm_agent.verification import junit

PYTHON = sys.executable

SUITE = """\
import pytest


def test_passes():
    pass


def test_fails():
    assert 1 == 2


@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    assert n == 1


@pytest.mark.skip(reason="not today")
def test_skipped():
    pass


@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False


@pytest.fixture
def broken():
    raise RuntimeError("set-up fails")


def test_setup_error(broken):
    pass


class TestGroup:
    def test_method(self):
        pass
"""


def run_wrapped(command: str, cwd: Path, report: Path, **env: str) -> int:
    script = junit.with_report(command, str(report))
    inherited = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    full_env = {**inherited, "PY": PYTHON, **env}
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=full_env).returncode


def test_every_test_case_and_its_outcome(tmp_path):
    folder = tmp_path / "repo with space"
    (folder / "tests").mkdir(parents=True)
    (folder / "tests" / "test_suite.py").write_text(SUITE)
    report = folder / "report.xml"
    # A command that changes directory and ends with a comment still writes the report;
    # options the user put in PYTEST_ADDOPTS stay in force (-p no:cacheprovider here).
    command = 'cd tests && "$PY" -m pytest -q  # the unit tests'
    code = run_wrapped(command, folder, report, PYTEST_ADDOPTS="-p no:cacheprovider")
    assert code == 1
    assert not (folder / "tests" / ".pytest_cache").exists()
    results = junit.parse_report(report.read_text())
    assert results == {
        "test_suite::test_passes": "passed",
        "test_suite::test_fails": "failed",
        "test_suite::test_param[1]": "passed",
        "test_suite::test_param[2]": "failed",
        "test_suite::test_skipped": "skipped",
        "test_suite::test_expected_failure": "skipped",
        "test_suite::test_setup_error": "error",
        "test_suite.TestGroup::test_method": "passed",
    }
    assert junit.passing(results) == {
        "test_suite::test_passes",
        "test_suite::test_param[1]",
        "test_suite.TestGroup::test_method",
    }
    assert junit.counts(results) == {"passed": 3, "failed": 2, "error": 1, "skipped": 2}


def test_a_command_without_pytest_writes_no_report(tmp_path):
    report = tmp_path / "report.xml"
    assert run_wrapped("echo hello; exit 3", tmp_path, report) == 3
    assert not report.exists()


def test_unreadable_reports_and_repeated_ids():
    assert junit.parse_report("<testsuites><testsuite><testcase") is None  # cut short
    twice = '<testsuite><testcase classname="m" name="t"/><testcase classname="m" name="t">'
    twice += '<failure message="x"/></testcase></testsuite>'
    assert junit.parse_report(twice) == {"m::t": "passed", "m::t#2": "failed"}
    assert junit.parse_report("<testsuites/>") == {}
