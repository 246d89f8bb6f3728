"""The agent loop on its own: a FakeModel in-process, a real local runtime and trajectory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FakeModel, cwm, summary

from cwm_agent.agent import Agent
from cwm_agent.factory import open_runtime
from cwm_agent.protocol import render_tool_result
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
    # stored once: in `patch`; its submission says it is the final one
    assert data["submissions"] == [{"path": "fix.patch", "final": True}]
    assert data["patch"] == result.patch
    assert data["messages"][-1] == {"role": "assistant", "content": replies[-1]}


def test_a_reply_without_a_call_before_any_submission_is_a_format_error(runtime, tmp_path):
    model = FakeModel([summary("I fixed it (but never submitted).")], default="nothing")
    result, data = run(runtime, tmp_path, model, max_format_errors=1)
    assert result.status == "format_errors" and result.patch is None
    assert (
        "A reply without a tool call is only accepted after a valid submission"
        in (data["messages"][-1]["content"])
    )


def tool_results(data) -> list[str]:
    return [m["content"] for m in data["messages"] if m["role"] == "tool"]


def test_tool_paths_are_relative_to_the_sessions_directory(runtime, tmp_path):
    """After `cd mathlib`, edit/create/submit take paths from there, as CWM's tools do."""
    replies = [
        cwm("bash", "cd mathlib"),
        cwm("edit", FIX.replace("mathlib/ops.py", "ops.py")),
        cwm("create", "notes.txt\nadd() fixed\n"),
        cwm("bash", "git add -N notes.txt && git diff -- . > ../fix.patch"),
        cwm("submit", "../fix.patch"),
        summary(),
    ]
    result, data = run(runtime, tmp_path, FakeModel(replies))
    assert result.status == "submitted", tool_results(data)
    assert "+    return a + b" in result.patch and "b/mathlib/notes.txt" in result.patch
    assert "fix.patch" not in result.patch
    assert "+add() fixed" in result.patch and "\\ No newline" not in result.patch


def test_a_malformed_edit_body_is_the_edit_result_with_its_budget(runtime, tmp_path):
    replies = [cwm("edit", "mathlib/ops.py\nreturn a + b"), cwm("bash", "true")]
    result, data = run(runtime, tmp_path, FakeModel(replies), max_steps=2, max_format_errors=1)
    assert result.status == "limit"  # not a format error: one in a row would have ended it
    first = tool_results(data)[0]
    assert first.startswith("<output>\nNo change was made: the edit body has no '<<<<<<< SEARCH'")
    assert "</output>\n\n<budget>\n* Remaining turns: 1\n" in first
    assert data["steps"][0]["format_error"] is None
    assert data["steps"][0]["action"]["args"]["body"] == "mathlib/ops.py\nreturn a + b"


def test_observations_are_the_commands_bytes_and_the_budget_counts_them(runtime, tmp_path):
    model = FakeModel([cwm("bash", "echo hello"), cwm("bash", "true"), cwm("bash", "exit 3")])
    _, data = run(runtime, tmp_path, model, max_steps=3, max_context=100_000)
    hello, empty, _ = tool_results(data)
    assert hello.startswith("<output>\nhello\n\n</output>\n\n<budget>\n* Remaining turns: 2\n")
    assert empty.startswith("<output>\n\n</output>")
    assert "[exit code" not in "".join(tool_results(data))
    # The context left once this very result is in it (CWM's count): FakeModel reports
    # 110 tokens used; the message itself (with the budget's template) about len/4 more.
    left = int(hello.rsplit("Remaining tokens: ", 1)[1].split("\n")[0])
    assert left == 100_000 - 110 - len(render_tool_result("hello\n", 2, 0)) // 4


def test_max_output_tokens_bounds_one_result(runtime, tmp_path):
    model = FakeModel([cwm("bash", "seq 1 100000")])
    _, data = run(runtime, tmp_path, model, max_steps=1, max_output_tokens=100)
    output = tool_results(data)[0].split("</output>")[0]
    assert output.startswith("<output>\n1\n2\n") and output.endswith("100000\n\n")
    assert "characters (" in output and "cut ...]" in output
    assert 300 < len(output) < 600  # 100 tokens, about 400 characters


def test_an_accepted_submission_is_shown_in_submission_tags(runtime, tmp_path):
    replies = [cwm("edit", FIX), cwm("bash", "git diff > fix.patch"), cwm("submit", "fix.patch")]
    result, data = run(runtime, tmp_path, FakeModel(replies, default=summary()))
    accepted = tool_results(data)[-1]
    assert f"<submission>\n{result.patch}\n</submission>" in accepted


def test_a_prompt_set_folder_replaces_only_the_templates_it_has(runtime, tmp_path):
    folder = tmp_path / "my-prompts"
    folder.mkdir()
    (folder / "user.j2").write_text("Fix this in {{ root }}:\n{{ issue }}\n")
    (folder / "submission.j2").write_text("ACCEPTED\n{{ patch }}")
    replies = [cwm("edit", FIX), cwm("bash", "git diff > fix.patch"), cwm("submit", "fix.patch")]
    model = FakeModel(replies, default=summary())
    result, data = run(runtime, tmp_path, model, prompts=str(folder))
    system, user = data["messages"][:2]
    assert user["content"] == f"Fix this in {runtime.root}:\nadd() is wrong"
    assert system["content"].startswith("You always reason before responding")  # bundled
    assert tool_results(data)[-1].startswith(f"<output>\nACCEPTED\n{result.patch}")
    recorded = data["config"]["prompt_set"]
    assert recorded["name"] == str(folder.resolve()) and recorded["own_templates"] == [
        "user",
        "submission",
    ]
    from cwm_agent.prompt_sets import load

    assert recorded["sha256"] == load(str(folder)).sha256 != load(None).sha256
    assert data["config"]["prompt_set"]["path"] == str(folder.resolve())


def test_an_unknown_prompt_set_is_a_usage_error(runtime, tmp_path):
    from cwm_agent.errors import UsageError

    with pytest.raises(UsageError) as caught:
        run(runtime, tmp_path, FakeModel(), prompts="no-such-set")
    assert "no prompt set 'no-such-set'" in caught.value.message
    assert "cwm-agent prompts list" in caught.value.hint


def test_the_last_valid_submission_wins(runtime, tmp_path):
    """As in CWM, where every accepted submit replaces the one before."""
    second = FIX.replace("a + b", "b + a")
    replies = [
        cwm("edit", FIX),
        cwm("bash", "git diff > one.patch"),
        cwm("submit", "one.patch"),
        cwm("edit", second.replace("a - b", "a + b", 1)),
        cwm("bash", "git diff > two.patch"),
        cwm("submit", "two.patch"),
        cwm("bash", "echo not a patch > bad.patch"),
        cwm("submit", "bad.patch"),
    ]
    result, data = run(runtime, tmp_path, FakeModel(replies, default=summary()))
    assert result.status == "submitted" and "+    return b + a" in result.patch
    first, last = data["submissions"]
    assert "+    return a + b" in first["patch"] and last == {"path": "two.patch", "final": True}
    assert "Submission rejected" in tool_results(data)[-1]


def test_a_long_issue_loses_its_middle_not_the_instructions(runtime, tmp_path):
    """CWM cuts the whole user turn to 8,192 tokens from the left; here the issue's middle
    goes (issue_max_tokens) and the task and summary template stay whole."""
    issue = "START " + "word " * 20_000 + " END"
    traj = Trajectory(tmp_path / "traj.json", "run-1", {"run_id": "run-1"}, issue)
    agent = Agent(FakeModel(), runtime, AgentConfig(issue_max_tokens=100), traj)
    user = agent._initial_messages(issue)[1]["content"]
    assert "START" in user and "END" in user and "characters (" in user
    assert len(user) < 2_000 and user.rstrip().endswith("## Testing and Verification")


def test_an_unexpected_exception_still_finishes_the_trajectory(runtime, tmp_path):
    model = FakeModel([cwm("bash", "true"), RuntimeError("a bug somewhere")])
    with pytest.raises(RuntimeError):
        run(runtime, tmp_path, model)
    data = json.loads((tmp_path / "traj.json").read_text())
    assert data["exit_status"] == "crashed" and "RuntimeError: a bug somewhere" in data["reason"]
    assert len(data["steps"]) == 1
