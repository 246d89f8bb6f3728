"""Log-probabilities in a reply, read from the shapes OpenAI-compatible servers send.

- chat: ``choices[0].logprobs.content`` = ``[{"token", "logprob", "top_logprobs": [{"token",
  "logprob"}]}]`` (OpenAI, vLLM, SGLang);
- completions: ``choices[0].logprobs`` = ``{"tokens", "token_logprobs", "top_logprobs":
  [{token: logprob}]}`` (OpenAI's legacy API, vLLM, llama.cpp's server).

Log-probabilities are an extra: a shape that cannot be read gives None (the caller falls
back to the reply's text), never an error.
"""

from __future__ import annotations

import math
from typing import Any

from ..types import TokenLogprob


def from_chat(choice: dict[str, Any]) -> tuple[TokenLogprob, ...] | None:
    data = choice.get("logprobs")
    content = data.get("content") if isinstance(data, dict) else None
    if not isinstance(content, list):
        return None
    found = []
    for item in content:
        if not isinstance(item, dict) or not _usable(item.get("token"), item.get("logprob")):
            return None
        top = tuple(
            (alt["token"], float(alt["logprob"]))
            for alt in item.get("top_logprobs") or ()
            if isinstance(alt, dict) and _usable(alt.get("token"), alt.get("logprob"))
        )
        found.append(TokenLogprob(item["token"], float(item["logprob"]), top))
    return tuple(found)


def from_text(choice: dict[str, Any]) -> tuple[TokenLogprob, ...] | None:
    data = choice.get("logprobs")
    if not isinstance(data, dict):
        return None
    tokens, values = data.get("tokens"), data.get("token_logprobs")
    tops = data.get("top_logprobs") or []
    if not isinstance(tokens, list) or not isinstance(values, list) or len(tokens) != len(values):
        return None
    found = []
    for n, (token, value) in enumerate(zip(tokens, values, strict=True)):
        if not isinstance(token, str):
            return None
        value = value if _usable(token, value) else -math.inf  # the prompt's first token: null
        alternatives = tops[n] if n < len(tops) and isinstance(tops[n], dict) else {}
        top = tuple((t, float(v)) for t, v in alternatives.items() if _usable(t, v))
        found.append(TokenLogprob(token, float(value), top))
    return tuple(found)


def _usable(token: Any, value: Any) -> bool:
    return (
        isinstance(token, str)
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not math.isnan(value)
    )
