"""CWM token text, the prompt, JSON round trips and the lenient parser."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cwm_agent.traces.format import (
    END_OF_TEXT,
    EVENT_TOKENS,
    FRAME_SEP,
    Frame,
    build_prompt,
    frames_from_json,
    frames_to_json,
    load_frames,
    mark_entry,
    parse_trace,
    render_frame,
    render_trace,
)

ADD_SOURCE = "def add(a, b):\n    c = a + b\n    return c\n"
ADD_FRAMES = [
    Frame("call", 1, "def add(a, b):", {"a": "1", "b": "2"}),
    Frame("line", 2, "    c = a + b", {"a": "..", "b": ".."}),
    Frame("line", 3, "    return c", {"a": "..", "b": "..", "c": "3"}),
    Frame("return", 3, "    return c", {}, "3"),
]
ADD_TEXT = (
    '<|call_sep|>{"a": "1", "b": "2"}<|action_sep|>def add(a, b):\n<|frame_sep|>'
    '<|line_sep|>{"a": "..", "b": ".."}<|action_sep|>    c = a + b\n<|frame_sep|>'
    '<|line_sep|>{"a": "..", "b": "..", "c": "3"}<|action_sep|>    return c\n<|frame_sep|>'
    '<|return_sep|><|action_sep|>    return c\n<|arg_sep|>"3"<|frame_sep|>'
    "<|end_of_text|>"
)


def test_exact_cwm_text_for_a_tiny_function():
    assert render_trace(ADD_FRAMES) == ADD_TEXT


def test_real_trace_of_the_tiny_function_renders_exactly(tmp_path):
    from cwm_agent.traces.runner import run_trace

    (tmp_path / "add.py").write_text(ADD_SOURCE)
    result = run_trace("add.py::add", "add(1, 2)", root=tmp_path)
    assert list(result.frames) == ADD_FRAMES
    assert render_trace(result.frames) == ADD_TEXT


def test_values_are_json_strings_of_reprs():
    frame = Frame("exception", 4, "    raise KeyError(k)", {}, "KeyError('x')")
    assert render_frame(frame) == (
        "<|exception_sep|><|action_sep|>    raise KeyError(k)\n"
        "<|arg_sep|>\"KeyError('x')\"<|frame_sep|>"
    )
    quoted = Frame("line", 1, "x = 1", {"s": "'say \"hi\"'", "u": "'é'"})
    assert render_frame(quoted).startswith(
        '<|line_sep|>{"s": "\'say \\"hi\\"\'", "u": "\'\\u00e9\'"}<|action_sep|>'
    )
    assert render_trace([], end=False) == ""


def test_mark_entry_and_prompt():
    source = (
        "import x\n\n@deco\ndef f(a):\n    return a\n\nclass C:\n    def f(self):\n        pass\n"
    )
    marked = mark_entry(source, "f")
    assert "def f(a):  # << START_OF_TRACE\n" in marked and "@deco\n" in marked
    method = mark_entry(source, "C.f")
    assert "    def f(self):  # << START_OF_TRACE\n" in method
    assert method.count("START_OF_TRACE") == 1
    with pytest.raises(ValueError, match="no function named 'g'"):
        mark_entry(source, "g")
    prompt = build_prompt(ADD_SOURCE, "add", ADD_FRAMES[:1])
    assert prompt == (
        "<|begin_of_text|><|trace_context_start|>def add(a, b):  # << START_OF_TRACE\n"
        "    c = a + b\n    return c\n<|frame_sep|>" + render_frame(ADD_FRAMES[0])
    )


def test_json_round_trip_and_validation():
    data = frames_to_json(ADD_FRAMES)
    assert data[0] == {
        "event": "call",
        "line": 1,
        "source": "def add(a, b):",
        "locals": {"a": "1", "b": "2"},
        "value": None,
    }
    assert frames_from_json(json.loads(json.dumps(data))) == ADD_FRAMES
    assert frames_from_json({"frames": data, "cut": False}) == ADD_FRAMES
    with pytest.raises(ValueError, match="frame event"):
        frames_from_json([{"event": "jump", "line": 1}])
    with pytest.raises(ValueError, match="list of frames"):
        frames_from_json("nope")


def test_load_frames_accepts_json_text_and_tracer_documents():
    assert load_frames(json.dumps(frames_to_json(ADD_FRAMES))) == (ADD_FRAMES, True)
    doc = {"frames": frames_to_json(ADD_FRAMES[:2]), "cut": True}
    assert load_frames(json.dumps(doc)) == (ADD_FRAMES[:2], False)
    frames, complete = load_frames(ADD_TEXT)
    assert complete and [(f.event, f.source, f.value) for f in frames] == [
        (f.event, f.source, f.value) for f in ADD_FRAMES
    ]


def test_parse_round_trip_with_context_numbers_lines():
    parsed = parse_trace(ADD_TEXT, context=ADD_SOURCE)
    assert parsed.frames == tuple(ADD_FRAMES) and parsed.ended and parsed.problems == ()


def test_parse_takes_the_context_from_an_echoed_prompt():
    text = build_prompt(ADD_SOURCE, "add") + ADD_TEXT
    parsed = parse_trace(text)
    assert parsed.frames == tuple(ADD_FRAMES)
    assert parsed.context is not None and "START_OF_TRACE" in parsed.context


def test_parse_tolerates_what_models_emit():
    text = (
        "garbage<|frame_sep|>"
        "<|call_sep|><|action_sep|>def f():  # << START_OF_TRACE\n<|frame_sep|>"  # empty locals
        '<|line_sep|>{"x": 1, "y": [1, 2]}<|action_sep|>    y = x<|frame_sep|>'  # non-strings
        '<|line_sep|>{"x": "1", "y": "2", "z<|action_sep|>    z = 3\n<|frame_sep|>'  # bad JSON
        "<|return_sep|><|action_sep|>    return z\n<|arg_sep|>3<|frame_sep|>"  # bare value
        "<|line_sep|>{}<|action_sep|>    oops"  # truncated, no end token
    )
    parsed = parse_trace(text)
    assert not parsed.ended
    call, line, broken, ret, last = parsed.frames
    assert call.locals == {} and call.source == "def f():"
    assert line.locals == {"x": "1", "y": "[1, 2]"} and line.source == "    y = x"
    assert broken.locals == {"x": "1", "y": "2"}
    assert ret.value == "3" and ret.source == "    return z"
    assert last.source == "    oops"
    problems = " | ".join(parsed.problems)
    assert "text before the first frame" in problems and "truncated" in problems
    assert "no end token" in problems and "not a JSON object" in problems


def test_parse_handles_chat_end_tokens_and_frames_without_action():
    parsed = parse_trace("<|line_sep|>{}<|frame_sep|><|return_sep|><|action_sep|>x<|eot_id|>junk")
    assert parsed.ended and [f.event for f in parsed.frames] == ["return"]
    assert parsed.frames[0].value is None


def test_duplicate_source_lines_number_forward():
    source = "def f(n):\n    n += 1\n    n += 1\n    return n\n"
    text = "".join(
        render_frame(f)
        for f in [
            Frame("call", 1, "def f(n):", {"n": "0"}),
            Frame("line", 2, "    n += 1", {"n": ".."}),
            Frame("line", 3, "    n += 1", {"n": "1"}),
        ]
    )
    assert [f.line for f in parse_trace(text, source).frames] == [1, 2, 3]


PIECES = [*EVENT_TOKENS.values(), FRAME_SEP, END_OF_TEXT, "<|action_sep|>", "<|arg_sep|>"]
PIECES += ["<|trace_context_start|>", "{", "}", '"', ":", ",", "..", "\n", "x", '"a"', "\\"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.lists(st.sampled_from(PIECES) | st.text(max_size=5)).map("".join)))
def test_parser_never_raises(text):
    parsed = parse_trace(text, context="def f():\n    x\n")
    for frame in parsed.frames:
        assert frame.event in EVENT_TOKENS
        render_frame(frame)  # whatever was recovered can be rendered again
