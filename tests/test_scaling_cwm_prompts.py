"""Reproduction rollouts with CWM's own prompts (a set imported from its code): the turns
they send are what CWM's test-generation environment builds for the same limits and issue.

The oracle fixtures (CWM's code on ``sys.path``, the set imported through the real CLI)
are the conformance suite's: without the oracle these tests skip, and under
``CWM_REQUIRE_ORACLE=1`` (CI) they fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance.conftest import cwm_system, cwm_testgen, imported_set, oracle  # noqa: F401
from conftest import FakeModel, cwm

from cwm_agent.factory import open_runtime
from cwm_agent.scaling.repro import ReproAgent, run_repro_rollout
from cwm_agent.scripted_server import ScriptedServer
from cwm_agent.settings import (
    AgentConfig,
    ModelSettings,
    RunSettings,
    RuntimeSettings,
    ScalingSettings,
)
from cwm_agent.trajectory import Trajectory

ISSUE = "add() subtracts: add(2, 3) returns -1."


@pytest.fixture
def runtime(buggy_repo):
    runtime = open_runtime(RuntimeSettings(), buggy_repo, "test-repro-cwm")
    yield runtime
    runtime.close()


def test_the_first_turns_are_cwms_test_generation_turns(
    runtime,
    imported_set,  # noqa: F811
    tmp_path,
):
    config = AgentConfig(prompts=str(imported_set), timeout=120.0, max_steps=128)
    traj = Trajectory(tmp_path / "t.json", "r", {}, ISSUE)
    system, user = ReproAgent(FakeModel(), runtime, config, traj)._initial_messages(ISSUE)
    assert system["content"] == cwm_system(120.0, 131_072, 128)
    assert user["content"] == cwm_testgen(ISSUE, runtime.root).strip()


def test_a_rollout_sends_them_with_the_fix_rollouts_prompt_set(
    buggy_repo,
    imported_set,  # noqa: F811
    tmp_path: Path,
    monkeypatch,
):
    """The set is one of the fix rollouts' settings; the budget is CWM's 128 turns."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with ScriptedServer(lambda body: cwm("bash", "true")) as server:
        settings = RunSettings(
            repo=buggy_repo,
            model=ModelSettings("m", server.base_url, api="chat", max_retries=0),
            agent=AgentConfig(prompts=str(imported_set), max_steps=3, timeout=30),
            scaling=ScalingSettings(attempts=2, repro_max_steps=128),
        )
        test = run_repro_rollout(settings, ISSUE, 1, tmp_path / "repro-1.json")
        first = next(r.body for r in server.requests if r.method == "POST")
    assert test.status == "limit" and test.code is None  # 128 turns of `true`
    system, user = first["messages"]
    assert system["content"] == cwm_system(30.0, 131_072, 128)
    before, after = cwm_testgen(ISSUE, "\0").strip().split("\0")  # the root: the rollout's own
    text = user["content"]
    assert text.startswith(before) and text.endswith(after)
    assert text[len(before) : len(text) - len(after)].startswith("/")


def test_the_accepted_test_is_shown_as_cwms_test_generation_environment_shows_it(
    runtime,
    imported_set,  # noqa: F811
    tmp_path,
):
    from conformance.conftest import TESTGEN_ENV, cwm_constants

    script = 'print("Issue reproduced")\n'
    replies = [
        cwm("create", f"test_issue.py\n{script}"),
        cwm("submit", "test_issue.py"),
        "<think>\nDone.\n</think>\nThe test prints the verdict.",
    ]
    config = AgentConfig(prompts=str(imported_set), max_steps=5)
    traj = Trajectory(tmp_path / "t.json", "r", {}, ISSUE)
    ReproAgent(FakeModel(replies), runtime, config, traj).run(ISSUE)
    tool_messages = [m["content"] for m in traj.messages if m["role"] == "tool"]
    feedback = cwm_constants(TESTGEN_ENV)["SUBMISSION_FEEDBACK_PROMPT"].format(test=script)
    assert tool_messages[-1].startswith(f"<output>\n{feedback}\n</output>\n\n<budget>")
