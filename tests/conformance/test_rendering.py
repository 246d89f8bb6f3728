"""`--api completions` against CWM's own tokenizer, over whole scripted episodes.

The real agent loop runs against the scripted server through the real client; every
prompt it sends to /v1/completions is compared with CWM's
``CWMInstructTokenizer.encode_prompt_dialog`` of the same conversation (the byte-level
stand-in vocabulary makes the same text), decoded back to text.

And the test of the whole: with CWM's own prompts imported, every request of an episode
equals what CWM's environment would have sent for it — its system and user turns built
from its constants the way its ``start()`` builds them, its tool messages from its own
wrapping of the command outputs — budget numbers aside.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import make_buggy_repo

from cwm_agent.agent import Agent
from cwm_agent.factory import open_model, open_runtime
from cwm_agent.models.cwm_chat import defuse
from cwm_agent.scripted_server import ScriptedServer
from cwm_agent.settings import AgentConfig, ModelSettings, RuntimeSettings
from cwm_agent.trajectory import Trajectory

from .conftest import SWE_ENV, cwm_constants, cwm_system, cwm_user

ISSUE = "add() subtracts: add(2, 3) returns -1 instead of 5."
FIX = "mathlib/ops.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE"


def reply(tool: str, body: str, thought: str = "Next.") -> str:
    """A completion: the prompt ends with `<think>\\n`, so the reply starts after it."""
    return f"{thought}\n</think>\n<tool: {tool}>\n{body}\n</tool>"


def cwm_text(tokenizer, dialog) -> str:
    """CWM's tokens of ``dialog`` as text; its contents are plain tokens, which a text
    prompt writes with cwm-agent's defused ``<|...|>`` (docs/CWM.md)."""
    tokens = tokenizer.encode_prompt_dialog(dialog)
    special = len(tokenizer.tkt_model._mergeable_ranks)
    parts, run = [], []
    for token in [*tokens, None]:
        if token is not None and token < special:
            run.append(token)
            continue
        if run:
            parts.append(defuse(tokenizer.tkt_model.decode(run)))
            run = []
        if token is not None:
            parts.append(tokenizer.tkt_model.decode([token]))
    return "".join(parts)


def as_cwm_dialog(messages):
    """cwm-agent's messages as CWM's chat messages, plus its generation prefix."""
    from cwm.text.datatypes import CWMChatMessage

    build = {
        "system": lambda m: CWMChatMessage.system(m["content"]),
        "user": lambda m: CWMChatMessage.user(m["content"]),
        "assistant": lambda m: CWMChatMessage.assistant(m["content"]),
        "tool": lambda m: CWMChatMessage.tool_result(m["content"], tool=m["name"]),
    }
    return [build[m["role"]](m) for m in messages] + [CWMChatMessage.assistant("<think>\n")]


def run_episode(tmp_path: Path, script: list[str], config: AgentConfig):
    """Run the real loop on the buggy repository; (prompts sent, messages, runtime facts)."""
    repo = make_buggy_repo(tmp_path / "repo")
    runtime = open_runtime(RuntimeSettings(), repo, "render")
    traj = Trajectory(tmp_path / "traj.json", "render", {}, ISSUE)
    with ScriptedServer(script) as server:
        settings = ModelSettings("scripted-cwm", server.base_url, max_retries=0)
        assert settings.transport == "completions"  # `auto` picks it for CWM's names
        model = open_model(settings)
        try:
            result = Agent(model, runtime, config, traj).run(ISSUE)
            patch_file = runtime.read_file("fix.patch").decode()
            root = runtime.root
        finally:
            runtime.close()
            model.close()
    assert result.status == "submitted", result.reason
    prompts = [r.body["prompt"] for r in server.requests if r.path.endswith("/completions")]
    return prompts, traj.data["messages"], root, patch_file


EPISODE = [
    reply("bash", "printf 'a\\n'", "First a line with its newline."),
    reply("bash", "printf '<|%s|> not the end' eot_id"),  # a reply cannot hold it itself
    "I think I know the fix.\n</think>\nNo call here.",  # a format error
    reply("edit", "mathlib/ops.py\nno markers"),  # the edit tool reports it
    reply("edit", FIX),
    reply("create", "notes.txt\nchanged add()\n"),
    reply("bash", "cd mathlib && git diff > ../fix.patch"),
    reply("submit", "../fix.patch"),
    "The patch is in.\n</think>\n## Issue Summary\nadd() subtracted; it adds now.",
]


def test_every_prompt_is_cwms_rendering_of_the_conversation(tmp_path, tokenizer):
    prompts, messages, _, _ = run_episode(tmp_path, EPISODE, AgentConfig())
    assert len(prompts) == len(EPISODE)
    asked_at = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    roles = {m["role"] for m in messages}
    assert roles == {"system", "user", "assistant", "tool"}  # a format error's user turn too
    for prompt, end in zip(prompts, asked_at, strict=True):
        assert prompt == cwm_text(tokenizer, as_cwm_dialog(messages[:end]))
    assert "<|\u200beot_id|> not the end" in prompts[2]  # content never ends a turn


def normalize(text: str) -> str:
    """Budget numbers aside: CWM counts tokens with its tokenizer, cwm-agent estimates."""
    return re.sub(r"\* Remaining tokens: -?\d+", "* Remaining tokens: N", text)


def test_with_cwms_prompts_every_request_is_what_cwms_environment_sends(
    tmp_path, tokenizer, imported_set
):
    from cwm.text.datatypes import CWMChatMessage

    steps = [  # (reply, the tool, what the command writes: CWM's raw feedback)
        (reply("bash", "printf 'hello\\n'"), "bash", "hello\n"),
        (reply("bash", "printf 'no newline'"), "bash", "no newline"),
        (reply("bash", "true"), "bash", ""),
        (reply("bash", "sh -c 'echo oops; exit 1'"), "bash", "oops\n"),
        (
            reply("bash", "sed -i 's/a - b/a + b/' mathlib/ops.py && git diff > fix.patch"),
            "bash",
            "",
        ),
        (reply("submit", "fix.patch"), "submit", None),  # CWM: its submission text
    ]
    summary = "Done.\n</think>\n## Issue Summary\nFixed."
    config = AgentConfig(prompts=str(imported_set), max_steps=20, timeout=90, max_context=50_000)
    prompts, _, root, patch_file = run_episode(tmp_path, [s[0] for s in steps] + [summary], config)
    texts = cwm_constants(SWE_ENV)
    dialog = [
        CWMChatMessage.system(cwm_system(90, 50_000, 20)),
        CWMChatMessage.user(cwm_user(ISSUE, root)),
    ]
    expected = []
    for step, (completion, tool, output) in enumerate(steps, 1):
        expected.append(cwm_text(tokenizer, [*dialog, CWMChatMessage.assistant("<think>\n")]))
        dialog.append(CWMChatMessage.assistant("<think>\n" + completion))
        if output is None:
            output = texts["SUBMISSION_FEEDBACK_PROMPT"].format(pred_patch=patch_file)
        body = texts["FEEDBACK_OUTPUT_PROMPT"].format(feedback=output)
        budget = texts["BUDGET_NOTICE_TEMPLATE"].format(
            remaining_turns=20 - step, remaining_tokens=0
        )
        dialog.append(CWMChatMessage.tool_result(f"{body}\n\n{budget}", tool=tool))
    expected.append(cwm_text(tokenizer, [*dialog, CWMChatMessage.assistant("<think>\n")]))
    assert len(prompts) == len(expected)
    for ours, theirs in zip(prompts, expected, strict=True):
        assert normalize(ours) == normalize(theirs)
    left = [int(n) for n in re.findall(r"Remaining tokens: (\d+)", prompts[-1])]
    assert left == sorted(left, reverse=True) and 40_000 < left[0] < 50_000  # it does count


@pytest.mark.parametrize("content", ["", "x", "x\n", "<output>\n</output>"])
def test_a_tool_message_renders_as_cwm_renders_it(tokenizer, content):
    from cwm_agent.models.cwm_chat import render_chat

    messages = [
        {"role": "system", "content": "  system text \n"},
        {"role": "user", "content": "\nthe issue\n\n"},
        {"role": "assistant", "content": "<think>\nr\n</think>\n<tool: bash>\nls\n</tool>\n"},
        {"role": "tool", "name": "bash", "tool_call_id": "cwm-1", "content": content},
    ]
    assert render_chat(messages) == cwm_text(tokenizer, as_cwm_dialog(messages))
    json.dumps(messages)  # the same messages are what the chat API would get
