"""The agent's real message shapes against a real server, past the first action.

A tiny model rarely writes a valid tool call, so the CLI runs seldom send a tool result.
Here the first reply is a scripted valid action and every later request goes to the real
server with the conversation exactly as the agent built it (tool result included).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cwm_agent.agent import Agent, AgentConfig
from cwm_agent.types import ModelReply, ToolCall

CWM_ACTION = ModelReply(content="<think>\nLook around.\n</think>\n<tool: bash>\nls calc\n</tool>")
NATIVE_ACTION = ModelReply(
    content="", tool_calls=(ToolCall("call_0", "bash", '{"command": "ls calc"}'),)
)


class FirstReplyScripted:
    """A `types.Model`: the scripted reply first, then the real model."""

    def __init__(self, first: ModelReply, real: Any) -> None:
        self.first: ModelReply | None = first
        self.real = real

    def complete(self, messages, tools=None, *, max_tokens=None) -> ModelReply:
        if self.first is not None:
            reply, self.first = self.first, None
            return reply
        return self.real.complete(messages, tools, max_tokens=max_tokens)


def run_two_steps(llama, repo: Path, tmp_path: Path, model_cls, name, first, tool_format):
    from cwm_agent.runtimes.local import LocalRuntime
    from cwm_agent.trajectory import Trajectory

    real = model_cls(name, llama.url, "none", temperature=0.0, max_retries=0)
    traj = Trajectory(tmp_path / "traj.json", "integration", {}, "median() is wrong")
    config = AgentConfig(
        tool_format=tool_format, max_steps=2, max_context=6144, max_reply_tokens=64
    )
    runtime = LocalRuntime.create(repo)
    try:
        agent = Agent(FirstReplyScripted(first, real), runtime, config, traj)
        result = agent.run((repo / "ISSUE.md").read_text())
    finally:
        runtime.close()
        real.close()
    assert result.exit_code in (0, 1) and result.steps == 2
    first_step, second_step = traj.data["steps"]
    assert first_step["action"]["tool"] == "bash"
    assert "stats.py" in first_step["observation"]["output"]
    assert second_step["action"] is not None or second_step["format_error"] is not None
    assert second_step["usage"]["prompt_tokens"] > 0  # the real server answered
    return traj


def test_cwm_format_over_completions(llama, example_repo, tmp_path):
    from cwm_agent.models.cwm_chat import CompletionsModel

    traj = run_two_steps(
        llama, example_repo, tmp_path, CompletionsModel, llama.chat_model, CWM_ACTION, "cwm"
    )
    assert traj.data["steps"][1]["reply"].startswith("<think>\n")


def test_cwm_format_over_chat(llama, example_repo, tmp_path):
    from cwm_agent.models.openai_client import OpenAIModel

    run_two_steps(llama, example_repo, tmp_path, OpenAIModel, llama.chat_model, CWM_ACTION, "cwm")


def test_openai_format_over_chat(llama, example_repo, tmp_path):
    from cwm_agent.models.openai_client import OpenAIModel

    traj = run_two_steps(
        llama, example_repo, tmp_path, OpenAIModel, llama.tools_model, NATIVE_ACTION, "openai"
    )
    tool_message = traj.messages[3]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_0"


def test_native_tool_calls_from_the_server_parse(llama):
    """The server's own tool-call shape (forced with tool_choice) goes through our client
    and parser: an action, or a format problem we report back."""
    from cwm_agent.models.openai_client import OpenAIModel
    from cwm_agent.protocol import OPENAI_TOOLS, parse_openai_calls

    model = OpenAIModel(
        llama.tools_model, llama.url, "none", temperature=0.0, max_retries=0,
        extra_body={"tool_choice": {"type": "function", "function": {"name": "bash"}}},
    )  # fmt: skip
    messages = [{"role": "user", "content": "List the files of the repository."}]
    try:
        reply = model.complete(messages, OPENAI_TOOLS, max_tokens=64)
    finally:
        model.close()
    assert reply.usage.prompt_tokens > 0
    assert [call.name for call in reply.tool_calls] == ["bash"]
    action, errors = parse_openai_calls(reply.tool_calls)
    assert (action is not None and action.tool == "bash") or errors
