"""The trace-prediction prompt against CWM's own neural-debugger demo (demos/cwmdbg.py):
the same source and frames make the same token text, decoded back from its tokens."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import FakeModel

from cwm_agent.traces.format import Frame, build_prompt
from cwm_agent.traces.predict import predict_trace

SOURCE = "def f(x):\n    y = x + 1\n    return y\n"
MARKED = "def f(x):  # << START_OF_TRACE\n    y = x + 1\n    return y\n"
FRAMES = [
    Frame("call", 1, "def f(x):", {"x": "2"}),
    Frame("line", 2, "    y = x + 1", {"x": ".."}),
    Frame("line", 3, "    return y", {"x": "..", "y": "3"}),
]


@pytest.fixture
def debugger(oracle, tokenizer, monkeypatch):
    """CWM's debugger with its HTTP call replaced: it records each prompt (as text) and
    answers with the next of our frames, as a server would."""
    spec = importlib.util.spec_from_file_location("cwmdbg", oracle / "demos" / "cwmdbg.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    prompts: list[str] = []
    answers = iter(FRAMES)

    class Reply:
        def __init__(self, tokens):
            self.tokens = tokens

        def json(self):
            return {"choices": [{"tokens": self.tokens}]}

    def post(url, json):  # noqa: A002 - the keyword requests.post is called with
        prompts.append(tokenizer.decode(json["prompt"], cut_at_stop_tokens=False))
        frame = next(answers)
        event = tokenizer.piece_to_id(f"<|{frame.event}_sep|>")
        tokens = [] if json["prompt"][-1] == event else [event]  # asked for, or the model's
        tokens += tokenizer.encode(_json(frame.locals)) + [tokenizer.action_sep_id]
        tokens += tokenizer.encode(frame.source + "\n") + [tokenizer.frame_sep_id]
        return Reply(tokens)

    monkeypatch.setattr(module.requests, "post", post)
    return module.CWMDebugger(MARKED, tokenizer, "localhost", 0), prompts


def _json(locals_: dict) -> str:
    return json.dumps(dict(locals_))


def test_the_prompt_is_cwms_debugger_prompt(debugger):
    dbg, prompts = debugger
    dbg.reset()  # asks for the call frame
    dbg.step()  # into the function: asks for a line frame
    dbg.step()  # the next event, whichever it is
    assert prompts[0] == build_prompt(SOURCE, "f") + "<|call_sep|>"
    assert prompts[1] == build_prompt(SOURCE, "f", FRAMES[:1]) + "<|line_sep|>"
    assert prompts[2] == build_prompt(SOURCE, "f", FRAMES[:2])


def test_a_seeded_prediction_sends_that_prompt(debugger):
    dbg, prompts = debugger
    dbg.reset()
    dbg.step()
    dbg.step()
    model = FakeModel(['<|return_sep|><|action_sep|>    return y\n<|arg_sep|>"3"<|frame_sep|>'])
    predict_trace(model, SOURCE, "f", seed=FRAMES[:2], step_by_step=True, max_frames=3)
    assert model.prompts[0] == prompts[2]
