"""A verifier's reply read as a score: P(YES) from the answer token's log-probabilities,
else the YES or NO its text says.

The answer token is the first generated token that reads "yes" or "no" (case, spaces and
punctuation aside) after any reasoning (``</think>``). P(YES) is the probability mass of the
"yes" spellings among that position's alternatives over the mass of "yes" and "no" ones:
the model's own confidence, which ranks candidates far better than a bare yes/no.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from cwm_agent.types import ModelReply, TokenLogprob

THINK_END = "</think>"
_WORD = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Reading:
    score: float | None  # P(YES); None when the reply gives no answer
    source: str  # "logprobs", "answer" (the text's YES/NO), or "none"
    answer: str  # "yes", "no" or ""
    reason: str = ""


def read(reply: ModelReply, max_tokens: int) -> Reading:
    if reply.logprobs:
        found = _from_logprobs(reply.logprobs)
        if found is not None:
            return found
    text = reply.content
    if THINK_END in text:
        text = text.rsplit(THINK_END, 1)[1]
    match = _WORD.search(text)
    if match:
        answer = match.group(1).lower()
        how = "no log-probabilities in the reply" if reply.logprobs is None else ""
        return Reading(1.0 if answer == "yes" else 0.0, "answer", answer, how)
    shown = " ".join(reply.content.split())[:120]
    why = f"the verifier answered neither YES nor NO: {shown!r}"
    if reply.finish_reason == "length":
        why += f" (cut at {max_tokens} tokens: raise --verifier-max-tokens)"
    return Reading(None, "none", "", why)


def normalized(token: str) -> str:
    return token.strip().strip("*_\"'`.,:;!()[]").lower()


def _from_logprobs(tokens: tuple[TokenLogprob, ...]) -> Reading | None:
    start = _after_reasoning(tokens)
    for item in tokens[start:]:
        word = normalized(item.token)
        if word not in ("yes", "no"):
            continue
        options = dict(item.top)
        options.setdefault(item.token, item.logprob)
        yes = sum(math.exp(v) for t, v in options.items() if normalized(t) == "yes")
        no = sum(math.exp(v) for t, v in options.items() if normalized(t) == "no")
        return Reading(yes / (yes + no), "logprobs", word)
    return None


def _after_reasoning(tokens: tuple[TokenLogprob, ...]) -> int:
    """The index of the first token after the last ``</think>`` (0 without one)."""
    text = ""
    ends = []
    for item in tokens:
        text += item.token
        ends.append(len(text))
    cut = text.rfind(THINK_END)
    if cut < 0:
        return 0
    done = cut + len(THINK_END)
    return next((n + 1 for n, end in enumerate(ends) if end >= done), len(tokens))
