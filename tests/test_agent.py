"""The agent loop on its own: a FakeModel in-process, a real local runtime and trajectory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FakeModel, cwm, summary

from cwm_agent.agent import Agent
from cwm_agent.factory import open_runtime
from cwm_agent.settings import AgentConfig, RuntimeSettings
from cwm_agent.trajectory import Trajectory

FIX = "mathlib/ops.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE"


@pytest.fixture
def runtime(buggy_repo):
    runtime = open_runtime(RuntimeSettings(), buggy_repo, "test-agent")
    yield runtime
    runtime.close()


def run(runtime, tmp_path: Path, model: FakeModel, **limits):
    traj = Trajectory(tmp_path / "traj.json", "run-1", {"run_id": "run-1"}, "add() is wrong")
    result = Agent(model, runtime, AgentConfig(**limits), traj).run("add() is wrong")
    return result, json.loads(traj.path.read_text())


def test_the_step_limit_ends_the_run_and_keeps_the_working_tree_diff(runtime, tmp_path):
    model = FakeModel([cwm("edit", FIX)], default=cwm("bash", "echo still looking"))
    result, data = run(runtime, tmp_path, model, max_steps=3)
    assert (result.status, result.exit_code, result.steps) == ("limit", 1, 3)
    assert result.patch is None and "+    return a + b" in result.working_tree_diff
    assert len(model.calls) == 3 and len(data["steps"]) == 3
    assert data["exit_status"] == "limit" and data["working_tree_diff"] == result.working_tree_diff


def test_the_limit_with_submit_on_limit_emits_the_valid_diff(runtime, tmp_path):
    model = FakeModel([cwm("edit", FIX)], default=cwm("bash", "true"))
    result, _ = run(runtime, tmp_path, model, max_steps=2, submit_on_limit=True)
    assert (result.status, result.exit_code) == ("submitted_limit", 0)
    assert "+    return a + b" in result.patch and "--submit-on-limit" in result.reason


def test_consecutive_format_errors_are_bounded_and_a_good_call_resets_the_count(runtime, tmp_path):
    replies = ["no call", cwm("bash", "true"), "none", "none again"]
    model = FakeModel(replies, default="never reached")
    result, data = run(runtime, tmp_path, model, max_format_errors=2)
    assert (result.status, result.exit_code, result.steps) == ("format_errors", 1, 4)
    assert "2 format errors in a row" in result.reason and "no tool call" in result.reason
    feedback = [m["content"] for m in data["messages"] if m["role"] == "user"][1:]
    assert len(feedback) == 3 and all(text.startswith("FormatError: ") for text in feedback)
    assert len(model.calls) == 4


def test_a_valid_submission_then_a_summary_ends_the_episode(runtime, tmp_path):
    replies = [
        cwm("edit", FIX),
        cwm("bash", "git diff > fix.patch"),
        cwm("submit", "fix.patch"),
        summary("add() subtracted."),
    ]
    model = FakeModel(replies, default=cwm("bash", "echo one step too many"))
    result, data = run(runtime, tmp_path, model)
    assert (result.status, result.exit_code, result.steps) == ("submitted", 0, 4)
    assert len(model.calls) == 4  # the summary ended it: no fifth request
    assert result.patch.startswith("diff --git a/mathlib/ops.py b/mathlib/ops.py")
    assert "fix.patch" not in result.patch
    assert [s["patch"] for s in data["submissions"]] == [result.patch]
    assert data["messages"][-1] == {"role": "assistant", "content": replies[-1]}


def test_a_reply_without_a_call_before_any_submission_is_a_format_error(runtime, tmp_path):
    model = FakeModel([summary("I fixed it (but never submitted).")], default="nothing")
    result, data = run(runtime, tmp_path, model, max_format_errors=1)
    assert result.status == "format_errors" and result.patch is None
    assert (
        "A reply without a tool call is only accepted after a valid submission"
        in (data["messages"][-1]["content"])
    )
