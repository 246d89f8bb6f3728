"""Log-probabilities from the scripted server to a score: the shapes (read by the `openai`
SDK's own types too), and a verifier reply read as P(YES)."""

from __future__ import annotations

import math

import openai
import pytest

from cwm_agent.models.openai_client import OpenAIModel
from cwm_agent.scripted_server import ScriptedServer
from cwm_agent.types import ModelReply, TokenLogprob
from cwm_agent.verification import answer

STEPS = [{"YES": math.log(0.8), "NO": math.log(0.15), "Yes": math.log(0.05)}]


def test_the_scripted_shapes_are_the_sdks_own():
    with ScriptedServer([{"logprobs": STEPS}, {"logprobs": STEPS}]) as server:
        client = openai.OpenAI(api_key="none", base_url=server.base_url, max_retries=0)
        chat = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "?"}], logprobs=True, top_logprobs=2
        )
        text = client.completions.create(model="m", prompt="?", logprobs=3)
    first = chat.choices[0].logprobs.content[0]
    assert chat.choices[0].message.content == "YES"
    assert (first.token, round(math.exp(first.logprob), 3)) == ("YES", 0.8)
    assert [t.token for t in first.top_logprobs] == ["YES", "NO"]  # top 2, most likely first
    assert text.choices[0].logprobs.tokens == ["YES"]
    assert set(text.choices[0].logprobs.top_logprobs[0]) == {"YES", "NO", "Yes"}


def test_logprobs_only_when_asked_and_read_by_our_client():
    replies = [{"logprobs": STEPS}, {"logprobs": STEPS}, {"logprobs": STEPS}]
    with ScriptedServer(replies) as server:
        model = OpenAIModel("m", server.base_url, max_retries=0)
        plain = model.complete([{"role": "user", "content": "?"}])
        chat = model.complete([{"role": "user", "content": "?"}], logprobs=3)
        text = model.complete_text("?", logprobs=3)
        assert "logprobs" not in server.requests[0].body
        assert server.requests[2].body["logprobs"] == 3
    assert plain.logprobs is None and plain.content == "YES"
    for reply in (chat, text):
        (token,) = reply.logprobs
        assert token.token == "YES" and dict(token.top)["NO"] == pytest.approx(math.log(0.15))


def _reply(tokens: list[tuple[str, dict[str, float]]], content: str | None = None, **kw):
    logprobs = tuple(
        TokenLogprob(t, top.get(t, -1.0), tuple((k, math.log(v)) for k, v in top.items()))
        for t, top in tokens
    )
    text = content if content is not None else "".join(t for t, _ in tokens)
    return ModelReply(text, logprobs=logprobs, **kw)


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ([("YES", {"YES": 0.6, "NO": 0.2, "Yes": 0.2})], 0.8),  # every spelling of yes counts
        ([(" no", {" no": 0.7, " yes": 0.3})], 0.3),
        ([("**", {"**": 1.0}), ("Yes", {"Yes": 0.9, "No": 0.1}), ("**", {"**": 1.0})], 0.9),
        # reasoning first, "</think>" split over tokens: the answer after it decides
        (
            [
                ("no", {"no": 1.0}),
                (" idea</th", {}),
                ("ink>", {}),
                ("\n", {}),
                ("YES", {"YES": 0.75, "NO": 0.25}),
            ],
            0.75,
        ),
        ([("YES", {"YES": 1.0})], 1.0),  # no alternative given: all the mass is on yes
    ],
)
def test_p_yes_from_the_answer_tokens_alternatives(tokens, expected):
    reading = answer.read(_reply(tokens), max_tokens=16)
    assert reading.source == "logprobs"
    assert reading.score == pytest.approx(expected)


def test_without_logprobs_the_text_answers_and_a_reply_without_an_answer_says_why():
    assert answer.read(ModelReply("<think>Yes, but</think>\nNo."), 16).score == 0.0
    parsed = answer.read(ModelReply("YES"), 16)
    assert (parsed.score, parsed.source) == (1.0, "answer")
    assert parsed.reason == "no log-probabilities in the reply"
    cut = answer.read(ModelReply("Let me think about th", finish_reason="length"), 16)
    assert cut.score is None
    assert "cut at 16 tokens: raise --verifier-max-tokens" in cut.reason
