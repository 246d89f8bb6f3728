"""Trace consultation: which commands count, the hook on a real local runtime, end to end."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import FakeModel, cwm, git
from test_docker_runtime import IMAGE, NOPY_IMAGE, client, make  # noqa: F401 - fixture
from test_run_e2e import FIXING_SCRIPT, run_agent

from cwm_agent import tools
from cwm_agent.errors import ModelError
from cwm_agent.runtimes.local import LocalRuntime
from cwm_agent.scripted_server import ScriptedServer
from cwm_agent.traces.commands import NamedTest, NotConsulted, entry_names, find_test_target
from cwm_agent.traces.consult import TraceConsultant
from cwm_agent.types import Action, ModelReply, Usage

# What a model that knows add() subtracts would not say: it believes the test passes.
PREDICTION = (
    "<|line_sep|>{}<|action_sep|>    assert add(2, 3) == 5\n<|frame_sep|>"
    '<|call_sep|>{"a": "2", "b": "3"}<|action_sep|>def add(a, b):\n<|frame_sep|>'
    '<|line_sep|>{"a": "..", "b": ".."}<|action_sep|>    return a - b\n<|frame_sep|>'
    '<|return_sep|><|action_sep|>    return a - b\n<|arg_sep|>"5"<|frame_sep|>'
    '<|return_sep|><|action_sep|>    assert add(2, 3) == 5\n<|arg_sep|>"None"<|frame_sep|>'
)
# Plugin autoloading costs this venv more than a second per pytest run.
PYTEST = f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -p no:cacheprovider"


def canned(text: str | Exception = PREDICTION) -> FakeModel:
    """The same prediction (or failure) for every request."""
    reply = (
        text
        if isinstance(text, Exception)
        else ModelReply(text, usage=Usage(300, 60), finish_reason="stop")
    )
    return FakeModel(default=reply)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("pytest tests/test_x.py::test_a -q", NamedTest("tests/test_x.py", ("test_a",))),
        (
            "cd sub && python3 -m pytest -x t.py::TestC::test_m 2>&1 | tail -3",
            NamedTest("t.py", ("TestC", "test_m"), cd="sub", python="python3"),
        ),
        (
            "PYTHONPATH=. timeout 60 .venv/bin/python -m pytest a.py::test_b[1-2]",
            NamedTest("a.py", ("test_b[1-2]",), python=".venv/bin/python"),
        ),
        ("uv run pytest tests/test_x.py -k test_a", NamedTest("tests/test_x.py", keyword="test_a")),
        ("git status; py.test t.py::test_z", NamedTest("t.py", ("test_z",))),
        ("pytest tests/", None),
        ("pytest tests/test_x.py", None),
        ("pytest tests/test_x.py -k 'a and not b'", None),
        ("python3 -m unittest tests.test_x.T.test_a", None),
        ("python3 t.py::test_a", None),
        ("echo 'pytest t.py::test_a'", None),
        ("cat t.py | grep pytest", None),
        ("pytest 'unbalanced", None),
    ],
)
def test_which_commands_run_a_named_test(command, expected):
    assert find_test_target(command) == expected


TESTS_SOURCE = """\
import pytest

def test_plain():
    assert 1

def test_fixture(tmp_path):
    pass

async def test_async():
    pass

class TestC:
    def test_m(self):
        pass

    def test_other(self, default=1):
        pass
"""


def test_entry_names_resolve_or_skip():
    def names(**kw):
        return entry_names(TESTS_SOURCE, NamedTest("t.py", **kw))

    assert names(names=("test_plain",)) == ("test_plain",)
    assert names(names=("TestC", "test_m")) == ("TestC", "test_m")
    assert names(keyword="plain") == ("test_plain",)
    assert names(keyword="test_m") == ("TestC", "test_m")  # equal beats substring
    assert names(names=("TestC", "test_other")) == ("TestC", "test_other")
    for bad, why in [
        (dict(names=("test_fixture",)), "fixtures"),
        (dict(names=("test_async",)), "async"),
        (dict(names=("missing",)), "exactly one"),
        (dict(keyword="test"), "exactly one"),
    ]:
        with pytest.raises(NotConsulted, match=why):
            names(**bad)


@pytest.fixture
def runtime(buggy_repo):
    with LocalRuntime.create(buggy_repo) as rt:
        yield rt


def consult(runtime, command: str, model=None, **options):
    action = Action("bash", {"command": command})
    consultant = TraceConsultant(model or canned(), **options)
    return consultant.around(
        action, runtime, lambda: tools.execute(action, runtime, timeout=60, max_output=20_000)
    )


def test_consultation_is_appended_to_the_real_result(runtime):
    runtime.run("cd tests", 5)  # the session's cwd: node ids are relative to it
    model = canned()
    observation, record = consult(
        runtime, f"cd .. && {PYTEST} tests/test_ops.py::test_add -q", model
    )
    real, _, note = observation.output.partition("\n\n[trace consultation")
    assert "1 failed" in real and observation.exit_code == 1
    assert "for tests/test_ops.py::test_add" in note
    assert "predicted: returns None; actual: raises AssertionError() at line 5" in note
    assert "predicted value 5, actual -1" in note
    assert record["status"] == "compared"
    assert record["entry"] == "tests/test_ops.py::test_add"
    assert record["prediction"]["prompt_tokens"] == 300 and record["prediction"]["requests"] == 1
    assert record["trace"]["frames"] == 6 and record["trace"]["seconds"] > 0
    assert record["comparison"]["return_match"] is False and "first divergence" in record["summary"]
    # The model saw the code under test, the marked test, and the real call frame only.
    prompt = model.prompts[0]
    assert "# file: mathlib/ops.py" in prompt and "def test_add():  # << START_OF_TRACE" in prompt
    assert prompt.endswith("<|call_sep|>{}<|action_sep|>def test_add():\n<|frame_sep|>")
    # The harness left nothing behind: no tracer in the patch, the session still in tests/.
    assert runtime.diff() == ""
    assert runtime.run("pwd", 5).output.strip() == runtime.root


def test_non_test_commands_and_other_tools_pass_through(runtime):
    observation, record = consult(runtime, "echo hi")
    assert observation.output == "hi\n" and record is None  # as the command wrote it
    action = Action("create", {"path": "new.py", "content": "x = 1\n"})
    observation, record = TraceConsultant(canned()).around(
        action, runtime, lambda: tools.execute(action, runtime, timeout=5, max_output=100)
    )
    assert record is None and observation.ok


@pytest.mark.parametrize(
    ("model", "options", "status", "message"),
    [
        (canned(ModelError("HTTP 500 from server")), {}, "failed", "HTTP 500"),
        (canned(), {"python": "no-such-python3"}, "failed", "wrote no trace"),
        (canned(), {}, "skipped", "outside the repository"),
    ],
)
def test_failures_never_break_the_step(runtime, model, options, status, message):
    command = f"{PYTEST} tests/test_ops.py::test_add -q"
    if status == "skipped":
        command = f"{PYTEST} ../elsewhere/test_x.py::test_a -q"
    observation, record = consult(runtime, command, model, **options)
    assert "[trace consultation" not in observation.output
    # the real result is all there (the cwm format shows no exit-code line)
    assert observation.exit_code not in (0, None)
    assert "failed" in observation.output or "ERROR" in observation.output
    assert record["status"] == status
    assert message in (record.get("error") or record.get("reason"))


def test_large_traces_are_read_back_in_chunks(runtime):
    loop = "def test_loop():\n    seen = []\n    for i in range(400):\n        seen.append(i)\n"
    runtime.write_file("tests/test_loop.py", loop.encode())
    observation, record = consult(runtime, f"{PYTEST} tests/test_loop.py::test_loop", max_steps=900)
    assert record["status"] == "compared", record
    assert record["trace"]["frames"] == 804 and not record["trace"]["cut"]
    assert "actual: returns None" in observation.output


def test_a_spent_budget_starts_no_consultation_and_a_failed_one_still_counts(runtime):
    """The run's meter: each reply counts there as it comes back (a prediction that fails
    later counts its earlier requests), and once it is spent no request is made."""
    from cwm_agent.costs import Budget, Meter, Prices
    from cwm_agent.traces.predict import predict_trace

    command = f"{PYTEST} tests/test_ops.py::test_add -q"
    action = Action("bash", {"command": command})
    spent = Meter(Prices(), Budget(max_tokens=100))
    spent.add(Usage(100, 0))
    model = canned()
    observation, record = TraceConsultant(model).around(
        action, runtime, lambda: tools.execute(action, runtime, timeout=60, max_output=9000), spent
    )
    assert "1 failed" in observation.output and "[trace consultation" not in observation.output
    assert record["status"] == "skipped" and "token budget" in record["reason"]
    assert model.calls == []

    meter = Meter(Prices(), Budget(max_tokens=1000))
    frame = ModelReply("<|line_sep|>{}<|action_sep|>    x = 1\n", usage=Usage(300, 60))
    stepping = FakeModel([frame] * 5 + [ModelError("HTTP 500")])
    prediction = predict_trace(
        stepping, "def f():\n    x = 1\n", "f", step_by_step=True, meter=meter
    )
    assert prediction.cut == "budget" and prediction.requests == 3  # 1,080 tokens: stopped
    assert meter.usage.total_tokens == 1080
    failing = Meter(Prices())
    with pytest.raises(ModelError):
        predict_trace(
            FakeModel([frame, ModelError("HTTP 500")]), "def f():\n    x = 1\n", "f",
            step_by_step=True, meter=failing,
        )  # fmt: skip
    assert failing.usage.total_tokens == 360  # the request before the failure


# ------------------------------------------------------------------ end to end


def test_consultation_end_to_end(buggy_repo, cli_env, tmp_path):
    traj = tmp_path / "t.json"
    script = [cwm("bash", f"{PYTEST} tests/test_ops.py::test_add -q"), {"text": PREDICTION}]
    with ScriptedServer([*script, *FIXING_SCRIPT]) as server:
        result = run_agent(server, buggy_repo, cli_env, "--trace-prediction", "--traj", str(traj))
    assert result.returncode == 0, result.stderr
    assert "tracer" not in result.stdout
    completion = server.requests[1]
    assert completion.path == "/v1/completions"
    assert "def test_add():  # << START_OF_TRACE" in completion.body["prompt"]
    observation = server.requests[2].body["messages"][-1]["content"]
    assert "1 failed" in observation
    assert "[trace consultation for tests/test_ops.py::test_add" in observation
    assert "actual: raises AssertionError() at line 5" in observation
    step = json.loads(traj.read_text())["steps"][0]
    record = step["hooks"]["TraceConsultant"]
    assert record["status"] == "compared" and record["prediction"]["completion_tokens"] > 0
    assert "[trace consultation" in step["observation"]["output"]
    assert all(s["hooks"] == {} for s in json.loads(traj.read_text())["steps"][1:])


def test_failing_consultation_does_not_break_the_run(buggy_repo, cli_env, tmp_path):
    traj = tmp_path / "t.json"
    error = {"status": 500, "headers": {"x-should-retry": "false"}}
    script = [cwm("bash", f"{PYTEST} tests/test_ops.py::test_add -q"), error]
    with ScriptedServer([*script, *FIXING_SCRIPT]) as server:
        result = run_agent(server, buggy_repo, cli_env, "--trace-prediction", "--traj", str(traj))
    assert result.returncode == 0, result.stderr
    observation = server.requests[2].body["messages"][-1]["content"]
    assert "1 failed" in observation and "[trace consultation" not in observation
    record = json.loads(traj.read_text())["steps"][0]["hooks"]["TraceConsultant"]
    assert record["status"] == "failed" and "500" in record["error"]
    assert git(buggy_repo, "status", "--porcelain") == ""


# ------------------------------------------------------------------ in a container


@pytest.mark.parametrize("python_in_image", [True, False])
def test_consultation_in_a_container(client, buggy_repo, python_in_image):  # noqa: F811
    image = IMAGE if python_in_image else NOPY_IMAGE
    with make(buggy_repo, client, image=image) as runtime:
        # The image has no pytest: the command fails, the tracer does not need it.
        observation, record = consult(runtime, "python3 -m pytest tests/test_ops.py::test_add")
        assert observation.exit_code not in (0, None) and observation.output.strip()
        if python_in_image:
            assert record["status"] == "compared", record
            assert "actual: raises AssertionError() at line 5" in observation.output
        else:
            assert record["status"] == "failed" and "status 127" in record["error"]
            assert "[trace consultation" not in observation.output
        leftovers = runtime.run("ls -d ${TMPDIR:-/tmp}/cwm-trace-* 2>/dev/null", 10).output
        assert leftovers == "" and runtime.diff() == ""
