"""Reproduction rollouts: the test file itself is submitted; the fix rollouts' settings; 128 turns.

The loop with a FakeModel in-process and a real local runtime; whole rollouts through the
scripted HTTP server and the real `openai` client.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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
from cwm_agent.types import ModelReply, ToolCall, Usage
from cwm_agent.verification import batch_outputs, layout

SCRIPT = """from mathlib.ops import add
print("Issue resolved" if add(2, 3) == 5 else "Issue reproduced")
"""
DONE = "<think>\nDone.\n</think>\nThe script calls add(2, 3)."


@pytest.fixture
def runtime(buggy_repo):
    runtime = open_runtime(RuntimeSettings(), buggy_repo, "test-repro")
    yield runtime
    runtime.close()


def run_agent(runtime, tmp_path: Path, model: FakeModel, **limits):
    traj = Trajectory(tmp_path / "repro.json", "r-1", {"run_id": "r-1"}, "add() is wrong")
    agent = ReproAgent(model, runtime, AgentConfig(**limits), traj)
    result = agent.run("add() is wrong")
    return agent, result, json.loads(traj.path.read_text())


def tool_results(model: FakeModel) -> list[str]:
    return [m["content"] for m in model.calls[-1]["messages"] if m["role"] == "tool"]


def test_the_test_file_itself_is_submitted_and_ends_the_episode(runtime, tmp_path):
    model = FakeModel(
        [cwm("create", "test_issue.py\n" + SCRIPT), cwm("submit", "test_issue.py"), DONE]
    )
    agent, result, data = run_agent(runtime, tmp_path, model)
    assert agent.script == SCRIPT and result.status == "submitted" and result.steps == 3
    accepted = tool_results(model)[-1]
    assert f"<submission>\n{SCRIPT}\n</submission>" in accepted  # as `cat` shows it
    assert data["submissions"] == [{"path": "test_issue.py", "test": SCRIPT}]
    task = model.calls[0]["messages"][1]["content"]
    assert "<tool: submit>\ntest_issue.py\n</tool>" in task and "not a patch" in task
    assert "add() is wrong" in task and "Issue reproduced" in task


def test_a_path_is_relative_to_the_sessions_directory(runtime, tmp_path):
    model = FakeModel(
        [
            cwm("bash", "mkdir checks"),
            cwm("create", "checks/t.py\n" + SCRIPT),
            cwm("bash", "cd checks"),
            cwm("submit", "t.py"),  # checks/t.py: the session is in checks/
            DONE,
        ]
    )
    agent, _, _ = run_agent(runtime, tmp_path, model)
    assert agent.script == SCRIPT


@pytest.mark.parametrize(
    ("setup", "path", "problem"),
    [
        ("true", "test_issue.py", "test_issue.py does not exist"),
        (": > test_issue.py", "test_issue.py", "test_issue.py is empty"),
        ("mkdir -p test_issue.py", "test_issue.py", "test_issue.py cannot be read"),
        ("true", "/etc/hostname", "outside the repository"),
        ("true", "../elsewhere.py", "outside the repository"),
    ],
)
def test_a_file_that_cannot_be_the_test_is_refused_and_the_model_may_retry(
    runtime, tmp_path, setup, path, problem
):
    write = [cwm("bash", "rm -rf test_issue.py"), cwm("create", "test_issue.py\n" + SCRIPT)]
    model = FakeModel(
        [cwm("bash", setup), cwm("submit", path), *write, cwm("submit", "test_issue.py"), DONE]
    )
    agent, result, _ = run_agent(runtime, tmp_path, model)
    refused = tool_results(model)[1]
    assert refused.startswith("<output>\nSubmission rejected:") and problem in refused, refused
    assert "the path of the test file itself" in refused
    assert agent.script == SCRIPT and result.status == "submitted"


def test_the_openai_format_submits_a_named_file_and_refuses_none(runtime, tmp_path):
    runtime.write_file("test_issue.py", SCRIPT.encode())
    model = FakeModel(
        [
            native_reply("submit"),
            native_reply("submit", path="test_issue.py"),
            "The script calls add().",
        ]
    )
    agent, _, _ = run_agent(runtime, tmp_path, model, tool_format="openai")
    first, second = tool_results(model)[:2]
    assert "Submission rejected: no file was named" in first and "<submission>" in second
    assert agent.script == SCRIPT


def native_reply(name: str, **arguments: str) -> ModelReply:
    call = ToolCall("call-1", name, json.dumps(arguments))
    return ModelReply("", tool_calls=(call,), usage=Usage(100, 10), finish_reason="tool_calls")


# -- whole rollouts over HTTP ---------------------------------------------------------------


def settings_for(server: ScriptedServer, repo: Path, **agent) -> RunSettings:
    return RunSettings(
        repo=repo,
        model=ModelSettings("m", server.base_url, temperature=0.7, top_p=0.9, max_retries=0),
        agent=AgentConfig(max_steps=2, timeout=30, **agent),
        scaling=ScalingSettings(attempts=2, repro_max_steps=4),
    )


def test_a_rollout_has_its_own_budget_and_the_fix_rollouts_model_settings(
    buggy_repo, tmp_path, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with ScriptedServer(lambda body: cwm("bash", "echo looking")) as server:
        settings = settings_for(server, buggy_repo)
        test = run_repro_rollout(settings, "add() subtracts", 1, tmp_path / "repro-1.json")
    posts = [r.body for r in server.requests if r.method == "POST"]
    # repro_max_steps (4) turns, not the fix rollouts' --max-steps (2); the same sampling.
    assert len(posts) == 4 and test.status == "limit" and test.code is None
    assert {(b["temperature"], b["top_p"]) for b in posts} == {(0.7, 0.9)}
    data = json.loads((tmp_path / "repro-1.json").read_text())
    assert (
        data["config"]["agent"]["max_steps"] == 4 and data["config"]["role"] == "reproduction-test"
    )
    assert test.problem == "no test was submitted"


def test_with_submit_on_limit_an_unsent_test_file_is_taken(buggy_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    write = cwm("create", "test_issue.py\n" + SCRIPT)
    script = [write] + [cwm("bash", "echo checking")] * 3
    with ScriptedServer(script) as server:
        settings = settings_for(server, buggy_repo, submit_on_limit=True)
        folder = tmp_path / "out" / "inst-1"  # a batch --attempts instance folder
        folder.mkdir(parents=True)
        test = run_repro_rollout(settings, "add() subtracts", 2, folder / layout.repro_file(2))
    assert test.code == SCRIPT and test.source == "working tree" and test.status == "limit"
    assert test.test_hash is not None and test.normalized == "ast"
    # select on the batch folder sees the test the batch counted, though none was submitted.
    (folder / layout.RESULT).write_text(json.dumps({"instance_id": "inst-1"}))
    found = batch_outputs.companions(tmp_path / "out")
    assert [w.code for w in found["inst-1"]] == [SCRIPT]
