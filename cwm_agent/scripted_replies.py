"""The bodies the scripted server answers with: chat and text completions, usage, and
log-probabilities in the shapes OpenAI and vLLM send.

- chat (``logprobs: true``, ``top_logprobs: K``): ``choices[0].logprobs.content`` is a
  list of ``{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}``;
- completions (``logprobs: K``): ``choices[0].logprobs`` holds the parallel lists
  ``tokens``, ``token_logprobs``, ``top_logprobs`` (one ``{token: logprob}`` per token) and
  ``text_offset``.

A request that does not ask gets ``"logprobs": null``, as from a real server.
"""

from __future__ import annotations

import json
import time
from typing import Any

Steps = list[dict[str, float]]  # per generated token: {token: logprob}, the generated one first


def usage(entry: dict[str, Any], prompt: Any, completion: str) -> dict[str, int] | None:
    if "usage" in entry:
        return entry["usage"]  # None: the reply carries no usage at all
    prompt_text = prompt if isinstance(prompt, str) else json.dumps(prompt)
    p, c = len(prompt_text) // 4, len(completion) // 4
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def chat_reply(entry: dict[str, Any], body: dict[str, Any], model: str) -> dict[str, Any]:
    steps: Steps = entry.get("logprobs") or []
    content = entry.get("content", "".join(_generated(steps)) if steps else None)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if entry.get("reasoning"):
        message["reasoning_content"] = entry["reasoning"]
    calls = []
    for i, call in enumerate(entry.get("tool_calls") or ()):
        args = call.get("arguments", {})
        args = args if isinstance(args, str) else json.dumps(args)
        fn = {"name": call["name"], "arguments": args}
        calls.append({"id": call.get("id", f"call_{i}"), "type": "function", "function": fn})
    if calls:
        message["tool_calls"] = calls
    finish = entry.get("finish_reason") or ("tool_calls" if calls else "stop")
    logprobs = _chat_logprobs(steps, body) if steps else None
    choices = [{"index": 0, "message": message, "finish_reason": finish, "logprobs": logprobs}]
    generated = (
        (content or "") + (entry.get("reasoning") or "") + (json.dumps(calls) if calls else "")
    )
    return {
        "id": f"chatcmpl-scripted-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": entry.get("choices", choices),
        "usage": usage(entry, body.get("messages", []), generated),
    }


def text_reply(entry: dict[str, Any], body: dict[str, Any], model: str) -> dict[str, Any]:
    steps: Steps = entry.get("logprobs") or []
    text = entry.get("text", entry.get("content", "".join(_generated(steps)))) or ""
    finish = entry.get("finish_reason") or "stop"
    logprobs = _text_logprobs(steps, body) if steps else None
    choices = [{"index": 0, "text": text, "finish_reason": finish, "logprobs": logprobs}]
    return {
        "id": f"cmpl-scripted-{time.monotonic_ns()}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": entry.get("choices", choices),
        "usage": usage(entry, body.get("prompt", ""), text),
    }


def _generated(steps: Steps) -> list[str]:
    return [next(iter(step)) for step in steps]


def _bytes(token: str) -> list[int]:
    return list(token.encode("utf-8"))


def _chat_logprobs(steps: Steps, body: dict[str, Any]) -> dict[str, Any] | None:
    """``choices[0].logprobs`` of a chat reply, when the request asked for them."""
    if not body.get("logprobs"):
        return None
    top = int(body.get("top_logprobs") or 0)
    content = []
    for step in steps:
        token, logprob = next(iter(step.items()))
        alternatives = sorted(step.items(), key=lambda kv: -kv[1])[:top]
        content.append(
            {
                "token": token,
                "logprob": logprob,
                "bytes": _bytes(token),
                "top_logprobs": [
                    {"token": t, "logprob": lp, "bytes": _bytes(t)} for t, lp in alternatives
                ],
            }
        )
    return {"content": content, "refusal": None}


def _text_logprobs(steps: Steps, body: dict[str, Any]) -> dict[str, Any] | None:
    """``choices[0].logprobs`` of a text completion (``logprobs: K`` in the request)."""
    asked = body.get("logprobs")
    if asked is None or asked is False:
        return None
    top = int(asked)
    tokens = _generated(steps)
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [next(iter(step.values())) for step in steps],
        "top_logprobs": [dict(sorted(step.items(), key=lambda kv: -kv[1])[:top]) for step in steps],
        "text_offset": offsets,
    }
