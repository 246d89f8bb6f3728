"""The tracer, run for real in subprocesses on tests/fixtures/traces."""

from __future__ import annotations

import ast
import glob
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from cwm_agent.errors import UsageError
from cwm_agent.traces.format import frames_from_json, parse_trace, render_trace
from cwm_agent.traces.runner import TRACER_PATH, TargetError, TraceResult, run_trace

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "traces"
CRUXEVAL = SHARED_DATA / "cruxeval.jsonl"


def trace(target: str, call: str | None = None, **kw) -> TraceResult:
    return run_trace(target, call, root=FIXTURES, **kw)


def events(result: TraceResult) -> list[tuple[str, int | None]]:
    return [(f.event, f.line) for f in result.frames]


def test_loop_frames_locals_before_each_line_and_unchanged_marker():
    result = trace("sample.py::count_letters", "count_letters('ab', 'b')")
    assert result.returned == "1" and not result.cut and result.error is None
    assert events(result) == [
        ("call", 13), ("line", 14), ("line", 15), ("line", 16), ("line", 15),
        ("line", 16), ("line", 15), ("line", 17), ("return", 17),
    ]  # fmt: skip
    call, first, loop = result.frames[0], result.frames[1], result.frames[2]
    assert call.source == "def count_letters(s, letter):"
    assert call.locals == {"s": "'ab'", "letter": "'b'"}
    assert first.source == "    n = 0" and first.locals == {"s": "..", "letter": ".."}
    assert loop.locals == {"s": "..", "letter": "..", "n": "0"}  # n is set *before* line 15
    # `n` shown once as 0, then ".." until it changes to 1
    n_values = [f.locals.get("n") for f in result.frames if f.event == "line"]
    assert n_values == [None, "0", "..", "..", "..", "1", ".."]
    assert result.frames[-1].value == "1" and result.frames[-1].locals == {}


def test_recursion_opens_a_scope_per_call():
    result = trace("sample.py::fact", "fact(3)")
    calls = [f.locals["n"] for f in result.frames if f.event == "call"]
    returns = [f.value for f in result.frames if f.event == "return"]
    assert calls == ["3", "2", "1"] and returns == ["1", "2", "6"]
    assert result.returned == "6"


def test_values_are_shown_again_after_returning_from_a_callee():
    result = trace("sample.py::with_call")
    after = next(f for f in result.frames if f.line == 81)  # word = word + "c"
    # the caller's run was interrupted by count_letters' frames: full values again
    assert after.locals == {"word": "'ab'", "n": "1"}
    last_line = [f for f in result.frames if f.event == "line"][-1]
    assert last_line.locals == {"word": "'abc'", "n": ".."}


def test_stdlib_frames_are_skipped_but_callbacks_into_user_code_are_kept():
    result = trace("sample.py::callback", "callback('ab cd')")
    assert result.returned == "'AB CD'"
    source = (FIXTURES / "sample.py").read_text().splitlines()
    for frame in result.frames:  # every frame is a line of sample.py, none of re's
        assert source[frame.line - 1] == frame.source
    names = [f.source.strip() for f in result.frames if f.event == "call"]
    assert names.count("def shout(word):") == 2


def test_memory_addresses_are_stripped():
    result = trace("sample.py::boxed", "boxed(5)")
    rendered = render_trace(result.frames)
    assert " at 0x" not in rendered and " at 0x" not in (result.returned or "")
    assert result.returned == "<sample.Box object>"
    init = next(f for f in result.frames if f.source.strip().startswith("def __init__"))
    assert init.locals == {"self": "<sample.Box object>", "value": "5"}


def test_caught_exception_then_normal_return():
    result = trace("sample.py::caught", "caught(1)")
    kinds = [f.event for f in result.frames]
    assert "exception" in kinds and kinds[-1] == "return"
    exc = result.frames[kinds.index("exception")]
    assert exc.value == "ValueError('boom')" and exc.source.strip() == 'raise ValueError("boom")'
    assert result.returned == "2" and result.error is None


def test_uncaught_exception_ends_each_frame_with_an_exception_frame():
    result = trace("sample.py::outer_fail")
    assert result.error == "KeyError: 'missing'" and result.returned is None
    exits = [(f.event, f.line, f.value) for f in result.frames if f.is_exit]
    # no return frames while unwinding: the exception frames say how each scope ended
    assert exits == [
        ("exception", 55, "KeyError('missing')"),
        ("exception", 60, "KeyError('missing')"),
    ]
    assert render_trace(result.frames).endswith(
        "\"KeyError('missing')\"<|frame_sep|><|end_of_text|>"
    )


def test_step_limit_cuts_the_trace():
    result = trace("sample.py::spin", max_steps=25)
    assert result.cut and result.reason == "max_steps" and len(result.frames) == 25
    assert not render_trace(result.frames, end=not result.cut).endswith("<|end_of_text|>")


def test_time_limit_cuts_code_stuck_outside_python():
    result = trace("sample.py::sleepy", time_limit=0.3)
    assert result.cut and result.reason == "time_limit"
    assert result.elapsed < 5


def test_user_prints_do_not_corrupt_the_output():
    result = trace("sample.py::chatty")
    assert result.stdout == "hello from user code\n" and result.returned == "1"


def test_pytest_node_ids_trace_the_test_itself():
    result = trace("sample_tests.py::test_add")
    assert result.error and result.error.startswith("AssertionError")
    assert result.frames[0].source == "def test_add():"
    assert result.frames[-1].event == "exception" and result.frames[-1].line == 8
    method = trace("sample_tests.py::TestAdd::test_ok")
    assert method.call == "TestAdd().test_ok()" and method.returned == "None"


def test_package_module_with_relative_imports_and_module_targets():
    by_file = trace("pkg/mod.py::quad", "quad(3)")
    by_module = trace("pkg.mod::quad", "quad(3)")
    assert by_file.returned == by_module.returned == "12"
    assert [f.event for f in by_file.frames].count("call") == 3


@pytest.mark.parametrize(
    "target, call, message",
    [
        ("missing.py::f", None, "no such file"),
        ("sample.py::nope", None, "has no attribute 'nope'"),
        ("sample.py", None, "not FILE.py::NAME"),
        ("sample.py::add", "add(1,", "not a Python expression"),
        ("sample_tests.py::test_add[1-2]", None, "give --call"),
    ],
)
def test_bad_targets_are_usage_errors(target, call, message):
    with pytest.raises(TargetError, match=message) as info:
        trace(target, call)
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2


def test_missing_interpreter_is_a_usage_error():
    with pytest.raises(TargetError, match="interpreter not found"):
        trace("sample.py::add", "add(1, 2)", python="no-such-python-3.99")


def test_tracer_script_is_standalone_and_python37_syntax():
    source = TRACER_PATH.read_text()
    ast.parse(source, feature_version=(3, 7))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert imported <= set(sys.stdlib_module_names)


def _old_pythons() -> list[str]:
    """Real old interpreters (pyenv shims on PATH may not resolve, so look at versions)."""
    pattern = os.path.expanduser("~/.pyenv/versions/3.[78].*/bin/python3.[78]")
    found = glob.glob(pattern) + glob.glob("/usr/bin/python3.[78]")
    return sorted(set(found))[:2]


@pytest.mark.parametrize("python", _old_pythons() or [None])
def test_runs_on_old_interpreters(python, tmp_path):
    if python is None:
        pytest.skip("no Python 3.7/3.8 on this machine")
    result = trace("sample.py::count_letters", "count_letters('ab', 'b')", python=python)
    assert result.python.startswith(("3.7", "3.8")) and result.returned == "1"
    assert result.frames == trace("sample.py::count_letters", "count_letters('ab', 'b')").frames


def test_stdout_mode_when_run_by_hand(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(TRACER_PATH), "--root", str(FIXTURES), "--target",
         "sample.py::add", "--call", "add(1, 2)"],
        capture_output=True, text=True, cwd=FIXTURES, check=True,
    )  # fmt: skip
    doc = json.loads(proc.stdout)
    assert doc["returned"] == "3" and len(frames_from_json(doc)) == 4


def _cruxeval_records(limit: int) -> list[dict]:
    if not CRUXEVAL.exists():
        return []
    with CRUXEVAL.open() as handle:
        return [json.loads(line) for line in itertools.islice(handle, limit)]


@pytest.mark.skipif(not CRUXEVAL.exists(), reason="CRUXEval data not available")
def test_cruxeval_return_values_match_and_traces_parse_back(tmp_path):
    for record in _cruxeval_records(20):
        snippet = tmp_path / f"{record['id']}.py"
        snippet.write_text(record["code"] + "\n")
        result = run_trace(f"{snippet.name}::f", f"f({record['input']})", root=tmp_path)
        assert not result.cut and result.error is None, record["id"]
        assert ast.literal_eval(result.returned) == ast.literal_eval(record["output"])
        parsed = parse_trace(render_trace(result.frames), context=snippet.read_text())
        assert parsed.ended and len(parsed.frames) == len(result.frames)
        for got, want in zip(parsed.frames, result.frames, strict=True):
            assert (got.event, got.source, dict(got.locals), got.value) == (
                want.event, want.source, dict(want.locals), want.value,
            ), record["id"]  # fmt: skip


def test_failing_and_huge_reprs_are_contained():
    result = trace("sample.py::odd_values", max_repr=50)
    last_line = [f for f in result.frames if f.event == "line"][-1]  # return len(big)
    assert "w" not in last_line.locals  # deleted names disappear
    shown = {k: v for f in result.frames for k, v in f.locals.items() if v != ".."}
    assert shown["w"] == "<unrepresentable Weird: RuntimeError>"
    assert shown["big"] == "'" + "x" * 49 + "..." and result.returned == "5000"
    assert not any("__repr__" in f.source for f in result.frames)  # repr calls not traced
