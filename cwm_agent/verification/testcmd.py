"""How a repository's tests are run on chosen test files, and read test by test.

- SWE-bench records (swebench 5 carries the test command in each record's
  ``eval_script``, between its ``Start Test Output`` / ``End Test Output`` markers, and
  names its log parser in ``log_parser``): the command is that line without the test
  files the record's ``test_patch`` put there (django's ``tests/runtests.py`` takes module
  labels, ``admin_views.tests``; sympy's ``bin/test`` and pytest take paths); the lines
  that set up its environment come first (conda's testbed, django's locale); the output
  goes through the record's swebench parser (``PARSER_REGISTRY``), as the harness grades.
- Anything else: pytest on the files, its JUnit report read whole (``junit.py``); or the
  user's ``--test-cmd``, with the files in place of ``{tests}`` or, without it, as given.

The output goes to a file beside the snapshot, read whole: a runtime bounds what a
command prints, and a verbose django run is larger than that.
"""

from __future__ import annotations

import importlib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from . import junit

START, END = ": '>>>>> Start Test Output'", ": '>>>>> End Test Output'"
DJANGO = "django/django"
# swebench's test-directive rule: files with these endings are not test modules.
_NOT_TESTS = tuple(".json .png csv .txt .md .jpg .jpeg .pkl .yml .yaml .toml".split())
_DIFF_PATH = re.compile(r"^diff --git a/.* b/(.*)$", re.MULTILINE)
# Statuses of swebench's parsers, as the JUnit outcomes junit.py counts.
_STATUS = {"PASSED": "passed", "FAILED": "failed", "ERROR": "error"}
_STATUS |= {"SKIPPED": "skipped", "XFAIL": "skipped"}
PLACEHOLDER = "{tests}"
# A Workspace's record carries the record's test command under this key, never the eval
# script itself: that holds the test patch (the hidden tests) inline.
COMMAND_KEY = "test_command"


@dataclass(frozen=True)
class TestCommand:
    """``kind``: "swebench" (the record's command and parser), "pytest" (the default),
    or "given" (``--test-cmd``; ``selects`` when it has a {tests} placeholder)."""

    kind: str
    command: str  # the test files go after it (or into its {tests})
    preamble: str = ""  # the environment's set-up, run first in the same shell
    install: str = ""  # the record's (re)install of the project, for build changes
    parser: str | None = None  # swebench's log parser
    labels: str = "path"  # how a test file is named to it: "path" or "django"
    selects: bool = True  # whether it can run chosen files (else it runs as given)

    def describe(self) -> str:
        return self.command

    def names(self, files: Sequence[str]) -> list[str]:
        return [django_label(f) for f in files] if self.labels == "django" else list(files)

    def script(self, files: Sequence[str], log: str, report: str, install: bool) -> str:
        """Bash that runs the tests of ``files``, output in ``log``, JUnit in ``report``."""
        names = " ".join(shlex.quote(n) for n in self.names(files))
        if self.selects and PLACEHOLDER in self.command:
            body = self.command.replace(PLACEHOLDER, names)
        else:
            body = f"{self.command} {names}" if self.selects and names else self.command
        if self.parser is None:
            body = junit.with_report(body, report)
        setup = "\n".join(part for part in (self.preamble, self.install if install else "") if part)
        lines = [setup, f"{{ {body}\n}} >{shlex.quote(log)} 2>&1"]
        return "\n".join(line for line in lines if line)

    def results(
        self, log: str, report: str | None, record: Mapping[str, Any]
    ) -> dict[str, str] | None:
        """Test id -> passed / failed / error / skipped; None when nothing could be read."""
        if self.parser is None:
            return junit.parse_report(report) if report else None
        found = parse_swebench_log(self.parser, log, record)
        return found or None


def for_record(
    record: Mapping[str, Any], given: str | None, python: str = "python3"
) -> TestCommand | None:
    """The command for an instance: ``given`` (``--test-cmd``; "" for none), else the
    SWE-bench record's, else pytest."""
    if given == "":
        return None
    if given:
        return TestCommand("given", given, selects=PLACEHOLDER in given)
    if isinstance(record.get(COMMAND_KEY), Mapping):
        return TestCommand(**record[COMMAND_KEY])
    if record.get("eval_script") and record.get("log_parser"):
        found = from_eval_script(record)
        if found is not None:
            return found
    return TestCommand("pytest", f"{shlex.quote(python)} -m pytest -q -p no:cacheprovider -rA")


def from_eval_script(record: Mapping[str, Any]) -> TestCommand | None:
    """The record's test command, set-up and parser; None for a script of another shape."""
    lines = str(record["eval_script"]).splitlines()
    try:
        start = lines.index(START)
    except ValueError:
        return None
    if start + 2 > len(lines) or lines[start + 2] != END:
        return None  # more than one test line: not a shape we can re-aim
    line = lines[start + 1]
    directives = " ".join(test_directives(record))
    if directives and line.endswith(" " + directives):
        command = line[: -len(directives) - 1]
    elif not directives:
        command = line
    else:
        return None
    preamble, install = _setup(lines[:start])
    labels = "django" if record.get("repo") == DJANGO else "path"
    return TestCommand(
        "swebench", command.rstrip(), preamble, install, str(record["log_parser"]), labels
    )


def command_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """``{COMMAND_KEY: ...}``: the record's own test command (set-up, install, parser), for
    a record that must not carry the eval script; ``{}`` where it has none."""
    if not (record.get("eval_script") and record.get("log_parser")):
        return {}
    found = from_eval_script(record)
    return {} if found is None else {COMMAND_KEY: asdict(found)}


def test_directives(record: Mapping[str, Any]) -> list[str]:
    """What the record's eval script names its tests by (swebench's rule)."""
    paths = _DIFF_PATH.findall(str(record.get("test_patch") or ""))
    paths = [p for p in paths if not p.endswith(_NOT_TESTS)]
    if record.get("repo") == DJANGO:
        return [django_label(p) for p in paths]
    return paths


def django_label(path: str) -> str:
    """``tests/admin_views/tests.py`` -> ``admin_views.tests`` (runtests.py's labels)."""
    path = path[: -len(".py")] if path.endswith(".py") else path
    path = path[len("tests/") :] if path.startswith("tests/") else path
    return path.replace("/", ".")


def _setup(lines: list[str]) -> tuple[str, str]:
    """(the environment's set-up, the project's install) from an eval script's head.

    Set-up: the lines before its first git command (activation, cd, locale, exports).
    Install: what runs after its git status/show/diff and before it checks out the test
    files (``python -m pip install -e .``), without the repeated activation.
    """
    body = [line for line in lines if line and not line.startswith(("#!", "set -"))]
    first_git = next((i for i, line in enumerate(body) if line.startswith("git ")), len(body))
    preamble = body[:first_git]
    rest = body[first_git:]
    checkout = next((i for i, line in enumerate(rest) if line.startswith("git checkout")), 0)
    install = [
        line
        for line in rest[:checkout]
        if not line.startswith("git ") and line not in preamble and not line.startswith("cd ")
    ]
    return "\n".join(preamble), "\n".join(install)


def parse_swebench_log(parser: str, log: str, record: Mapping[str, Any]) -> dict[str, str]:
    """swebench's own parser for the record, its statuses as junit.py's outcomes."""
    registry = importlib.import_module("swebench.harness.log_parsers").PARSER_REGISTRY
    # A Workspace's record has no grading fields: the parsers do not read them.
    empty = {"image": "", "eval_type": "pass_and_fail", "eval_script": ""}
    empty |= {"FAIL_TO_PASS": "[]", "PASS_TO_PASS": "[]"}
    spec = importlib.import_module("swebench.harness.utils").make_test_spec(
        {**empty, **record, "log_parser": parser}
    )
    found: dict[str, str] = registry[parser](log, spec)
    return {test: _STATUS.get(status, "failed") for test, status in found.items()}
