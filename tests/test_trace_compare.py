"""First divergence, ".." resolution, summary figures, and the `trace` commands."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner

from cwm_agent.errors import UsageError
from cwm_agent.traces.cli import trace
from cwm_agent.traces.compare import compare_traces, outcome, resolve_locals
from cwm_agent.traces.format import Frame, frames_to_json, parse_trace, render_trace
from cwm_agent.traces.runner import run_trace

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "traces"

REAL = [
    Frame("call", 1, "def f(s):", {"s": "'ab'"}),
    Frame("line", 2, "    n = 0", {"s": ".."}),
    Frame("line", 3, "    for c in s:", {"s": "..", "n": "0"}),
    Frame("line", 4, "        n += 1", {"s": "..", "n": "..", "c": "'a'"}),
    Frame("line", 3, "    for c in s:", {"s": "..", "n": "1", "c": ".."}),
    Frame("line", 5, "    return n", {"s": "..", "n": "..", "c": ".."}),
    Frame("return", 5, "    return n", {}, "1"),
]


def test_identical_traces_match_everywhere():
    result = compare_traces(REAL, REAL)
    assert result.divergence is None and result.return_match is True
    assert result.frames_matched == result.matched_prefix == 7
    assert result.state_match_rate == result.action_match_rate == 1.0
    assert "none (identical)" in result.summary()


def test_unchanged_markers_resolve_to_the_last_shown_value():
    spelled_out = [
        replace(f, locals={k: v for k, v in full.items()})
        for f, full in zip(REAL, resolve_locals(REAL), strict=True)
    ]
    assert spelled_out[4].locals == {"s": "'ab'", "n": "1", "c": "'a'"}
    assert compare_traces(spelled_out, REAL).divergence is None


def test_resolution_restarts_at_calls_and_returns():
    frames = [
        Frame("call", 1, "def f():", {}),
        Frame("line", 2, "    x = g()", {}),
        Frame("call", 5, "def g():", {}),
        Frame("line", 6, "    x = 9", {}),
        Frame("line", 7, "    return x", {"x": "9"}),
        Frame("return", 7, "    return x", {}, "9"),
        Frame("line", 3, "    return x", {"x": ".."}),  # unresolvable: written in full
    ]
    assert resolve_locals(frames)[-1] == {"x": ".."}
    assert resolve_locals(frames)[4] == {"x": "9"}


def test_state_divergence_names_the_variable():
    predicted = list(REAL)
    predicted[4] = replace(REAL[4], locals={"s": "..", "n": "2", "c": ".."})
    result = compare_traces(predicted, REAL)
    d = result.divergence
    assert d is not None and (d.index, d.kind, d.line, d.variable) == (4, "state", 3, "n")
    assert (d.predicted, d.actual) == ("2", "1")
    # frame 5 says n is unchanged (".."), so it carries the wrong 2 forward as well
    assert result.state_matched == 4 and result.state_total == 6
    assert result.action_match_rate == 1.0 and result.frames_matched == 5
    assert "`n` was 1, not 2" in d.describe()
    # a ".." where the value had changed is a state error too
    predicted[4] = replace(REAL[4], locals={"s": "..", "n": "..", "c": ".."})
    d = compare_traces(predicted, REAL).divergence
    assert d is not None and (d.variable, d.predicted, d.actual) == ("n", "0", "1")


def test_missing_and_extra_variables():
    predicted = list(REAL)
    predicted[3] = replace(REAL[3], locals={"s": "..", "n": ".."})
    d = compare_traces(predicted, REAL).divergence
    assert d is not None and (d.variable, d.predicted, d.actual) == ("c", None, "'a'")
    assert "was not predicted" in d.describe()
    predicted[3] = replace(REAL[3], locals={**REAL[3].locals, "z": "1"})
    d = compare_traces(predicted, REAL).divergence
    assert d is not None and (d.variable, d.predicted, d.actual) == ("z", "1", None)


def test_action_divergence_and_return_mismatch():
    predicted = [*REAL[:4], Frame("line", 5, "    return n", {"s": "..", "n": "1", "c": ".."})]
    predicted.append(Frame("return", 5, "    return n", {}, "2"))
    result = compare_traces(predicted, REAL)
    d = result.divergence
    assert d is not None and (d.index, d.kind) == (4, "action")
    assert (d.predicted, d.actual) == ("return n", "for c in s:")
    assert result.return_match is False
    assert result.headline().startswith("predicted: returns 2; actual: returns 1")


def test_short_and_long_predictions():
    short = compare_traces(REAL[:3], REAL)
    assert short.divergence is not None and short.divergence.kind == "missing"
    assert short.divergence.index == 3 and short.return_match is False
    assert short.action_match_rate == 3 / 7
    longer = compare_traces([*REAL, REAL[-1]], REAL)
    assert longer.divergence is not None and longer.divergence.kind == "extra"
    assert longer.matched_prefix == 7


def test_exception_outcomes_and_cut_traces():
    raising = [*REAL[:2], Frame("exception", 2, "    n = 0", {}, "NameError('n')")]
    result = compare_traces(REAL, raising)
    assert result.actual_outcome == "raises NameError('n') at line 2"
    assert result.return_match is False
    d = result.divergence
    assert d is not None and d.kind == "event" and (d.predicted, d.actual) == ("line", "exception")
    assert compare_traces(REAL, REAL[:3], real_complete=False).return_match is None
    assert outcome(REAL[:3]) is None


def test_real_trace_against_an_edited_copy_of_its_text():
    real = run_trace("sample.py::count_letters", "count_letters('abb', 'b')", root=FIXTURES)
    text = render_trace(real.frames).replace('"n": "1"', '"n": "7"', 1)
    predicted = parse_trace(text)
    result = compare_traces(predicted.frames, real.frames)
    d = result.divergence
    assert d is not None and d.kind == "state" and d.variable == "n"
    assert (d.predicted, d.actual, d.line) == ("7", "1", 15)
    assert result.return_match is True


def test_cli_run_text_json_and_context():
    runner = CliRunner()
    args = ["run", "sample.py::add", "--call", "add(1, 2)", "--root", str(FIXTURES)]
    text = runner.invoke(trace, args)
    assert text.exit_code == 0, text.output
    assert text.output.startswith('<|call_sep|>{"a": "1", "b": "2"}<|action_sep|>def add(a, b):')
    assert text.output.endswith("<|end_of_text|>\n")
    as_json = runner.invoke(trace, [*args, "--json"])
    assert [f["event"] for f in json.loads(as_json.output)] == ["call", "line", "line", "return"]
    prompt = runner.invoke(trace, [*args, "--context"])
    assert "def add(a, b):  # << START_OF_TRACE\n" in prompt.output
    assert prompt.output.startswith("<|begin_of_text|><|trace_context_start|>")


def test_cli_run_reports_cuts_and_bad_targets():
    runner = CliRunner()
    cut = runner.invoke(
        trace, ["run", "sample.py::spin", "--root", str(FIXTURES), "--max-steps", "5"]
    )
    assert cut.exit_code == 0 and "<|end_of_text|>" not in cut.stdout
    assert "trace cut after 5 frames (max_steps)" in cut.stderr
    bad = runner.invoke(trace, ["run", "sample.py::nope", "--root", str(FIXTURES)])
    assert isinstance(bad.exception, UsageError) and bad.exception.exit_code == 2


def test_cli_compare_text_against_json(tmp_path):
    real_path = tmp_path / "real.json"
    real_path.write_text(json.dumps(frames_to_json(REAL)))
    predicted = list(REAL)
    predicted[4] = replace(REAL[4], locals={"s": "..", "n": "2", "c": ".."})
    pred_path = tmp_path / "pred.txt"
    pred_path.write_text(render_trace(predicted))
    runner = CliRunner()
    out = runner.invoke(trace, ["compare", str(pred_path), str(real_path)])
    assert out.exit_code == 0, out.output
    assert "state exact match: 66.7% (4/6)" in out.output
    assert "frame 4 (line, line 3) `for c in s:`: `n` was 1, not 2" in out.output
    as_json = json.loads(
        runner.invoke(trace, ["compare", str(pred_path), str(real_path), "--json"]).output
    )
    assert as_json["divergence"]["variable"] == "n" and as_json["return_match"] is True
    assert as_json["state_match_rate"] == 0.6667
    stdin = runner.invoke(trace, ["compare", "-", str(real_path)], input=render_trace(REAL))
    assert "none (identical)" in stdin.output


def test_cli_compare_numbers_text_lines_from_the_source(tmp_path):
    source = tmp_path / "f.py"
    source.write_text("def f(s):\n    n = 0\n    for c in s:\n        n += 1\n    return n\n")
    real_path, pred_path = tmp_path / "real.txt", tmp_path / "pred.txt"
    real_path.write_text(render_trace(REAL))
    pred_path.write_text(render_trace([*REAL[:4], replace(REAL[4], locals={"n": "5"})]))
    args = ["compare", str(pred_path), str(real_path), "--json"]
    without = json.loads(CliRunner().invoke(trace, args).output)
    assert without["divergence"]["line"] is None
    numbered = json.loads(CliRunner().invoke(trace, [*args, "--source", str(source)]).output)
    assert numbered["divergence"]["line"] == 3 and numbered["divergence"]["variable"] == "s"


def test_cli_context_marks_methods_of_pytest_classes():
    args = ["run", "sample_tests.py::TestAdd::test_ok", "--root", str(FIXTURES), "--context"]
    out = CliRunner().invoke(trace, args)
    assert out.exit_code == 0, out.output
    assert "    def test_ok(self):  # << START_OF_TRACE\n" in out.output
    assert out.output.count("START_OF_TRACE") == 1
