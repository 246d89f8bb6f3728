"""Reproduction rollouts: a short episode in which the model writes a standalone test.

The model gets the usual system prompt (same tools, same protocol) and a different task
(``prompts/repro_user.j2``): write ``test_issue.py`` that prints "Issue reproduced",
"Issue resolved" or "Other issues", and submit a patch that creates it. The script is
taken from the submitted patch; the repository's other files are never part of it.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from cwm_agent import prompts, protocol
from cwm_agent.agent import CHARS_PER_TOKEN, Agent, ProgressFn
from cwm_agent.errors import CwmError
from cwm_agent.factory import open_model, open_runtime
from cwm_agent.settings import RunSettings
from cwm_agent.trajectory import Trajectory

from .records import ReproTest
from .select import code_hash

TEST_NAME = "test_issue.py"
MAX_STEPS = 15


class ReproAgent(Agent):
    """The agent loop with the reproduction task as its user message."""

    python = "python3"

    def _initial_messages(self, issue: str) -> list[dict[str, Any]]:
        messages = super()._initial_messages(issue)
        limit = self.config.issue_max_tokens * CHARS_PER_TOKEN
        text = protocol.truncate_middle(protocol.clean_text(issue), limit)
        task = prompts.render(
            "repro_user", issue=text, root=self.runtime.root, test_name=TEST_NAME,
            python=self.python, tool_format=self.config.tool_format,
        )  # fmt: skip
        return [messages[0], {"role": "user", "content": task}]


def run_repro_rollout(
    settings: RunSettings,
    issue: str,
    sample: int,
    traj_path: Path,
    progress: ProgressFn | None = None,
    python: str = "python3",
) -> ReproTest:
    """One reproduction rollout; model and runtime failures become a record, not a raise."""
    started = time.perf_counter()
    # At the step limit, a written but unsubmitted script still counts (--submit-on-limit).
    config = replace(
        settings.agent, max_steps=min(MAX_STEPS, settings.agent.max_steps), submit_on_limit=True
    )
    run_id = f"{settings.run_id}-r{sample}"
    mine = replace(settings, agent=config, run_id=run_id)
    record = {**mine.record(), "role": "reproduction-test", "sample": sample}
    traj = Trajectory(traj_path, run_id, record, issue)
    try:
        runtime = open_runtime(settings.runtime, settings.repo, run_id)
        try:
            agent = ReproAgent(open_model(settings.model), runtime, config, traj, progress)
            agent.python = python
            result = agent.run(issue)
        finally:
            runtime.close()
    except CwmError as exc:
        status = f"error: {type(exc).__name__}: {exc.message}"
        return _record(sample, status, traj, started, problem=exc.message)
    if result.patch is None:
        return _record(sample, result.status, traj, started, problem="no test was submitted")
    try:
        path, code = extract_test(result.patch)
    except ValueError as exc:
        return _record(sample, result.status, traj, started, problem=str(exc))
    return _record(sample, result.status, traj, started, path=path, code=code)


def _record(sample: int, status: str, traj: Trajectory, started: float, **found: Any) -> ReproTest:
    code = found.get("code")
    return ReproTest(
        sample=sample,
        status=status,
        tokens=int(traj.data["usage"].get("total_tokens") or 0),
        seconds=round(time.perf_counter() - started, 3),
        trajectory=str(traj.path),
        path=found.get("path"),
        code=code,
        test_hash=code_hash(code) if code is not None else None,
        problem=found.get("problem", ""),
    )


def extract_test(patch: str) -> tuple[str, str]:
    """The path and content of the test script a patch creates (ValueError: why not)."""
    try:
        parsed = PatchSet(patch)
    except UnidiffParseError as exc:
        raise ValueError(f"the submitted patch cannot be parsed: {exc}") from exc
    scripts = [f for f in parsed if posixpath.basename(f.path) == TEST_NAME]
    if not scripts:
        raise ValueError(f"the submitted patch does not create {TEST_NAME}")
    script = min(scripts, key=lambda f: f.path.count("/"))  # the one at the root, if any
    if not script.is_added_file:
        raise ValueError(f"{script.path} must be a new file, but the patch modifies or deletes it")
    code = "".join(line.value for hunk in script for line in hunk if line.is_added)
    if not code.strip():
        raise ValueError(f"{script.path} is empty")
    return script.path, code
