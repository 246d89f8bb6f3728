"""Reproduction rollouts: an episode in which the model writes a standalone test, and submits it.

As in CWM's test-generation environment: the usual system prompt (same tools, same
protocol), the fix rollouts' model and limits, CWM's budget of turns
(``scaling.repro_max_steps``, 128 by default), and a different task
(``prompts/repro_user.j2``): write ``test_issue.py`` that prints "Issue reproduced",
"Issue resolved" or "Other issues". ``submit`` takes the test file itself
(``<tool: submit>\\ntest_issue.py\\n</tool>``): a readable, non-empty file inside the
repository, whose content is the test. The last accepted submission counts; the
episode ends with the model's reply without a tool call, as a fix rollout's does.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from cwm_agent import protocol
from cwm_agent.agent import Agent, ProgressFn
from cwm_agent.costs import Meter
from cwm_agent.errors import CwmError, Interrupted, ToolError
from cwm_agent.factory import open_model, open_runtime
from cwm_agent.settings import RunSettings
from cwm_agent.trajectory import Trajectory
from cwm_agent.types import Action, Observation, Runtime
from cwm_agent.verification import layout
from cwm_agent.verification.identity import script_key

from .records import ReproTest

TEST_NAME = "test_issue.py"


class ReproAgent(Agent):
    """The agent loop with the reproduction task as its user message and a test as its submission.

    ``self.patch`` holds the accepted script: the loop's end (a reply without a tool call
    after a submission) and its record work as for a fix; ``script`` names it plainly.
    """

    python = "python3"

    def _initial_messages(self, issue: str) -> list[dict[str, Any]]:
        messages = super()._initial_messages(issue)
        limit = self.config.issue_max_tokens * protocol.CHARS_PER_TOKEN
        text = protocol.truncate_middle(protocol.clean_text(issue), limit)
        task = self.render_prompt(  # the run's prompt set: CWM's own text when imported
            "repro_user", issue=text, root=self.runtime.root, test_name=TEST_NAME,
            python=self.python, tool_format=self.config.tool_format,
        )  # fmt: skip
        return [messages[0], {"role": "user", "content": task}]

    def _execute(self, action: Action) -> Observation:
        if action.tool != "submit":
            return super()._execute(action)
        path = (action.args.get("path") or "").strip()
        observation, script = submit_test(
            self.runtime,
            path,
            self.output_limit,
            lambda **values: self.render_prompt("repro_submission", **values),
        )
        if script is not None:
            self.patch = script
            self.traj.data["submissions"].append({"path": path, "test": script})
        return observation

    @property
    def script(self) -> str | None:
        return self.patch


def submit_test(
    runtime: Runtime, path: str, max_output: int, render: Callable[..., str]
) -> tuple[Observation, str | None]:
    """Accept a test file: what the model sees (``render``: the prompt set's
    ``repro_submission`` with ``path`` and ``test``), and the script (None: rejected)."""
    if not path:
        return _rejected(f"no file was named; give the path of the test, e.g. {TEST_NAME}"), None
    # Relative to the session's directory, like CWM's submit (it runs `cat PATH` there).
    full = path if posixpath.isabs(path) else posixpath.join(runtime.cwd, path)
    try:
        if not runtime.exists(full):
            return _rejected(f"{path} does not exist (looked in {runtime.cwd})"), None
        data = runtime.read_file(full)
    except ToolError as exc:  # outside the repository, a directory, unreadable
        return _rejected(f"{path} cannot be read: {exc}"), None
    script = data.decode("utf-8", "surrogateescape")
    if not script.strip():
        return _rejected(f"{path} is empty; write the test into it first"), None
    # As CWM's submit shows it: the file's content as `cat` prints it, final newline kept.
    shown = protocol.truncate_middle(script, max_output)
    return Observation(output=render(path=path, test=shown)), script


def _rejected(problem: str) -> Observation:
    return Observation(
        output=(
            f"Submission rejected: {problem}.\nSubmit the path of the test file itself "
            f"(for example {TEST_NAME}), not a patch. Then submit again."
        ),
        ok=False,
    )


def run_repro_rollout(
    settings: RunSettings,
    issue: str,
    sample: int,
    traj_path: Path,
    progress: ProgressFn | None = None,
    python: str = "python3",
    *,
    stop: Callable[[], bool] | None = None,
    meter: Meter | None = None,
) -> ReproTest:
    """One reproduction rollout; model and runtime failures become a record, not a raise.

    The fix rollouts' settings, but ``scaling.repro_max_steps`` turns. With
    ``--submit-on-limit``, a test file left unsent at the root when a limit ends the
    episode is taken, as a fix rollout's working-tree diff would be. ``stop`` and
    ``meter`` as for ``run.execute``.
    """
    started = time.perf_counter()
    config = replace(
        settings.agent, max_steps=settings.scaling.repro_max_steps, submit_on_limit=False
    )
    run_id = f"{settings.run_id}-r{sample}"
    mine = replace(settings, agent=config, run_id=run_id)
    record = {**mine.record(), "role": "reproduction-test", "sample": sample}
    traj = Trajectory(traj_path, run_id, record, issue)
    source = "submitted"
    try:
        model = open_model(settings.model, stop)
        runtime = open_runtime(settings.runtime, settings.repo, run_id)
        try:
            traj.data["config"]["runtime_notices"] = list(runtime.notices)
            hooks = _hooks(settings, model)
            agent = ReproAgent(model, runtime, config, traj, progress, hooks, meter)
            agent.python = python
            result = agent.run(issue)
            script = agent.script
            if script is None and settings.agent.submit_on_limit:  # no submission: a limit
                script, source = _left_at_root(runtime), "working tree"
        finally:
            runtime.close()
    except Interrupted:
        raise
    except CwmError as exc:
        status = f"error: {type(exc).__name__}: {exc.message}"
        return _record(sample, status, traj, started, problem=exc.message)
    if script is None:
        return _record(sample, result.status, traj, started, problem="no test was submitted")
    path = (traj.data["submissions"] or [{"path": TEST_NAME}])[-1]["path"]
    _keep_test(traj, path, script, source)
    return _record(sample, result.status, traj, started, path=path, code=script, source=source)


def _keep_test(traj: Trajectory, path: str, script: str, source: str) -> None:
    """The test the rollout counts, in its trajectory (``layout.REPRO_TEST``): one taken from the
    working tree is in no submission, and `select` on a batch folder reads it there."""
    traj.data[layout.REPRO_TEST] = {"path": path, "test": script, "source": source}
    traj.save(full=True)


def _hooks(settings: RunSettings, model: Any) -> list[Any]:
    """The same tool hooks as a fix rollout (trace prediction, when it is on)."""
    if not settings.agent.trace_prediction:
        return []
    from cwm_agent.traces.consult import TraceConsultant

    return [TraceConsultant(model)]


def _left_at_root(runtime: Runtime) -> str | None:
    try:
        if runtime.exists(TEST_NAME):
            script = runtime.read_file(TEST_NAME).decode("utf-8", "surrogateescape")
            return script if script.strip() else None
    except ToolError:
        pass
    return None


def _record(sample: int, status: str, traj: Trajectory, started: float, **found: Any) -> ReproTest:
    code = found.get("code")
    key, how = script_key(code) if code is not None else (None, None)
    return ReproTest(
        sample=sample,
        status=status,
        tokens=int(traj.data["usage"].get("total_tokens") or 0),
        cost_usd=traj.data.get("cost_usd"),
        seconds=round(time.perf_counter() - started, 3),
        trajectory=str(traj.path),
        path=found.get("path"),
        code=code,
        test_hash=key,
        normalized=how,
        source=found.get("source", "submitted"),
        problem=found.get("problem", ""),
    )
