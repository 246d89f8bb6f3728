"""`--api completions`: CWM's chat format rendered here and sent to ``/v1/completions``.

The most faithful way to drive CWM on a server whose chat template differs from the one
CWM was trained with. Facts from CWM's public prompting guide and tokenizer:

- the conversation starts with ``<|begin_of_text|>``; each message is
  ``<|start_header_id|>ROLE<|end_header_id|>\\n\\nCONTENT<|eot_id|>``;
- ROLE is ``system``, ``user``, ``assistant`` or ``tool: NAME`` for a tool's result;
- system, user and assistant contents are stripped of surrounding whitespace, tool
  results are sent as they are;
- in reasoning mode the prompt ends with the assistant header and ``<think>\\n``;
- generation stops at ``<|eot_id|>``, ``<|eom_id|>`` or ``<|end_of_text|>``.

The prefilled ``<think>\\n`` is put back in front of the reply, so the agent sees a complete
reasoning section, and earlier turns' reasoning stays in the context as it was written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..errors import UsageError
from ..types import ModelReply

BEGIN_OF_TEXT = "<|begin_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"
EOM = "<|eom_id|>"
END_OF_TEXT = "<|end_of_text|>"
THINK_PREFILL = "<think>\n"
STOP_TOKENS = (EOT, EOM, END_OF_TEXT)  # CWM's tokenizer ends a reply at any of these

# vLLM: the prompt already holds <|begin_of_text|> (do not add a second one), and keep
# special tokens in the text (trace prediction reads its frame separators there).
# Servers that do not know these keys ignore them (llama.cpp, SGLang).
COMPLETIONS_EXTRA_BODY = {"add_special_tokens": False, "skip_special_tokens": False}

# Text that a server would read as a special token: `<|name|>`. Message contents (an issue,
# a file the agent printed) must not be able to end a turn or forge a header, as CWM's own
# tokenizer guarantees by encoding contents as plain text.
_SPECIAL_RE = re.compile(r"<\|([A-Za-z0-9_]+)\|>")
_DEFUSED = "<|\u200b\\1|>"  # a zero-width space after the bar: same look, plain tokens


def header(role: str) -> str:
    return f"{START_HEADER}{role}{END_HEADER}\n\n"


def defuse(text: str) -> str:
    """``text`` with every ``<|name|>`` made plain text."""
    return _SPECIAL_RE.sub(_DEFUSED, text)


def render_chat(messages: Sequence[Mapping[str, Any]], *, think: bool = True) -> str:
    """The prompt for ``messages``, ending with the assistant header (and ``<think>\\n``)."""
    call_names = _call_names(messages)
    parts = [BEGIN_OF_TEXT]
    for message in messages:
        role = _role(message, call_names)
        parts.append(header(role) + defuse(_body(message)) + EOT)
    parts.append(header("assistant") + (THINK_PREFILL if think else ""))
    return "".join(parts)


def _role(message: Mapping[str, Any], call_names: Mapping[str, str]) -> str:
    role = str(message.get("role", ""))
    if role != "tool":
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"CWM's chat format has no role {role!r}")
        return role
    name = message.get("name") or call_names.get(str(message.get("tool_call_id")))
    if not name:
        raise ValueError("a tool message needs the tool's name (or a known tool_call_id)")
    return f"tool: {name}"


def _body(message: Mapping[str, Any]) -> str:
    content = message.get("content") or ""
    if not isinstance(content, str):  # a list of content parts: keep the text ones
        content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    if message.get("role") == "tool":
        return content
    reasoning = message.get("reasoning_content") or ""
    if reasoning and "</think>" not in content:  # a server split the reasoning off
        content = f"<think>\n{reasoning.strip()}\n</think>\n{content.lstrip()}"
    return content.strip()


def _call_names(messages: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """tool_call_id -> function name, from the assistants' native calls."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or ():
            fn = call.get("function") or {}
            if call.get("id") and fn.get("name"):
                names[str(call["id"])] = str(fn["name"])
    return names


def cut_at_stop(text: str) -> str:
    """The reply up to the first stop token (for servers that leave it in the text)."""
    ends = [i for i in (text.find(t) for t in STOP_TOKENS) if i >= 0]
    return text[: min(ends)] if ends else text


class CompletionsModel:
    """Satisfies ``types.Model`` through ``/v1/completions`` with CWM's chat format.

    Takes the same arguments as ``OpenAIModel`` (it owns one, for its transport, retries
    and error mapping) and keeps its ``complete_text`` for trace prediction.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        extra_body: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        from .openai_client import OpenAIModel

        body = {**COMPLETIONS_EXTRA_BODY, **(extra_body or {})}
        self._client = OpenAIModel(model, base_url, api_key, extra_body=body, **options)
        self.model = model
        self.base_url = self._client.base_url
        self.extra_body = self._client.extra_body  # the same dict: one source of truth

    def __repr__(self) -> str:
        return f"CompletionsModel(model={self.model!r}, base_url={self.base_url_shown!r})"

    def close(self) -> None:
        self._client.close()

    @property
    def base_url_shown(self) -> str:
        return self._client.base_url_shown

    def served_models(self) -> list[str]:
        return self._client.served_models()

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        max_tokens: int | None = None,
        logprobs: int | None = None,
    ) -> ModelReply:
        if tools:
            raise UsageError(
                "--api completions speaks CWM's own tool format only",
                hint="use --tool-format cwm with --api completions, or --api chat for "
                "native function calling",
            )
        reply = self._client.complete_text(
            render_chat(messages), stop=list(STOP_TOKENS), max_tokens=max_tokens, logprobs=logprobs
        )
        return replace(reply, content=THINK_PREFILL + cut_at_stop(reply.content))

    def complete_text(
        self,
        prompt: str,
        *,
        stop: list[str] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        logprobs: int | None = None,
    ) -> ModelReply:
        return self._client.complete_text(
            prompt, stop=stop, max_tokens=max_tokens, temperature=temperature, logprobs=logprobs
        )
