"""Predicted traces: raw completions (whole or frame by frame), chat mode, and `trace predict`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FakeModel, run_cli

from cwm_agent.scripted_server import ScriptedServer
from cwm_agent.traces.format import END_OF_TEXT, FRAME_SEP, START_MARKER, Frame, render_trace
from cwm_agent.traces.predict import import_candidates, predict_trace
from cwm_agent.types import ModelReply, Usage

SOURCE = "def add(a, b):\n    total = a - b\n    return total\n"
CALL = Frame("call", 1, "def add(a, b):", {"a": "2", "b": "3"})
REST = [
    Frame("line", 2, "    total = a - b", {"a": "..", "b": ".."}),
    Frame("line", 3, "    return total", {"a": "..", "b": "..", "total": "-1"}),
    Frame("return", 3, "    return total", {}, "-1"),
]
REST_TEXT = render_trace(REST, end=False)


def test_whole_trace_in_one_request_seeded_with_the_call_frame():
    model = FakeModel([REST_TEXT])
    prediction = predict_trace(model, SOURCE, "add", seed=[CALL])
    (call,) = model.calls
    assert call["prompt"].startswith("<|begin_of_text|><|trace_context_start|>def add(a, b):")
    assert START_MARKER in call["prompt"]
    assert call["prompt"].endswith(render_trace([CALL], end=False))
    assert call["stop"] == [END_OF_TEXT]
    assert list(prediction.frames) == [CALL, *REST]
    assert prediction.ended and prediction.cut is None and prediction.problems == ()
    assert prediction.requests == 1 and prediction.usage == Usage(100, 10)
    assert prediction.seeded == 1 and prediction.seconds >= 0


def test_step_by_step_appends_one_frame_per_request_and_stops_at_the_entry_return():
    frames = [render_trace([f], end=False).removesuffix(FRAME_SEP) for f in REST]
    model = FakeModel(frames + ["should not be asked"])
    prediction = predict_trace(model, SOURCE, "add", seed=[CALL], step_by_step=True)
    assert len(model.calls) == 3
    assert all(c["stop"] == [FRAME_SEP, END_OF_TEXT] for c in model.calls)
    assert model.calls[2]["prompt"].endswith(render_trace([CALL, *REST[:2]], end=False))
    assert list(prediction.frames) == [CALL, *REST] and prediction.ended


def test_step_by_step_ends_on_an_empty_reply_and_is_bounded():
    raised = '<|exception_sep|><|action_sep|>    total = a - b\n<|arg_sep|>"TypeError()"'
    model = FakeModel([render_trace([REST[0]], end=False).removesuffix(FRAME_SEP), raised, ""])
    prediction = predict_trace(model, SOURCE, "add", seed=[CALL], step_by_step=True)
    assert prediction.frames[-1].value == "TypeError()" and prediction.ended
    assert prediction.requests == 3
    looping = FakeModel([render_trace([REST[0]], end=False).removesuffix(FRAME_SEP)] * 10)
    cut = predict_trace(looping, SOURCE, "add", seed=[CALL], step_by_step=True, max_frames=4)
    assert cut.requests == 4 and cut.cut == "max_frames" and not cut.ended


def test_token_budget_cut_is_reported():
    reply = ModelReply(REST_TEXT[:40], usage=Usage(5, 50), finish_reason="length")
    prediction = predict_trace(FakeModel([reply]), SOURCE, "add", max_tokens=50)
    assert prediction.cut == "max_tokens" and not prediction.ended


def test_raw_requests_keep_special_tokens_but_the_callers_model_is_untouched():
    model = FakeModel([REST_TEXT])
    predict_trace(model, SOURCE, "add", seed=[CALL])
    assert model.extra_body == {"chat_template_kwargs": {"x": 1}}


def test_chat_mode_asks_for_frames_as_text_and_drops_repeated_seed_frames():
    reply = "<think>\nadd subtracts\n</think>\n" + render_trace([CALL, *REST])
    model = FakeModel([reply])
    prediction = predict_trace(model, SOURCE, "add", seed=[CALL], api="chat", call="add(2, 3)")
    prompt = model.calls[0]["messages"][0]["content"]
    assert "def add(a, b):  # << START_OF_TRACE" in prompt and "`add(2, 3)`" in prompt
    assert "<|return_sep|>" in prompt and render_trace([CALL], end=False) in prompt
    assert list(prediction.frames) == [CALL, *REST]
    assert prediction.ended and prediction.api == "chat"


def test_extra_sources_go_before_the_entry_file():
    model = FakeModel([REST_TEXT])
    extra = [("lib/helpers.py", "def helper():\n    return 1\n")]
    predict_trace(model, SOURCE, "add", extra_sources=extra)
    prompt = model.calls[0]["prompt"]
    assert prompt.index("# file: lib/helpers.py") < prompt.index("def add(a, b):")


def test_unknown_entry_raises_value_error():
    with pytest.raises(ValueError):
        predict_trace(FakeModel([""]), SOURCE, "nope")


def test_import_candidates():
    source = "import os\nfrom pkg.mod import thing\nfrom . import sibling\nfrom ..up import x\n"
    found = import_candidates(source, "tests/unit/test_a.py")
    for path in ("pkg/mod.py", "pkg/mod/thing.py", "tests/unit/sibling.py", "tests/up.py"):
        assert path in found
    assert import_candidates("def broken(:\n", "a.py") == []


# ------------------------------------------------------------------ the real CLI


@pytest.fixture
def mod_dir(tmp_path: Path) -> Path:
    (tmp_path / "mod.py").write_text(SOURCE)
    return tmp_path


def test_trace_predict_compare_through_the_cli(mod_dir, cli_env):
    wrong = REST_TEXT.replace('"-1"', '"5"')  # a canned prediction that misses the sign
    with ScriptedServer([{"text": wrong}]) as server:
        args = ["trace", "predict", "mod.py::add", "--call", "add(2, 3)", "--root", str(mod_dir)]
        result = run_cli(
            [*args, "--base-url", server.base_url, "--model", "m", "--compare"], cli_env
        )
    assert result.returncode == 0, result.stderr
    trace_text, _, summary = result.stdout.partition("\n\n")
    assert trace_text.startswith(render_trace([CALL], end=False))
    assert "outcome: predicted returns 5; actual returns -1; MISMATCH" in summary
    assert "first divergence: frame 2 (line, line 3) `return total`" in summary
    assert "`total` was -1, not 5" in summary
    assert "1 request(s)" in result.stderr
    body = server.requests[0].body
    assert server.requests[0].path == "/v1/completions"
    assert body["skip_special_tokens"] is False and body["temperature"] == 0.0
    assert body["prompt"].endswith(render_trace([CALL], end=False))


def test_trace_predict_json_step_by_step(mod_dir, cli_env):
    steps = [{"text": render_trace([f], end=False).removesuffix(FRAME_SEP)} for f in REST]
    with ScriptedServer(steps) as server:
        args = ["trace", "predict", "mod.py::add", "--call", "add(2, 3)", "--root", str(mod_dir)]
        args += ["--base-url", server.base_url, "--model", "m"]
        result = run_cli([*args, "--step-by-step", "--compare", "--json"], cli_env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["prediction"]["requests"] == 3 and doc["prediction"]["ended"]
    assert doc["comparison"]["divergence"] is None and doc["comparison"]["return_match"]
    assert doc["real"]["returned"] == "-1"


def test_trace_predict_reports_model_failures_with_exit_3(mod_dir, cli_env):
    error = {"status": 500, "headers": {"x-should-retry": "false"}}
    with ScriptedServer([error]) as server:
        args = ["trace", "predict", "mod.py::add", "--call", "add(2, 3)", "--root", str(mod_dir)]
        result = run_cli([*args, "--base-url", server.base_url, "--model", "m"], cli_env)
    assert result.returncode == 3 and "Error:" in result.stderr
    assert result.stdout == ""
