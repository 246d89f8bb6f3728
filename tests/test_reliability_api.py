"""Model API faults, served by the scripted server to the real CLI (or to run.execute).

Transient faults are retried and the run goes on; persistent ones end it with exit 3,
a message saying what happened and where the trajectory is, and that trajectory on
disk. A context-length error is never retried: exit 1. Error replies carry
``Retry-After: 0.01`` where the SDK would otherwise back off for seconds.

The CLI has no flag for the request timeout or the number of retries (600 s, 4), so
the hang and the persistent connection reset drive ``cwm_agent.run.execute`` with
small ``ModelSettings`` in-process: same code path below the CLI.
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import SECRET_KEY, cwm, run_cli, snapshot

from cwm_agent.errors import ModelError
from cwm_agent.run import execute
from cwm_agent.scripted_server import ScriptedServer
from cwm_agent.settings import AgentConfig, ModelSettings, RunSettings

FIX = "mathlib/ops.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE"
FAST = {"Retry-After": "0.01"}


def error(status: int, message: str = "") -> dict:
    body = {"error": {"message": message or f"scripted {status}", "code": status}}
    return {"status": status, "body": body, "headers": FAST}


def run_agent(server, repo, env, traj, *extra):
    args = ["run", str(repo), "--issue", "add() is wrong", "--base-url", server.base_url]
    return run_cli([*args, "--model", "m", "--traj", str(traj), *extra], env, timeout=120)


def test_transient_faults_are_retried_and_the_run_succeeds(buggy_repo, cli_env, tmp_path):
    traj = tmp_path / "t.json"
    script = [
        error(429, "rate limited"),
        cwm("edit", FIX),
        error(500),
        error(503),
        {"close": True},  # connection reset: the SDK's own backoff (about 0.5-1 s)
        cwm("bash", "git diff > fix.patch"),
        {"raw": "<html>502 Bad Gateway</html>"},  # a 200 that is not JSON: tried again
        {"content": "<think>\nI will now subm", "finish_reason": "length"},  # cut off
        cwm("submit", "fix.patch"),
        {"choices": []},  # a 200 without choices: tried again
        "Done: add() fixed.",
    ]
    with ScriptedServer(script) as server:
        result = run_agent(server, buggy_repo, cli_env, traj)
        assert server.remaining == 0
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("diff --git a/mathlib/ops.py")
    data = json.loads(traj.read_text())
    assert data["exit_status"] == "submitted"
    tools = [s["action"]["tool"] if s["action"] else s["format_error"] for s in data["steps"]]
    assert tools[:2] + tools[3:] == ["edit", "bash", "submit", None]  # None: the summary
    assert "cut off at the token limit" in data["steps"][2]["format_error"]


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        (error(429, "slow down"), ["HTTP 429", "slow down", "5 attempt(s)", "rate limiting"]),
        (error(503, "overloaded"), ["HTTP 503", "overloaded", "5 attempt(s)"]),
    ],
    ids=["429", "503"],
)
def test_persistent_faults_exit_3_with_what_happened(buggy_repo, cli_env, tmp_path, entry, said):
    traj = tmp_path / "t.json"
    before = snapshot(buggy_repo)
    with ScriptedServer([cwm("edit", FIX)] + [entry] * 5) as server:
        result = run_agent(server, buggy_repo, cli_env, traj)
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    message = result.stderr[result.stderr.index("Error: ") :]
    for words in said:
        assert words in message
    assert f"the trajectory so far is in {traj}" in message
    data = json.loads(traj.read_text())
    assert (data["exit_status"], data["exit_code"]) == ("ModelError", 3)
    assert data["steps"][0]["action"]["tool"] == "edit"  # the work before the fault is kept
    assert "+    return a + b" in data["working_tree_diff"]
    assert snapshot(buggy_repo) == before
    assert SECRET_KEY not in result.stderr + traj.read_text()


def test_context_length_error_is_not_retried_and_exits_1(buggy_repo, cli_env, tmp_path):
    traj = tmp_path / "t.json"
    too_long = error(400, "This model's maximum context length is 8192 tokens. However, ...")
    with ScriptedServer([cwm("bash", "ls"), too_long, "never asked for"]) as server:
        result = run_agent(server, buggy_repo, cli_env, traj)
        assert server.remaining == 1  # no retry
    assert result.returncode == 1, result.stderr
    assert "maximum context length" in result.stderr
    data = json.loads(traj.read_text())
    assert (data["exit_status"], data["exit_code"]) == ("context_exceeded", 1)


def parts(reply: str) -> dict:
    """A scripted 200 whose content is the OpenAI schema's list of text parts."""
    halves = [reply[: len(reply) // 2], reply[len(reply) // 2 :]]
    content = [{"type": "text", "text": half} for half in halves]
    message = {"role": "assistant", "content": content}
    return {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}


def test_content_as_text_parts_is_joined_and_the_run_succeeds(buggy_repo, cli_env, tmp_path):
    traj = tmp_path / "t.json"
    script = [cwm("edit", FIX), cwm("bash", "git diff > fix.patch"), cwm("submit", "fix.patch")]
    with ScriptedServer([parts(reply) for reply in [*script, "Done."]]) as server:
        result = run_agent(server, buggy_repo, cli_env, traj)
    assert result.returncode == 0, result.stderr
    assert "+    return a + b" in result.stdout
    assert json.loads(traj.read_text())["exit_status"] == "submitted"


@pytest.mark.parametrize(
    ("message", "usage", "said"),
    [
        ({"content": 42}, None, "the reply's content is a number, not text: 42"),
        ({"content": [{"type": "image_url"}]}, None, "content holds a part that is not text"),
        ({"content": "hi"}, {"prompt_tokens": "n/a"}, "usage.prompt_tokens is not a token count"),
    ],
    ids=["number-content", "image-part", "usage-not-a-number"],
)
def test_unusable_reply_fields_exit_3_with_a_finished_trajectory(
    buggy_repo, cli_env, tmp_path, message, usage, said
):
    """Was: a traceback (AttributeError, ValueError), exit 1, the trajectory left `running`."""
    traj = tmp_path / "t.json"
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}
    bad = {"choices": [choice], **({} if usage is None else {"usage": usage})}
    with ScriptedServer([cwm("edit", FIX), bad, bad]) as server:
        result = run_agent(server, buggy_repo, cli_env, traj)
        assert server.remaining == 0  # tried twice
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    message_text = result.stderr[result.stderr.index("Error: ") :]
    assert "Bad reply from" in message_text and "(2 attempt(s))" in message_text
    assert said in message_text and "hint: Check that --base-url" in message_text
    assert f"the trajectory so far is in {traj}" in message_text
    data = json.loads(traj.read_text())
    assert (data["exit_status"], data["exit_code"]) == ("ModelError", 3)
    assert "+    return a + b" in data["working_tree_diff"]


def test_a_retry_after_the_sdk_will_not_wait_reports_the_attempt_made(
    buggy_repo, cli_env, tmp_path
):
    """Was: "failed after 5 attempt(s)" for one request. The installed SDK (openai 3.57)
    does not retry when Retry-After exceeds its cap (120 s); shorter ones it waits out."""
    traj = tmp_path / "t.json"
    day = {**error(429, "daily quota used up"), "headers": {"Retry-After": "86400"}}
    with ScriptedServer([cwm("edit", FIX), day, day]) as server:
        started = time.monotonic()
        result = run_agent(server, buggy_repo, cli_env, traj)
        assert len(server.requests) == 2 and time.monotonic() - started < 30
    assert result.returncode == 3, result.stderr
    message = result.stderr[result.stderr.index("Error: ") :]
    assert "Model request failed after 1 attempt(s): HTTP 429" in message
    assert "daily quota used up" in message
    assert "the server asked to wait 86400 s (about 24 h) before trying again" in message
    assert "longer than the SDK waits, so it did not retry" in message
    assert "hint: The server is rate limiting and asks to wait 86400 s" in message
    assert json.loads(traj.read_text())["exit_code"] == 3


# ------------------------------------------------------------- in-process, small limits


def settings_for(base_url, repo, tmp_path, **model) -> RunSettings:
    return RunSettings(
        repo=repo,
        model=ModelSettings(name="m", base_url=base_url, **model),
        agent=AgentConfig(max_steps=5),
        traj_path=tmp_path / "t.json",
    )


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        (error(500, "boom"), ["HTTP 500", "boom", "3 attempt(s)"]),
        ({"raw": "<html>Bad Gateway</html>"}, ["not valid JSON", "2 attempt(s)"]),
        ({"choices": []}, ["no choices", "2 attempt(s)"]),
        ({"raw": "[1, 2]"}, ["not a JSON object", "2 attempt(s)"]),
        ({"raw": '{"choices": ["text"]}'}, ["unexpected shape", "2 attempt(s)"]),
    ],
    ids=["500", "not-json", "no-choices", "not-an-object", "bad-shape"],
)
def test_more_persistent_faults_exit_3(buggy_repo, tmp_path, monkeypatch, entry, said):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET_KEY)
    with ScriptedServer([cwm("edit", FIX)] + [entry] * 3) as server:
        with pytest.raises(ModelError) as caught:
            execute(settings_for(server.base_url, buggy_repo, tmp_path, max_retries=2), "x")
    for words in said:
        assert words in str(caught.value)
    assert f"the trajectory so far is in {tmp_path / 't.json'}" in str(caught.value)
    data = json.loads((tmp_path / "t.json").read_text())
    assert (data["exit_status"], data["exit_code"]) == ("ModelError", 3)
    assert "+    return a + b" in data["working_tree_diff"]
    assert SECRET_KEY not in str(caught.value)


def test_hang_past_the_timeout_is_retried_then_exit_3(buggy_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET_KEY)
    hang = {"delay": 60, "content": "too late"}
    with ScriptedServer([cwm("bash", "ls"), hang, hang]) as server:
        settings = settings_for(
            server.base_url, buggy_repo, tmp_path, request_timeout=0.5, max_retries=1
        )
        started = time.monotonic()
        with pytest.raises(ModelError) as caught:
            execute(settings, "add() is wrong")
        assert time.monotonic() - started < 2 * 0.5 + 2 + 15  # two attempts, one backoff
        assert len(server.requests) == 3
    assert "No reply from" in str(caught.value) and "within 0.5 s (2 attempts)" in str(caught.value)
    assert f"the trajectory so far is in {tmp_path / 't.json'}" in str(caught.value)
    assert json.loads((tmp_path / "t.json").read_text())["exit_code"] == 3


def test_connection_reset_every_time_exits_3(buggy_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET_KEY)
    with ScriptedServer([{"close": True}] * 3) as server:
        settings = settings_for(server.base_url, buggy_repo, tmp_path, max_retries=1)
        with pytest.raises(ModelError) as caught:
            execute(settings, "add() is wrong")
    assert "Could not reach the model server" in str(caught.value)
    assert "(2 attempts)" in str(caught.value)
    assert SECRET_KEY not in str(caught.value)  # the SDK's connection error text included
    data = json.loads((tmp_path / "t.json").read_text())
    assert (data["exit_status"], data["exit_code"]) == ("ModelError", 3)


def test_nothing_listening_exits_3(buggy_repo, tmp_path, monkeypatch):
    server = ScriptedServer([])
    base_url = server.base_url
    server.stop()  # the port is closed again: connection refused
    with pytest.raises(ModelError, match="Could not reach the model server"):
        execute(settings_for(base_url, buggy_repo, tmp_path, max_retries=0), "add() is wrong")
