"""The checks of one instance, run in its warm runtime: a patch applied, the impacted
tests run and read test by test, a reproduction script run and its verdict read.

Every execution is recorded (``Run``) for the report. A test run's output and JUnit
report go to the warm runtime's scratch folder (inside ``.git``, where no test looks and
no reset reaches) and are read whole.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cwm_agent.errors import ToolError
from cwm_agent.types import CommandResult

from . import junit
from .applycmds import HARNESS_RESET, apply_commands, apply_patch, without_3way
from .testcmd import TestCommand
from .warm import Warm

REPRO_FILE = "cwm_issue_check.py"  # as --attempts validates it: in the root, not a test_*.py
PATCH_FILE = "candidate.patch"  # in the scratch folder
VERDICTS = {"Issue reproduced": "reproduced", "Issue resolved": "resolved", "Other issues": "other"}
# Whether the tree is a clean checkout of its HEAD (nothing staged, changed or untracked):
# then its index is at the base, and the harness's 3-way merge and reset apply as they are.
CLEAN_CHECKOUT = 'git rev-parse -q --verify HEAD >/dev/null && test -z "$(git status --porcelain)"'
# A change to any of these can change what is built: the record's install runs after
# the patch is applied, before anything else runs.
BUILD_INPUTS = ("setup.py", "setup.cfg", "pyproject.toml", ".pyx", ".pxd", ".c", ".cpp", ".h")
SETUP_CHECKS = ("apply", "install")  # runs that prepare a group's tree: not test runs
EXIT_CODE_TEST = "(the test command's exit status)"
_TAIL = 2000
APPLY_TIMEOUT = 120.0


def classify(output: str, timed_out: bool = False) -> str:
    """A reproduction script's verdict: the one verdict it printed, else "other" (two
    different verdicts are none); "timeout" when it did not finish."""
    if timed_out:
        return "timeout"
    found = {verdict for phrase, verdict in VERDICTS.items() if phrase in output}
    return found.pop() if len(found) == 1 else "other"


def touches_build(paths: Sequence[str]) -> bool:
    return any(path.endswith(BUILD_INPUTS) for path in paths)


def count_test_runs(rows: Iterable[Mapping[str, Any]]) -> int:
    """The runs of tests and scripts among ``Run.row()``s (applies and installs are not)."""
    return sum(row.get("check") not in SETUP_CHECKS for row in rows)


@dataclass(frozen=True)
class Run:
    """One execution: which group, which check, how it ended."""

    group: str  # a group key, or "base"
    check: str  # "existing", "apply", "install", or a reproduction script's key
    command: str
    exit_code: int | None
    outcome: str
    seconds: float
    tests: dict[str, int] | None = None  # outcome -> count, for a test run read per test
    output_tail: str = ""

    def row(self) -> dict[str, Any]:
        return asdict(self)


class Checks:
    """Runs one instance's checks in ``warm``; ``runs`` records every execution."""

    def __init__(
        self,
        warm: Warm,
        command: TestCommand | None,
        files: Sequence[str],
        record: Mapping[str, Any],
        python: str = "python3",
        timeouts: tuple[float, float] = (900.0, 120.0),
        install: str = "",  # the record's install (``TestCommand.install_script``)
    ) -> None:
        self.warm = warm
        self.command = command
        self.install_script = install
        self.files = tuple(files)
        self.record = record
        self.python = python
        self.test_timeout, self.repro_timeout = timeouts
        self.runs: list[Run] = []
        self.clean_checkout: bool | None = None  # the tree at the base is its HEAD, clean

    @property
    def test_runs(self) -> int:
        return count_test_runs(run.row() for run in self.runs)

    def apply(self, group: str, patch: str) -> str | None:
        """Apply ``patch`` to the base as the harness does (``applycmds.apply_patch``); the
        problem when it does not apply."""
        if self.clean_checkout is None:  # asked once, at the base (no group applied yet)
            self.clean_checkout = self.warm.run(CLEAN_CHECKOUT, APPLY_TIMEOUT).exit_code == 0
        commands, _ = apply_commands()
        if not self.clean_checkout:
            commands = without_3way(commands)
        applied = apply_patch(_WarmTarget(self, group, patch), commands)
        if applied.ok:
            return None
        return f"the patch does not apply: {applied.output.strip()[-500:]}"

    def install(self, group: str) -> bool:
        """The record's install of the project (after a change to its build inputs), as a
        step of its own: the tests and the scripts then see the built code. Whether it ran
        (what it changed outside the repository cannot be put back)."""
        if not self.install_script:
            return False
        self._timed(group, "install", self.install_script, self.test_timeout)
        return True

    def tests(self, group: str) -> dict[str, str] | None:
        """The impacted tests' results (test id -> outcome); None when none could be read."""
        assert self.command is not None
        tree = self.warm.tree
        log, report = tree.path("tests.log"), tree.path("junit.xml")
        script = f"rm -f {log} {report}\n" + self.command.script(self.files, log, report)
        result, run = self._timed(group, "existing", script, self.test_timeout, record=False)
        text = self._read(f"{tree.scratch}/tests.log") or ""
        results = self.command.results(text, self._read(f"{tree.scratch}/junit.xml"), self.record)
        if results is None and self.command.kind == "given" and not result.timed_out:
            results = {EXIT_CODE_TEST: junit.PASSED if result.exit_code == 0 else junit.FAILED}
        tally = junit.counts(results) if results is not None else None
        outcome = "timeout" if result.timed_out else "read" if results is not None else "unread"
        tail = text[-_TAIL:] if text else result.output[-_TAIL:]
        self.runs.append(Run(group, "existing", self.command.describe(), result.exit_code,
                             outcome, run, tally, tail))  # fmt: skip
        return results

    def script(self, group: str, key: str, code: str) -> str:
        """A reproduction script's verdict with the tree as it is."""
        tree = self.warm.tree
        tree.box.write_file(REPRO_FILE, code.encode("utf-8", "surrogateescape"))
        command = f"{self.python} {REPRO_FILE}"
        result, _ = self._timed(group, key, command, self.repro_timeout, record=False)
        verdict = classify(result.output, result.timed_out)
        seconds = result.duration
        self.runs.append(Run(group, key, command, result.exit_code, verdict, round(seconds, 3),
                             None, result.output[-_TAIL:]))  # fmt: skip
        return verdict

    def _timed(
        self, group: str, check: str, command: str, timeout: float, record: bool = True
    ) -> tuple[CommandResult, float]:
        started = time.monotonic()
        result = self.warm.run(command, timeout)
        seconds = round(time.monotonic() - started, 3)
        if record:
            outcome = "ok" if result.exit_code == 0 else "failed"
            self.runs.append(Run(group, check, command, result.exit_code, outcome, seconds,
                                 None, result.output[-_TAIL:]))  # fmt: skip
        return result, seconds

    def _read(self, path: str) -> str | None:
        try:
            return self.warm.tree.box.read_file(path).decode("utf-8", "replace")
        except (ToolError, OSError):
            return None


class _WarmTarget:
    """The warm runtime's tree as ``applycmds.apply_patch`` applies to it: each attempt
    recorded; between attempts the harness's own reset on a clean checkout, else the warm
    reset (the snapshot holds what the checkout's HEAD does not)."""

    def __init__(self, checks: Checks, group: str, patch: str) -> None:
        self.checks, self.group, self.patch = checks, group, patch

    def attempt(self, command: str) -> tuple[int, str]:
        tree = self.checks.warm.tree  # after a warm reset, maybe a fresh runtime: write again
        tree.box.write_file(
            f"{tree.scratch}/{PATCH_FILE}", self.patch.encode("utf-8", "surrogateescape")
        )
        full = f"{command} {tree.path(PATCH_FILE)}"
        result, _ = self.checks._timed(self.group, "apply", full, APPLY_TIMEOUT)
        return (result.exit_code if result.exit_code is not None else -1), result.output

    def reset(self) -> None:
        if self.checks.clean_checkout:
            self.checks.warm.run(HARNESS_RESET, APPLY_TIMEOUT)
        else:
            self.checks.warm.reset()
