"""The execution stage: the groups, best-first, against the impacted tests and the
reproduction scripts, in one warm runtime per instance.

On the base first: the impacted tests (``impact.py``) that pass there are the ones that
count, and the scripts that print "Issue reproduced" there are the ones that count. Then
each group in the cascade's order: its ``verify_patch`` applied, the record's install
run when it changes build inputs (then the runtime is discarded: an install rewrites the
environment, which no reset puts back), the tests and scripts run, the runtime reset and
checked (``warm.py``, which also watches the environment's site-packages). A group's
verdict: the counted tests that still pass, the counted scripts that print "Issue
resolved".

Early stop: once a group passes every check, no later group can overtake it (at best it
ties, and a tie goes to the earlier group: the cascade's order is the tie-break), so the
rest are ``not_run``. Budgets per instance (``max_test_runs``, ``max_seconds``) leave the
groups they do not reach ``not_run`` too, each with its reason, and say so loudly.

Here: the stage's entry point and config, and "execution stopped" when the runtime fails;
the run itself is ``exec_run.Stage``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cwm_agent.errors import CwmError, Interrupted
from cwm_agent.settings import ScalingSettings
from cwm_agent.types import Runtime

from .checks import count_test_runs
from .exec_run import Stage
from .records import Cost, ExecConfig, ExecReport, ExecVerdict, Group, ReproScript, Workspace
from .warm import Warm, WarmError


def config_from(scaling: ScalingSettings, **more: Any) -> ExecConfig:
    """The stage's config from the test settings (``--test-cmd``, budgets, early stop)."""
    return ExecConfig(test_cmd=scaling.test_cmd, test_timeout=scaling.test_timeout,
                      max_test_runs=scaling.max_test_runs, max_seconds=scaling.max_seconds,
                      early_stop=scaling.early_stop, **more)  # fmt: skip


@dataclass(frozen=True)
class Execution:
    """The stage with its config bound: the cascade's ``Executor`` (picklable, for Ray)."""

    config: ExecConfig = field(default_factory=ExecConfig)

    def __call__(
        self,
        workspace: Workspace,
        groups: Sequence[Group],
        scripts: Sequence[ReproScript],
        *,
        note: Callable[[str], None],
    ) -> ExecReport:
        return execute(workspace, groups, scripts, self.config, note)


def execute(
    workspace: Workspace,
    groups: Sequence[Group],
    scripts: Sequence[ReproScript],
    config: ExecConfig,
    note: Callable[[str], None],
) -> ExecReport:
    """Verdicts for ``groups`` (best-first) in ``workspace``'s runtime (see module doc)."""
    started = time.monotonic()
    opened: list[Runtime] = []

    def open_box(label: str) -> Runtime:
        runtime = workspace.open(label)
        opened.append(runtime)
        return runtime

    warm = Warm(open_box, fresh=not config.warm)  # watching site-packages, as every user
    report = ExecReport()
    try:
        Stage(workspace, warm, config, report, note).run(groups, scripts, opened)
    except Interrupted:
        raise
    except CwmError as exc:  # no runtime, or it died: the groups left say so, loudly
        message = f"execution stopped: {exc}"
        report.warnings.append(message)  # the cascade's loud warning (not a note as well)
        for group in groups:
            if group.key not in report.verdicts:
                report.verdicts[group.key] = ExecVerdict(group.key, "not_run", reason=message)
    finally:
        warm.close()
        report.cost = Cost(
            test_runs=count_test_runs(report.runs),
            runtime_seconds=warm.stats.held_seconds,
            wall_seconds=time.monotonic() - started,
        )
        report.runtimes = warm.stats.opened
        report.reset = _reset_summary(warm, config)
    return report


def _reset_summary(warm: Warm, config: ExecConfig) -> str:
    if not config.warm:
        return "a fresh runtime per group (warm runtime off)"
    if not warm.stats.fallbacks:
        return "verified"
    return "; ".join(warm.stats.fallbacks)


__all__ = ["ExecConfig", "Execution", "WarmError", "execute"]  # ExecConfig: from records
