"""Running the checks: candidate patches and reproduction tests in their own runtimes.

Each distinct candidate patch gets one runtime (a fresh copy of the base with the patch
applied), kept open while the selection needs it; each run on the unpatched base (a
reproduction test, the existing tests) gets a fresh runtime of its own. Every execution
is cached by (patch, test), so identical patches and identical tests are run once.
"""

from __future__ import annotations

import posixpath
import threading
import time
from dataclasses import dataclass
from typing import Any

from cwm_agent.errors import PatchError, ToolError
from cwm_agent.factory import open_runtime
from cwm_agent.settings import RunSettings
from cwm_agent.types import Runtime
from cwm_agent.verification import junit

from .pool import OnceCache
from .records import Group, ReproTest, SuiteRun, TestGroup, TestRun

REPRO_FILE = "cwm_issue_check.py"  # matches neither test_*.py nor *_test.py: pytest skips it
PATCH_FILE = ".cwm-candidate.patch"
VERDICTS = {"Issue reproduced": "reproduced", "Issue resolved": "resolved", "Other issues": "other"}
# What makes the default test command apply: a tests folder or pytest-named files at the base.
_HAS_TESTS = r"(^|/)(tests?|testing)/|(^|/)test_[^/]*\.py$|_test\.py$"
# Not -x: every test must run for the per-test count. No cache folder in the copy.
DEFAULT_TEST_CMD = "python3 -m pytest -q -p no:cacheprovider"
_TAIL = 2000


def classify(output: str, timed_out: bool = False) -> str:
    """A reproduction test's verdict: the one verdict it printed (anywhere), else "other".

    As CWM's test-generation environment checks its scripts: a script may print its
    verdict once per case, but printing two different verdicts is no verdict.
    """
    if timed_out:
        return "timeout"
    found = {verdict for phrase, verdict in VERDICTS.items() if phrase in output}
    return found.pop() if len(found) == 1 else "other"


def fresh_runtime(settings: RunSettings, label: str) -> Runtime:
    """A fresh runtime of the kind the rollouts use (local copy or container)."""
    return open_runtime(settings.runtime, settings.repo, f"{settings.run_id}-{label}")


@dataclass(frozen=True)
class VerifyConfig:
    test_cmd: str | None = None  # None: the default when the base has tests; "": none
    test_timeout: float = 900.0
    repro_timeout: float = 120.0
    python: str = "python3"


class Bench:
    """The verification runtimes of one scaled run, and the record of every execution."""

    def __init__(self, settings: RunSettings, config: VerifyConfig) -> None:
        self.settings = settings
        self.config = config
        self.runs: list[TestRun] = []
        self._lock = threading.Lock()
        self._runtimes: dict[str, Any] = {}
        self._cache = OnceCache()
        self._test_cmd: str | None = config.test_cmd
        self.test_cmd_source = (
            "given" if config.test_cmd else "pending" if config.test_cmd is None else "disabled"
        )

    @property
    def cache_hits(self) -> int:
        return self._cache.hits

    @property
    def test_cmd(self) -> str | None:
        return self._test_cmd or None

    @property
    def wants_existing(self) -> bool:
        """Whether the existing tests may run (the default is decided on the base)."""
        return self.test_cmd_source in ("given", "pending")

    # -- on the unpatched base -----------------------------------------------------------
    def on_base(self, test: ReproTest) -> TestRun:
        """A reproduction test's run on the base (tests with one normalized text: once)."""
        return self._cache.get(("base", test.test_hash), lambda: self._on_fresh_base(test))

    def _on_fresh_base(self, test: ReproTest) -> TestRun:
        runtime = fresh_runtime(self.settings, f"base-{test.test_hash}")
        try:
            return self._repro(runtime, "base", f"repro-{test.test_hash}", test.code or "")
        finally:
            runtime.close()

    def base_suite(self) -> SuiteRun | None:
        """The existing tests on the base: which pass there (None: no test command)."""
        return self._cache.get(("base", "existing"), self._base_suite)

    def _base_suite(self) -> SuiteRun | None:
        if not self.wants_existing:
            return None
        runtime = fresh_runtime(self.settings, "base-existing")
        try:
            self._resolve_test_cmd(runtime)
            if self.test_cmd is None:
                return None
            return self._suite(runtime, "base")
        finally:
            runtime.close()

    # -- candidates ----------------------------------------------------------------------
    def prepare(self, group: Group) -> str | None:
        """Open the candidate's runtime and apply its patch; the problem if it is invalid."""
        return self._cache.get(("prepare", group.key), lambda: self._prepare(group))

    def _prepare(self, group: Group) -> str | None:
        from cwm_agent.patches import validate_patch

        runtime = fresh_runtime(self.settings, f"verify-{group.key}")
        with self._lock:
            self._runtimes[group.key] = runtime
        patch = group.representative.patch or ""
        try:
            validate_patch(patch, runtime.base_dir, runtime.base)
        except PatchError as exc:
            return exc.message
        runtime.write_file(PATCH_FILE, patch.encode("utf-8", "surrogateescape"))
        applied = runtime.run(
            f"git apply --whitespace=nowarn {PATCH_FILE} && rm -f {PATCH_FILE}", 60
        )
        return None if applied.exit_code == 0 else f"git apply failed: {applied.output.strip()}"

    def repro(self, group: Group, test: TestGroup) -> TestRun:
        key = (group.key, test.key)
        runtime = self._runtimes[group.key]
        return self._cache.get(
            key, lambda: self._repro(runtime, group.key, f"repro-{test.key}", test.code)
        )

    def existing(self, group: Group) -> SuiteRun:
        """The existing tests with the group's patch (the base's run decides the command)."""
        self.base_suite()
        return self._cache.get(
            (group.key, "existing"), lambda: self._suite(self._runtimes[group.key], group.key)
        )

    def close(self) -> None:
        with self._lock:
            runtimes, self._runtimes = list(self._runtimes.values()), {}
        for runtime in runtimes:
            runtime.close()

    # -- helpers -------------------------------------------------------------------------
    def _resolve_test_cmd(self, runtime: Runtime) -> None:
        """``--test-cmd`` not given: the default, when the base has pytest-style tests."""
        with self._lock:
            if self.test_cmd_source != "pending":
                return
            probe = runtime.run(f"git ls-tree -r --name-only HEAD | grep -Eq '{_HAS_TESTS}'", 60)
            if probe.exit_code == 0:
                self._test_cmd, self.test_cmd_source = DEFAULT_TEST_CMD, "default"
            else:
                self.test_cmd_source = "none (the base has no tests folder or test_*.py files)"

    def _suite(self, runtime: Runtime, candidate: str) -> SuiteRun:
        """One run of the test command, with pytest's per-test report when it writes one."""
        command = self.test_cmd or ""
        report = posixpath.join(runtime.root, junit.REPORT_FILE)
        runtime.run(f"rm -f {junit.REPORT_FILE}", 30)
        wrapped = junit.with_report(command, report)
        result, seconds = self._timed(runtime, wrapped, self.config.test_timeout)
        results = self._read_report(runtime)
        outcome = "timeout" if result.timed_out else "passed" if result.exit_code == 0 else "failed"
        tally = junit.counts(results) if results is not None else None
        self._record(candidate, "existing", command, result, outcome, seconds, tally)
        return SuiteRun(outcome, results)

    def _read_report(self, runtime: Runtime) -> dict[str, str] | None:
        try:
            if not runtime.exists(junit.REPORT_FILE):
                return None  # not pytest, or it did not get as far as writing it
            data = runtime.read_file(junit.REPORT_FILE)
        except (ToolError, OSError):  # e.g. the tests replaced it with a link out of the copy
            return None
        finally:
            runtime.run(f"rm -f {junit.REPORT_FILE}", 30)
        return junit.parse_report(data.decode("utf-8", "replace"))

    def _repro(self, runtime: Runtime, candidate: str, label: str, code: str) -> TestRun:
        runtime.write_file(REPRO_FILE, code.encode("utf-8", "surrogateescape"))
        command = f"{self.config.python} {REPRO_FILE}"
        result, seconds = self._timed(runtime, command, self.config.repro_timeout)
        runtime.run(f"rm -f {REPRO_FILE}", 30)
        outcome = classify(result.output, result.timed_out)
        return self._record(candidate, label, command, result, outcome, seconds)

    def _timed(self, runtime: Runtime, command: str, timeout: float) -> tuple[Any, float]:
        started = time.perf_counter()
        result = runtime.run(command, timeout)
        return result, time.perf_counter() - started

    def _record(
        self,
        candidate: str,
        test: str,
        command: str,
        result: Any,
        outcome: str,
        seconds: float,
        tally: dict[str, int] | None = None,
    ) -> TestRun:
        run = TestRun(
            candidate=candidate,
            test=test,
            command=command,
            exit_code=result.exit_code,
            outcome=outcome,
            seconds=round(seconds, 3),
            output_tail=result.output[-_TAIL:],
            tests=tally,
        )
        with self._lock:
            self.runs.append(run)
        return run
