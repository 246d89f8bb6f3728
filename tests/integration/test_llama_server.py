"""`cwm-agent` against a real llama.cpp server with a tiny model whose answers are nonsense.

What a scripted server cannot prove: that we speak the protocol as a real server does
(request validation, usage fields, tool-call shapes, stop tokens). Every reply must be
handled (an action or a FormatError), every run must end with a defined exit code inside
its limits, and the trajectory must hold the server's real token counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

MAX_STEPS = 3
# Greedy decoding: the nonsense is the same on every run, so a failure reproduces. The
# format-error limit is above the step limit, so the step limit ends a run of nonsense.
LIMITS = ["--max-steps", str(MAX_STEPS), "--max-tokens", "128", "--timeout", "10",
          "--max-context", "6144", "--max-format-errors", str(MAX_STEPS + 1),
          "--temperature", "0",
          # A reply that runs away must fail the test in minutes, not after 5 x 600 s.
          "--request-timeout", "180", "--max-retries", "0"]  # fmt: skip


def run_agent(cli, llama, repo: Path, tmp_path: Path, model: str, *extra: str):
    traj = tmp_path / "traj.json"
    result = cli(
        "run", str(repo), "--issue-file", str(repo / "ISSUE.md"),
        "--base-url", llama.url, "--model", model, "--traj", str(traj), *LIMITS, *extra,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-3000:]
    data = json.loads(traj.read_text())
    return result, data


def assert_every_reply_handled(result, data) -> None:
    steps = data["steps"]
    assert data["exit_code"] == result.returncode
    assert data["exit_status"] not in ("running", "ModelError", "UsageError")
    assert 1 <= len(steps) <= MAX_STEPS
    replies = [m for m in data["messages"] if m["role"] == "assistant"]
    assert len(replies) == len(steps)  # every reply is recorded as a step
    for step in steps:
        handled = step["action"] is not None or step["format_error"] is not None
        summary = step["action"] is None and data["exit_status"].startswith("submitted")
        assert handled or summary, step
        assert step["usage"]["prompt_tokens"] > 0, step  # the server's own counts
        assert step["usage"]["completion_tokens"] >= 0
    assert data["usage"]["prompt_tokens"] == sum(s["usage"]["prompt_tokens"] for s in steps)
    assert data["usage"]["total_tokens"] > 0
    if result.returncode == 0:
        assert result.stdout.startswith("diff --git") and data["patch"] == result.stdout
    else:
        assert result.stdout == ""


def test_cwm_tool_format_over_chat(cli, llama, example_repo, tmp_path):
    result, data = run_agent(cli, llama, example_repo, tmp_path, llama.chat_model)
    assert_every_reply_handled(result, data)
    assert data["config"]["model"]["api"] == "chat"


def test_cwm_tool_format_over_completions(cli, llama, example_repo, tmp_path):
    """CWM's chat format rendered by us: every reply carries the prefilled `<think>`."""
    result, data = run_agent(
        cli, llama, example_repo, tmp_path, llama.chat_model, "--api", "completions"
    )
    assert_every_reply_handled(result, data)
    assert data["config"]["model"]["api"] == "completions"
    assert all(step["reply"].startswith("<think>\n") for step in data["steps"])


def test_openai_tool_format(cli, llama, example_repo, tmp_path):
    result, data = run_agent(
        cli, llama, example_repo, tmp_path, llama.tools_model, "--tool-format", "openai"
    )
    assert_every_reply_handled(result, data)


@pytest.mark.parametrize("mode", [[], ["--step-by-step"]], ids=["whole", "step-by-step"])
def test_trace_predict_over_completions(cli, llama, example_repo, mode):
    result = cli(
        "trace", "predict", "calc/stats.py::median", "--call", "median([4, 1, 3, 2])",
        "--root", str(example_repo), "--base-url", llama.url, "--model", llama.chat_model,
        "--api", "completions", "--max-tokens", "96", "--max-frames", "8", "--json", *mode,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads(result.stdout)
    prediction = doc["prediction"]
    assert prediction["api"] == "completions"
    assert prediction["requests"] >= 1 and prediction["prompt_tokens"] > 0
    assert prediction["seeded"] == 1  # the real call frame, then whatever the model made up
    assert len(prediction["frames"]) <= 1 + 8
