"""What a model reply means, and the chat messages the loop sends back (pure functions)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from cwm_agent import protocol
from cwm_agent.errors import FormatError
from cwm_agent.redaction import redact
from cwm_agent.types import Action, ModelReply, ToolCall

CUT_OFF = (
    "your reply was cut off at the token limit before a complete tool call; "
    "keep your reasoning shorter."
)
NO_CALL = "your reply has no tool call."


def clean_reply(reply: ModelReply) -> ModelReply:
    """The reply with text that always encodes (see ``protocol.clean_text``)."""
    return _map_text(reply, protocol.clean_text)


def redacted_reply(reply: ModelReply, secrets: Sequence[str]) -> ModelReply:
    """The reply as it is stored, shown and sent back: no secret (the action runs unredacted)."""
    if not secrets:
        return reply
    return _map_text(reply, lambda text: redact(text, secrets), ids=False)  # ids pair calls


def redacted_action(action: Action, secrets: Sequence[str]) -> Action:
    if not secrets:
        return action
    args = {name: redact(value, secrets) for name, value in action.args.items()}
    return replace(action, args=args, body=redact(action.body, secrets))


def _map_text(reply: ModelReply, clean: Callable[[str], str], ids: bool = True) -> ModelReply:
    calls = tuple(
        ToolCall(clean(c.id) if ids else c.id, clean(c.name), clean(c.arguments))
        for c in reply.tool_calls
    )
    return replace(
        reply, content=clean(reply.content), reasoning=clean(reply.reasoning), tool_calls=calls
    )


def interpret(
    reply: ModelReply, tool_format: str, *, submitted: bool
) -> tuple[Action | None, str | None, list[tuple[str, str]]]:
    """The reply's action, or the format problem to report back, plus extra-call errors.

    ``(None, None, ...)`` means a reply without a tool call after a valid submission: the
    model's final summary.
    """
    extra: list[tuple[str, str]] = []
    try:
        if tool_format == "openai":
            action, extra = protocol.parse_openai_calls(reply.tool_calls)
            if action is None and extra:  # the first native call itself was invalid
                return None, extra[0][1], []
        else:
            _, action = protocol.parse_cwm_reply(reply.content)
    except FormatError as exc:
        if reply.finish_reason == "length":  # the cut, not the half-written call, is the news
            return None, CUT_OFF, extra
        return None, str(exc), extra  # the parser's message carries its own example
    if action is None and not submitted:
        return None, CUT_OFF if reply.finish_reason == "length" else NO_CALL, extra
    return action, None, extra


def assistant_message(reply: ModelReply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in reply.tool_calls
        ]
    return message


def tool_message(action: Action, content: str, step: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "tool", "content": content}
    if action.call_id is not None:
        message["tool_call_id"] = action.call_id
    else:
        # CWM renders the header `tool: NAME`; servers that validate the OpenAI schema
        # (llama.cpp) also want an id on every tool message.
        message["name"] = action.tool
        message["tool_call_id"] = f"cwm-{step}"
    return message
