"""The API key never shows: not on stdout or stderr, not in the trajectory or any file
the run writes, not in error messages (the SDK's included), not to the agent's shell.

The key is only ever in the Authorization header of the requests (checked too, so a
test that passes because the key was never sent proves nothing).
"""

from __future__ import annotations

import json

import pytest
from conftest import SECRET_KEY, cwm, run_cli

from cwm_agent.errors import CwmError
from cwm_agent.models.openai_client import OpenAIModel
from cwm_agent.scripted_server import ScriptedServer

FIX = "mathlib/ops.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE"


def everything_written(home, traj) -> str:
    """Every file under the agent's home plus the trajectory, as text."""
    texts = [traj.read_text(errors="replace")] if traj.exists() else []
    texts += [p.read_text(errors="replace") for p in home.rglob("*") if p.is_file()]
    return "\n".join(texts)


def run_agent(server, repo, env, traj, *extra):
    args = ["run", str(repo), "--issue", "add() is wrong", "--base-url", server.base_url]
    return run_cli([*args, "--model", "m", "--traj", str(traj), "-vv", *extra], env)


PROBES = [
    "env | grep -i key; echo end",
    "echo key=[$OPENAI_API_KEY]",
    "printenv OPENAI_API_KEY; echo end",
    "tr '\\0' '\\n' < /proc/self/environ | grep -c .",
    "cat /proc/$$/environ | tr '\\0' '\\n' | grep -i api",
    "python3 -c 'import os; print(sorted(k for k in os.environ if \"KEY\" in k))'",
]


def test_a_whole_run_never_shows_the_key(buggy_repo, cli_env, tmp_path):
    traj = tmp_path / "t.json"
    env = {**cli_env, "GITHUB_TOKEN": "ghp-SECRET-token", "AWS_SECRET_ACCESS_KEY": "aws-SECRET"}
    script = [cwm("bash", probe) for probe in PROBES] + [
        cwm("edit", FIX),
        cwm("bash", "git diff > fix.patch"),
        cwm("submit", "fix.patch"),
        "Done.",
    ]
    with ScriptedServer(script) as server:
        result = run_agent(server, buggy_repo, env, traj, "--json")
    assert result.returncode == 0, result.stderr
    assert all(r.headers.get("authorization") == f"Bearer {SECRET_KEY}" for r in server.requests)
    written = everything_written(tmp_path / "agent-home", traj)
    for secret in (SECRET_KEY, "ghp-SECRET-token", "aws-SECRET"):
        assert secret not in result.stdout + result.stderr + written
        for request in server.requests:  # what the model saw of the shell
            assert secret not in json.dumps(request.body)
    observations = [s["observation"]["output"] for s in json.loads(traj.read_text())["steps"][:6]]
    assert observations[1] == "key=[]\n"  # as the command wrote it


def test_a_failed_run_does_not_show_the_key(buggy_repo, cli_env, tmp_path):
    traj = tmp_path / "t.json"
    with ScriptedServer([{"raw": f"<html>proxy error; key {SECRET_KEY}</html>"}] * 2) as server:
        result = run_agent(server, buggy_repo, cli_env, traj)
    assert result.returncode == 3
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET_KEY}"
    assert SECRET_KEY not in result.stderr + everything_written(tmp_path / "agent-home", traj)
    assert "sk-" not in result.stderr  # not even a prefix of it


@pytest.mark.parametrize(
    "entry",
    [
        {"status": 401, "body": {"error": {"message": "invalid api key"}}},
        {"status": 403, "body": {"error": {"message": "forbidden"}}},
        {"status": 404, "body": {"error": {"message": "no such model"}}},
        {"status": 413, "body": {"error": {"message": "prompt is too long"}}},
        {"status": 500, "body": "internal error", "headers": {"x-should-retry": "false"}},
        {"close": True},
    ],
)
def test_sdk_exception_texts_do_not_show_the_key(entry):
    with ScriptedServer([entry]) as server:
        model = OpenAIModel("m", server.base_url, SECRET_KEY, max_retries=0)
        with pytest.raises(CwmError) as caught:
            model.complete([{"role": "user", "content": "hi"}])
        assert server.requests[0].headers["authorization"] == f"Bearer {SECRET_KEY}"
    text = f"{caught.value}\n{caught.value!r}\n{caught.value.__cause__!r}"
    assert SECRET_KEY not in text and "sk-" not in text
    assert caught.value.__suppress_context__  # the SDK's exception is not chained into tracebacks


ECHOING_SERVERS = [
    {"status": 401, "body": {"error": {"message": f"Incorrect API key provided: {SECRET_KEY}"}}},
    {"status": 400, "body": f"bad request, Authorization: Bearer {SECRET_KEY}"},
    {"status": 500, "body": {"detail": f"auth header was Bearer {SECRET_KEY}"}},
    {"raw": json.dumps({"error": f"invalid key {SECRET_KEY}"})},
]


@pytest.mark.parametrize("entry", ECHOING_SERVERS)
def test_error_messages_redact_a_key_the_server_echoes(entry):
    entry = {**entry, "headers": {"Retry-After": "0.01", "x-should-retry": "false"}}
    with ScriptedServer([entry] * 2) as server:
        model = OpenAIModel("m", server.base_url, SECRET_KEY, max_retries=0)
        with pytest.raises(CwmError) as caught:
            model.complete([{"role": "user", "content": "hi"}])
    assert SECRET_KEY not in str(caught.value)


def test_cli_401_echo_does_not_reach_stderr_or_the_trajectory(buggy_repo, cli_env, tmp_path):
    traj = tmp_path / "t.json"
    with ScriptedServer([ECHOING_SERVERS[0]]) as server:
        result = run_agent(server, buggy_repo, cli_env, traj)
    assert result.returncode == 3
    assert "refused the credentials" in result.stderr
    assert SECRET_KEY not in result.stderr + everything_written(tmp_path / "agent-home", traj)


def test_a_key_a_command_digs_up_is_replaced_before_it_is_stored_or_sent(
    buggy_repo, cli_env, tmp_path
):
    """However a command finds the key (here: a file the user left in the repository), its
    value never reaches the trajectory, the progress lines or the next request; nor does a
    reply that repeats it."""
    (buggy_repo / "notes.txt").write_text(f"deploy key: {SECRET_KEY}\n")
    traj = tmp_path / "t.json"
    script = [
        cwm("bash", "cat notes.txt"),
        cwm("bash", f"echo the model repeats {SECRET_KEY} itself"),
        cwm("edit", FIX),
        cwm("bash", "git diff -- mathlib > fix.patch"),
        cwm("submit", "fix.patch"),
        "Done.",
    ]
    with ScriptedServer(script) as server:
        result = run_agent(server, buggy_repo, cli_env, traj)
    assert result.returncode == 0, result.stderr
    written = everything_written(tmp_path / "agent-home", traj)
    assert SECRET_KEY not in result.stdout + result.stderr + written
    bodies = [json.dumps(r.body) for r in server.requests if r.body]
    assert all(SECRET_KEY not in body for body in bodies)
    assert "deploy key: [secret redacted]" in bodies[1]  # the observation, redacted
    data = json.loads(traj.read_text())
    assert "[secret redacted]" in data["steps"][1]["reply"]


def test_hook_records_are_redacted_like_the_rest_of_the_step(buggy_repo, cli_env, tmp_path):
    """`--trace-prediction`'s record of a step: the command it ran (the model wrote the key
    into it) and the comparison of a prediction that quotes the key."""
    from test_run_e2e import FIXING_SCRIPT
    from test_trace_consult import PREDICTION, PYTEST

    predicted = PREDICTION.replace('<|arg_sep|>"5"', f"<|arg_sep|>\"'{SECRET_KEY}'\"")
    command = f"CHECK={SECRET_KEY} {PYTEST} tests/test_ops.py::test_add -q"
    script = [cwm("bash", command), {"text": predicted}, *FIXING_SCRIPT]
    traj = tmp_path / "t.json"
    with ScriptedServer(script) as server:
        result = run_agent(server, buggy_repo, cli_env, traj, "--trace-prediction")
    assert result.returncode == 0, result.stderr
    record = json.loads(traj.read_text())["steps"][0]["hooks"]["TraceConsultant"]
    assert record["status"] == "compared"
    assert record["command"].startswith("CHECK=[secret redacted] ")
    assert "[secret redacted]" in record["summary"]  # the predicted value, redacted
    written = everything_written(tmp_path / "agent-home", traj)
    assert SECRET_KEY not in result.stdout + result.stderr + written
