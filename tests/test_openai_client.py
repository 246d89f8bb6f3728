"""OpenAIModel through the real openai SDK against a real scripted HTTP server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cwm_agent.errors import ContextLengthError, ModelError
from cwm_agent.models.openai_client import OpenAIModel
from cwm_agent.scripted_server import ScriptedServer
from cwm_agent.types import ToolCall, Usage

MESSAGES = [
    {"role": "system", "content": "You are a coding agent."},
    {"role": "user", "content": "Fix the bug."},
]
FAST = {"Retry-After": "0.01"}  # the SDK ignores "0" and backs off 0.5 s+ instead
BASH_TOOL = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": "Run a command.",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
    },
}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def model_for(server: ScriptedServer, **kw: object) -> OpenAIModel:
    kw.setdefault("timeout", 5)
    kw.setdefault("max_retries", 3)
    return OpenAIModel("facebook/cwm", server.base_url, None, **kw)  # type: ignore[arg-type]


def test_request_body_carries_sampling_tools_and_extra_body_at_top_level() -> None:
    extra = {"chat_template_kwargs": {"enable_thinking": True, "preserve_previous_think": True}}
    with ScriptedServer(["ok"]) as server:
        model = model_for(server, temperature=0.7, top_p=0.9, max_tokens=512, extra_body=extra)
        model.complete(MESSAGES, tools=[BASH_TOOL])
    (req,) = server.requests
    assert req.path == "/v1/chat/completions"
    assert req.body["model"] == "facebook/cwm"
    assert req.body["messages"] == MESSAGES
    assert (req.body["temperature"], req.body["top_p"], req.body["max_tokens"]) == (0.7, 0.9, 512)
    assert req.body["chat_template_kwargs"] == extra["chat_template_kwargs"]
    assert req.body["tools"] == [BASH_TOOL]
    assert "tool_choice" not in req.body and "stream" not in req.body


def test_defaults_are_cwm_sampling_without_optional_fields() -> None:
    with ScriptedServer(["ok"]) as server:
        OpenAIModel("m", server.base_url, None).complete(MESSAGES)
    body = server.requests[0].body
    assert (body["temperature"], body["top_p"]) == (1.0, 0.95)
    assert not {"max_tokens", "tools", "tool_choice"} & set(body)


def test_key_and_base_url_come_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    with ScriptedServer(["ok"]) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        model = OpenAIModel("m", None, None)
        model.complete(MESSAGES)
    assert server.requests[0].headers["authorization"] == "Bearer sk-test-123"
    assert "sk-test-123" not in repr(model) and "sk-test-123" not in str(vars(model))


def test_placeholder_key_when_none_is_set() -> None:
    with ScriptedServer(["ok"]) as server:
        model_for(server).complete(MESSAGES)
    assert server.requests[0].headers["authorization"] == "Bearer none"
    assert server.requests[0]["headers"] is server.requests[0].headers  # dict-style access too


def test_reply_fields_usage_and_latency() -> None:
    usage = {"prompt_tokens": 120, "completion_tokens": 7}
    reply_entry = {"content": "done", "reasoning": "think hard", "usage": usage}
    with ScriptedServer([reply_entry, "default usage", {"content": None, "usage": None}]) as server:
        model = model_for(server)
        reply = model.complete(MESSAGES)
        default = model.complete(MESSAGES)
        bare = model.complete(MESSAGES)
    assert (reply.content, reply.reasoning, reply.finish_reason) == ("done", "think hard", "stop")
    assert reply.usage == Usage(120, 7) and reply.latency > 0
    assert default.usage.prompt_tokens == len(json.dumps(MESSAGES)) // 4
    assert (bare.content, bare.usage) == ("", Usage())


def test_tool_calls_are_parsed() -> None:
    calls = [
        {"name": "bash", "arguments": {"command": "ls"}, "id": "call_a"},
        {"name": "submit", "arguments": '{"path": "fix.patch"}'},
    ]
    with ScriptedServer([{"tool_calls": calls}]) as server:
        reply = model_for(server).complete(MESSAGES, tools=[BASH_TOOL])
    assert reply.tool_calls == (
        ToolCall("call_a", "bash", '{"command": "ls"}'),
        ToolCall("call_1", "submit", '{"path": "fix.patch"}'),
    )
    assert reply.content == "" and reply.finish_reason == "tool_calls"


def test_finish_reason_length_is_returned_not_raised() -> None:
    with ScriptedServer([{"content": "<think>cut", "finish_reason": "length"}]) as server:
        reply = model_for(server).complete(MESSAGES)
    assert (reply.content, reply.finish_reason) == ("<think>cut", "length")


def test_retries_500_503_429_then_succeeds() -> None:
    script = [
        {"status": 500, "headers": FAST},
        {"status": 503, "headers": FAST},
        {"status": 429, "headers": FAST, "body": {"error": {"message": "slow down"}}},
        "finally",
    ]
    with ScriptedServer(script) as server:
        start = time.monotonic()
        reply = model_for(server, max_retries=3).complete(MESSAGES)
        elapsed = time.monotonic() - start
    assert reply.content == "finally"
    assert len(server.requests) == 4
    assert elapsed < 0.35  # Retry-After honoured: the SDK's own backoff starts at ~0.4 s
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "1", "2", "3"]


def test_exhausted_retries_raise_model_error_with_status_and_url() -> None:
    err = {"error": {"message": "CUDA out of memory", "type": "InternalServerError"}}
    with ScriptedServer([{"status": 500, "body": err, "headers": FAST}] * 3) as server:
        with pytest.raises(ModelError) as info:
            model_for(server, max_retries=2).complete(MESSAGES)
    assert len(server.requests) == 3
    text = str(info.value)
    assert "HTTP 500" in text and "CUDA out of memory" in text and "3 attempt" in text
    assert server.base_url + "/chat/completions" in text and "server log" in text
    assert info.value.exit_code == 3


def test_hang_past_timeout_raises_within_timeout_times_attempts() -> None:
    with ScriptedServer([{"delay": 5, "content": "late"}] * 2) as server:
        start = time.monotonic()
        with pytest.raises(ModelError, match="within 0.3 s"):
            model_for(server, timeout=0.3, max_retries=1).complete(MESSAGES)
        elapsed = time.monotonic() - start
    assert len(server.requests) == 2
    assert elapsed < 0.3 * 2 + 0.5 + 0.5  # two timeouts + one backoff (<= 0.5 s) + slack


def test_dropped_connection_is_retried() -> None:
    with ScriptedServer([{"close": True}, "recovered"]) as server:
        assert model_for(server, max_retries=1).complete(MESSAGES).content == "recovered"
    assert len(server.requests) == 2


def test_dropped_connection_every_time_raises_model_error() -> None:
    with ScriptedServer([{"close": True}] * 2) as server:
        with pytest.raises(ModelError, match="Could not reach") as info:
            model_for(server, max_retries=1).complete(MESSAGES)
    assert "--base-url" in info.value.hint and len(server.requests) == 2


def test_nothing_listening_raises_model_error() -> None:
    with ScriptedServer([]) as server:
        url = server.base_url
    with pytest.raises(ModelError, match="Could not reach"):
        OpenAIModel("m", url, None, max_retries=0, timeout=2).complete(MESSAGES)


@pytest.mark.parametrize(
    "bad",
    [{"raw": "not json"}, {"raw": "<html>Login</html>", "content_type": "text/html"}],
)
def test_invalid_body_is_tried_twice_then_model_error(bad: dict) -> None:
    with ScriptedServer([bad, bad]) as server:
        with pytest.raises(ModelError, match="Bad reply") as info:
            model_for(server).complete(MESSAGES)
    assert len(server.requests) == 2 and "--base-url" in info.value.hint


def test_invalid_body_once_is_transient() -> None:
    with ScriptedServer([{"raw": "{trunc"}, "fine"]) as server:
        assert model_for(server).complete(MESSAGES).content == "fine"


def test_empty_choices_raise_model_error() -> None:
    with ScriptedServer([{"choices": []}] * 2) as server:
        with pytest.raises(ModelError, match="no choices"):
            model_for(server).complete(MESSAGES)
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "message",
    [
        # vLLM / OpenAI
        "This model's maximum context length is 131072 tokens. However, you requested 140000.",
        # llama.cpp
        "the request exceeds the available context size, try increasing it",
        # SGLang
        "The input (140000 tokens) is longer than the model's context length (131072 tokens).",
    ],
)
def test_context_length_error_is_never_retried(message: str) -> None:
    body = {"error": {"message": message, "type": "BadRequestError", "code": 400}}
    with ScriptedServer([{"status": 400, "body": body}, "unused"]) as server:
        with pytest.raises(ContextLengthError) as info:
            model_for(server, max_retries=4).complete(MESSAGES)
    assert len(server.requests) == 1
    assert message in str(info.value)


def test_other_400_is_a_model_error_not_context() -> None:
    body = {"error": {"message": "temperature must be positive"}}
    with ScriptedServer([{"status": 400, "body": body}]) as server:
        with pytest.raises(ModelError, match="temperature must be positive") as info:
            model_for(server).complete(MESSAGES)
    assert not isinstance(info.value, ContextLengthError) and len(server.requests) == 1


def test_401_hints_at_the_key_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-987")
    body = {"error": {"message": "Incorrect API key provided"}}
    with ScriptedServer([{"status": 401, "body": body}]) as server:
        with pytest.raises(ModelError) as info:
            model_for(server).complete(MESSAGES)
    assert "OPENAI_API_KEY" in info.value.hint and "sk-secret-987" not in str(info.value)
    assert len(server.requests) == 1


def test_404_hints_at_model_and_base_url() -> None:
    body = {"error": {"message": "The model `nope` does not exist."}}
    with ScriptedServer([{"status": 404, "body": body}]) as server:
        with pytest.raises(ModelError, match="does not exist") as info:
            model_for(server).complete(MESSAGES)
    assert "--base-url" in info.value.hint and "facebook/cwm" in info.value.hint
    assert f"GET {server.base_url}/models" in info.value.hint


def test_complete_text_uses_raw_completions() -> None:
    extra = {"chat_template_kwargs": {"enable_thinking": True}, "top_k": 20}
    with ScriptedServer([{"text": '{"x": "1"}<|frame_sep|>'}]) as server:
        model = model_for(server, extra_body=extra)
        reply = model.complete_text(
            "<|trace_context_start|>", stop=["<|frame_sep|>"], max_tokens=64
        )
    (req,) = server.requests
    assert req.path == "/v1/completions"
    assert req.body["prompt"] == "<|trace_context_start|>" and req.body["stop"] == ["<|frame_sep|>"]
    assert req.body["max_tokens"] == 64 and req.body["top_k"] == 20
    assert "chat_template_kwargs" not in req.body and "messages" not in req.body
    assert reply.content == '{"x": "1"}<|frame_sep|>' and reply.usage.prompt_tokens > 0


def test_callable_script_reacts_to_the_request() -> None:
    def reply(body: dict) -> str:
        return f"you sent {len(body['messages'])} messages"

    with ScriptedServer(reply) as server:
        assert model_for(server).complete(MESSAGES).content == "you sent 2 messages"


def test_exhausted_script_fails_loudly_and_at_once() -> None:
    with ScriptedServer(["only one"]) as server:
        model = model_for(server, max_retries=4)
        model.complete(MESSAGES)
        with pytest.raises(ModelError, match="script exhausted"):
            model.complete(MESSAGES)
    assert len(server.requests) == 2


def test_models_endpoint_lists_the_model() -> None:
    with ScriptedServer([], model="facebook/cwm") as server:
        with urllib.request.urlopen(server.base_url + "/models", timeout=5) as resp:
            data = json.load(resp)
    assert [m["id"] for m in data["data"]] == ["facebook/cwm"]


def test_keep_alive_requests_are_fast_and_share_one_connection() -> None:
    with ScriptedServer(lambda body: "ok") as server:
        model = model_for(server)
        model.complete(MESSAGES)  # warm up
        start = time.monotonic()
        for _ in range(50):
            model.complete(MESSAGES)
        elapsed = time.monotonic() - start
    assert elapsed < 2.0  # ~1-2 ms each here; Nagle + delayed ACK would make it ~40 ms each
    assert len({r.peer for r in server.requests}) == 1


def test_importing_the_module_does_not_import_the_sdk() -> None:
    code = "import sys, cwm_agent.models.openai_client; print('openai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_server_runs_standalone(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"model": "demo", "replies": ["from the script"]}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cwm_agent.scripted_server", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = proc.stderr.readline().strip()  # type: ignore[union-attr]
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        reply = OpenAIModel("demo", base_url, None, max_retries=0, timeout=5).complete(MESSAGES)
        assert reply.content == "from the script"
    finally:
        proc.terminate()
        stdout, _ = proc.communicate(timeout=5)
    assert stdout == ""


def message_entry(message: dict, **extra: object) -> dict:
    """A scripted 200 whose choice carries exactly ``message`` (any JSON in any field)."""
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}
    return {"choices": [choice], **extra}


def test_content_given_as_a_list_of_text_parts_is_joined() -> None:
    """The OpenAI schema allows content as parts; text and refusal parts are text."""
    parts = [
        {"type": "text", "text": "<think>\nwhy\n</think>\n"},
        {"type": "output_text", "text": "<tool: bash>\nls\n"},
        {"type": "refusal", "refusal": "</tool>"},
        "!",
    ]
    reasoning = [{"type": "text", "text": "first "}, {"type": "text", "text": "second"}]
    entry = message_entry({"content": parts, "reasoning_content": reasoning})
    with ScriptedServer([entry]) as server:
        reply = model_for(server).complete(MESSAGES)
    assert reply.content == "<think>\nwhy\n</think>\n<tool: bash>\nls\n</tool>!"
    assert reply.reasoning == "first second"


@pytest.mark.parametrize(
    ("message", "usage", "said"),
    [
        ({"content": 5}, None, "the reply's content is a number, not text: 5"),
        ({"content": {"text": "x"}}, None, "the reply's content is a JSON dict"),
        ({"content": True}, None, "the reply's content is a boolean"),
        ({"content": [{"type": "image_url", "image_url": {}}]}, None, "a part that is not text"),
        ({"content": [{"type": "text", "text": 3}]}, None, "a part that is not text"),
        ({"content": "ok", "reasoning_content": 7}, None, "the reply's reasoning is a number"),
        ({"content": "ok"}, {"prompt_tokens": "lots"}, 'prompt_tokens is not a token count: "lo'),
        ({"content": "ok"}, {"completion_tokens": -1}, "usage.completion_tokens is not a token"),
        ({"content": "ok"}, {"prompt_tokens": 1.5}, "usage.prompt_tokens is not a token count"),
        ({"content": "ok"}, {"prompt_tokens": True}, "usage.prompt_tokens is not a token count"),
        ({"content": "ok"}, {"prompt_tokens": [1]}, "usage.prompt_tokens is not a token count"),
        ({"content": "ok"}, "many", 'usage is not an object of token counts: "many"'),
        ({"tool_calls": [{"id": "c", "function": {"name": 3}}]}, None, "name is not a string: 3"),
    ],
    ids=[
        "number", "object", "bool", "image-part", "text-not-str", "reasoning", "usage-word",
        "usage-negative", "usage-fraction", "usage-bool", "usage-list", "usage-str", "tool-name",
    ],
)  # fmt: skip
def test_unusable_fields_are_a_bad_reply_tried_twice(message, usage, said) -> None:
    entry = message_entry(message, **({} if usage is None else {"usage": usage}))
    with ScriptedServer([entry, entry]) as server:
        with pytest.raises(ModelError) as info:
            model_for(server).complete(MESSAGES)
    assert len(server.requests) == 2
    assert str(info.value.message).startswith(f"Bad reply from {server.base_url}")
    assert "(2 attempt(s))" in info.value.message and said in info.value.message
    assert "--base-url" in info.value.hint and info.value.exit_code == 3


def test_usable_usage_shapes() -> None:
    """Counts as floats with no fraction or as digit strings (some proxies) are counts."""
    shapes = [{"prompt_tokens": 12.0, "completion_tokens": "3"}, {"prompt_tokens": None}]
    entries = [message_entry({"content": "ok"}, usage=u) for u in shapes]
    with ScriptedServer(entries) as server:
        model = model_for(server)
        assert model.complete(MESSAGES).usage == Usage(12, 3)
        assert model.complete(MESSAGES).usage == Usage(0, 0)


def test_completion_text_as_a_number_is_a_bad_reply() -> None:
    entry = {"choices": [{"index": 0, "text": 42, "finish_reason": "stop"}]}
    with ScriptedServer([entry, entry]) as server:
        with pytest.raises(ModelError, match="the reply's text is a number, not text: 42"):
            model_for(server).complete_text("def f():")


def test_a_retry_after_beyond_what_the_sdk_waits_reports_one_attempt() -> None:
    """The SDK gives up at once on a Retry-After above its cap (120 s in openai 3.57) and
    waits out a shorter one: the message says how many requests were really sent, and what
    the server asked for."""
    day = {"status": 429, "headers": {"Retry-After": "86400"}, "body": {"error": {"message": "x"}}}
    with ScriptedServer([day]) as server:
        started = time.monotonic()
        with pytest.raises(ModelError) as info:
            model_for(server, max_retries=4).complete(MESSAGES)
        assert time.monotonic() - started < 5
    assert len(server.requests) == 1
    text = info.value.message
    assert "after 1 attempt(s)" in text and "asked to wait 86400 s (about 24 h)" in text
    assert "did not retry" in text and "86400 s" in info.value.hint


@pytest.mark.parametrize(
    ("headers", "wait"),
    [({"Retry-After": "0.2"}, "0.2 s"), ({"retry-after-ms": "200"}, "0.2 s")],
    ids=["seconds", "milliseconds"],
)
def test_a_short_retry_after_is_waited_out_and_reported(headers, wait) -> None:
    entry = {"status": 503, "headers": headers, "body": {"error": {"message": "busy"}}}
    with ScriptedServer([entry] * 3) as server:
        with pytest.raises(ModelError) as info:
            model_for(server, max_retries=2).complete(MESSAGES)
    assert len(server.requests) == 3
    assert "after 3 attempt(s)" in info.value.message
    assert f"asked to wait {wait} before trying again" in info.value.message
    assert "did not retry" not in info.value.message


def test_a_retry_after_date_far_ahead_is_reported() -> None:
    later = {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}
    entry = {"status": 429, "headers": later, "body": {"error": {"message": "quota"}}}
    with ScriptedServer([entry]) as server:
        with pytest.raises(ModelError) as info:
            model_for(server, max_retries=3).complete(MESSAGES)
    assert len(server.requests) == 1 and "after 1 attempt(s)" in info.value.message
    assert re.search(r"asked to wait \d+ s \(about \d+ h\)", info.value.message)
