"""One instance's execution, inside ``execute.py``'s frame: the base first (what counts),
then each group best first (applied, installed when it changes build inputs, tested,
reset), early stop and budgets, and every loud warning of the stage.

``execute.py`` holds the stage's entry point and config and turns a runtime failure into
"execution stopped"; this module is the run itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from cwm_agent.errors import CwmError
from cwm_agent.types import Runtime

from . import junit
from .checks import Checks, touches_build
from .impact import impacted
from .pytree import PyTree
from .records import ExecConfig, ExecReport, ExecVerdict, Group, ReproScript, Workspace
from .testcmd import TestCommand, for_record, runnable
from .warm import Warm

BUDGET = "budget:"  # how a verdict cut off by a budget begins its reason
NO_CODE = "changes no code (test infrastructure only): nothing of its own to run"


class Stage:
    def __init__(
        self,
        workspace: Workspace,
        warm: Warm,
        config: ExecConfig,
        report: ExecReport,
        note: Callable[[str], None],
    ) -> None:
        self.workspace, self.warm, self.config = workspace, warm, config
        self.report, self.note = report, note
        self.started = time.monotonic()

    def run(
        self, groups: Sequence[Group], scripts: Sequence[ReproScript], opened: list[Runtime]
    ) -> None:
        self.warm.start()  # the runtime, snapshotted at the base before anything runs
        command = for_record(self.workspace.record, self.config.test_cmd, self.config.python)
        command, why = runnable(command, self.config.python)
        if why:
            self._loud(why)
        files = self._impacted(opened[0], groups, command)
        checks = Checks(self.warm, command if files or _whole(command) else None, files,
                        self.workspace.record, self.config.python,
                        (self.config.test_timeout, self.config.repro_timeout),
                        self._install())  # fmt: skip
        try:
            counted, counting = self._base(checks, scripts)
            total = len(counted) + len(counting)
            leader: ExecVerdict | None = None
            for group in groups:
                verdict = self._group(checks, group, counted, counting, total, leader)
                self.report.verdicts[group.key] = verdict
                if verdict.status == "ran" and (leader is None or verdict.passed > leader.passed):
                    leader = verdict
            self._loud_budget(groups)
        finally:
            self.report.runs = [run.row() for run in checks.runs]

    def _loud_budget(self, groups: Sequence[Group]) -> None:
        """Groups a budget left unrun: the tests cannot rank them against the ones that ran."""
        cut = [v for v in self.report.verdicts.values() if v.reason.startswith(BUDGET)]
        if cut:
            self._loud(
                f"{len(cut)} of {len(groups)} group(s) not run ({cut[0].reason}): the tests "
                "could not compare them with the groups that ran (raise --max-test-runs / "
                "--max-seconds to run them)"
            )

    def _install(self) -> str:
        """The record's own install step, whichever command runs the tests."""
        own = for_record(self.workspace.record, None, self.config.python)
        return own.install_script() if own is not None else ""

    def _impacted(
        self, runtime: Runtime, groups: Sequence[Group], command: TestCommand | None
    ) -> tuple[str, ...]:
        if command is None:
            return ()
        self.report.test_command = command.describe()
        if not command.selects:
            return ()
        changed = sorted({path for group in groups for path in _paths(group.verify_patch)})
        try:
            found = impacted(PyTree.read(runtime.base_dir, runtime.base), changed,
                             self.config.max_test_files)  # fmt: skip
        except CwmError as exc:
            self.report.warnings.append(f"cannot map the tests of the base tree: {exc}")
            return ()
        if found.note:
            self.report.warnings.append(f"impacted tests: {found.note}")
        self.report.tests = found.files
        return found.files

    def _base(
        self, checks: Checks, scripts: Sequence[ReproScript]
    ) -> tuple[frozenset[str], dict[str, str]]:
        """The tests passing on the base, and the scripts that reproduce the issue there."""
        counted: frozenset[str] = frozenset()
        if checks.command is not None:
            results = checks.tests("base")
            counted = frozenset(junit.passing(results or {}))
            if not counted:
                self._loud_base_failure(checks)
        counting: dict[str, str] = {}
        for script in scripts:
            if len(counting) == self.config.max_scripts:
                break
            if checks.script("base", script.key, script.code) == "reproduced":
                counting[script.key] = script.code
        if scripts and not counting:
            self.report.warnings.append(
                f"none of the {len(scripts)} reproduction script(s) prints 'Issue reproduced' "
                "on the base: they cannot decide"
            )
        self.report.base_passing = tuple(sorted(counted))
        self.report.scripts_counted = tuple(counting)
        self.warm.reset()
        return counted, counting

    def _loud_base_failure(self, checks: Checks) -> None:
        run = checks.runs[-1]
        tail = run.output_tail.strip().splitlines()[-3:]
        self._loud(
            f"the test command passes no test on the base ({run.outcome}, exit "
            f"{run.exit_code}: {' | '.join(tail) or 'no output'}): existing tests cannot "
            "decide between the candidates"
        )

    def _loud(self, message: str) -> None:
        # Not noted as well: the cascade makes each a warning of the record, which every
        # caller says on stderr (once; a note too would say it twice).
        self.report.warnings.append(message)

    def _group(
        self,
        checks: Checks,
        group: Group,
        counted: frozenset[str],
        counting: dict[str, str],
        total: int,
        leader: ExecVerdict | None,
    ) -> ExecVerdict:
        not_run = self._why_not(checks, group, counting, total, leader)
        if not_run:
            if not_run.startswith("early stop"):
                self.report.early_stopped = True
            return ExecVerdict(group.key, "not_run", existing_total=len(counted),
                               repro_total=len(counting), reason=not_run)  # fmt: skip
        paths = _paths(group.verify_patch)
        if not group.verify_patch.strip():  # possible when `static` is not among the stages
            # Its runs would be the base's, every counted test passing: a full pass for nothing.
            return ExecVerdict(group.key, "invalid", 0, len(counted), 0, len(counting),
                               reason=NO_CODE)  # fmt: skip
        installed = False
        try:
            problem = checks.apply(group.key, group.verify_patch)
            if problem:
                return ExecVerdict(group.key, "invalid", 0, len(counted), 0, len(counting),
                                   reason=problem)  # fmt: skip
            installed = touches_build(paths) and checks.install(group.key)
            passing: set[str] = set()
            if counted:
                passing = junit.passing(checks.tests(group.key) or {})
            resolved = [k for k, code in counting.items()
                        if checks.script(group.key, k, code) == "resolved"]  # fmt: skip
        finally:
            if installed:  # it rewrote the environment, which no reset puts back
                self.warm.discard("the record's install ran")
            else:
                self.warm.reset()
        regressions = tuple(sorted(counted - passing))
        self.note(f"{group.key}: {len(counted & passing) + len(resolved)}/{total} checks passed")
        return ExecVerdict(group.key, "ran", len(counted & passing), len(counted), len(resolved),
                           len(counting), regressions)  # fmt: skip

    def _why_not(
        self,
        checks: Checks,
        group: Group,
        counting: dict[str, str],
        total: int,
        leader: ExecVerdict | None,
    ) -> str:
        if total == 0:
            return "nothing to run: no impacted test passes on the base, no script reproduces"
        if self.config.early_stop and leader is not None and leader.passed == total:
            return (
                f"early stop: {leader.group} passed all {total} checks; a later group can at "
                "best tie, and a tie goes to the earlier group"
            )
        needed = 1 if checks.command is not None and self.report.base_passing else 0
        needed += len(counting)
        limit = self.config.max_test_runs
        if limit is not None and checks.test_runs + needed > limit:
            return f"{BUDGET} {checks.test_runs} of max_test_runs {limit} used, {needed} needed"
        seconds = self.config.max_seconds
        if seconds is not None and time.monotonic() - self.started >= seconds:
            return f"{BUDGET} max_seconds {seconds:g} reached"
        return ""


def _whole(command: TestCommand | None) -> bool:
    return command is not None and not command.selects


def _paths(patch: str) -> list[str]:
    try:
        parsed = PatchSet(patch)
    except UnidiffParseError:
        return []
    return [patched.path for patched in parsed]
