"""`cwm-agent doctor` against the scripted server: reachable, model listed or not, unreachable."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import SECRET_KEY, run_cli

from cwm_agent.cli import main
from cwm_agent.doctor import FAIL, OK, WARN, Check, check_docker, render
from cwm_agent.scripted_server import ScriptedServer

UNREACHABLE = "http://127.0.0.1:1/v1"  # nothing listens on port 1: refused at once


@pytest.fixture
def env(tmp_path):
    """A machine with a key, no Docker engine, no config file, a private runs folder."""
    return {
        "OPENAI_API_KEY": SECRET_KEY,
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "CWM_AGENT_HOME": str(tmp_path / "home"),
        "OPENAI_BASE_URL": None,
        "CWM_AGENT_MODEL": None,
        "CWM_AGENT_CONFIG": None,
        "CWM_AGENT_PROFILE": None,
    }


def doctor(env, *args):
    result = CliRunner().invoke(main, ["doctor", "--json", *args], env=env)
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    return result.exit_code, checks


def test_all_good_with_the_model_listed(env):
    with ScriptedServer([], model="facebook/cwm") as server:
        code, checks = doctor(env, "--base-url", server.base_url, "--model", "facebook/cwm")
        assert [r.path for r in server.requests] == ["/v1/models"]
        assert server.requests[0].headers["authorization"] == f"Bearer {SECRET_KEY}"
    assert code == 0
    assert checks["endpoint"]["status"] == OK and "1 models served" in checks["endpoint"]["detail"]
    assert checks["model"]["status"] == OK
    assert checks["api key"]["status"] == OK and SECRET_KEY not in json.dumps(checks)
    assert checks["docker"]["status"] == WARN  # no engine: fine for the local runtime
    assert "DOCKER_HOST" in checks["docker"]["hint"]
    for name in ("git", "prompts", "trajectories", "config"):
        assert checks[name]["status"] == OK, checks[name]


def test_model_not_listed_fails_with_the_served_names(env):
    with ScriptedServer([], model="facebook/cwm") as server:
        code, checks = doctor(env, "--base-url", server.base_url, "--model", "gpt-4.1")
    assert code == 1
    assert checks["model"]["status"] == FAIL
    assert "not among the served models: facebook/cwm" in checks["model"]["detail"]
    assert "--model" in checks["model"]["hint"]


def test_unreachable_endpoint_fails(env):
    code, checks = doctor(env, "--base-url", UNREACHABLE, "--model", "m")
    assert code == 1
    assert checks["endpoint"]["status"] == FAIL
    assert "cannot reach http://127.0.0.1:1/v1" in checks["endpoint"]["detail"]
    assert "--base-url" in checks["endpoint"]["hint"]
    assert checks["model"]["status"] == "skip"


def test_settings_come_from_the_config_profile_and_env(env, tmp_path):
    with ScriptedServer([], model="served") as server:
        conf = tmp_path / "c.toml"
        conf.write_text(f'[profiles.p]\nbase_url = "{server.base_url}"\nmodel = "served"\n')
        code, checks = doctor({**env, "CWM_AGENT_PROFILE": "p"}, "--config", str(conf))
        assert code == 0 and checks["model"]["status"] == OK
        assert checks["config"]["detail"] == f"{conf}, profile p"
        # OPENAI_BASE_URL beats the file; a flag beats them both.
        code, checks = doctor({**env, "OPENAI_BASE_URL": UNREACHABLE}, "--model", "served")
        assert code == 1 and checks["endpoint"]["status"] == FAIL
        code, _ = doctor({**env, "OPENAI_BASE_URL": UNREACHABLE}, "--base-url", server.base_url)
    assert code == 1  # reachable now, but no model set anywhere


def test_no_model_no_key_and_a_bad_config(env, tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('api_key = "sk-x"\n')
    with ScriptedServer([]) as server:
        bad_env = {**env, "OPENAI_API_KEY": None}
        code, checks = doctor(bad_env, "--base-url", server.base_url, "--config", str(conf))
    assert code == 1
    assert checks["config"]["status"] == FAIL and "keys are not read" in checks["config"]["detail"]
    assert checks["api key"]["status"] == WARN  # local servers need none
    assert checks["model"]["status"] == FAIL and checks["model"]["detail"] == "no model set"


def test_docker_runtime_makes_a_missing_engine_a_failure(env, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", env["DOCKER_HOST"])
    engine, image = check_docker("docker", "python:3.11")
    assert engine.status == FAIL and image.status == "skip"
    assert check_docker("local", None)[0].status == WARN


def test_text_report_in_a_subprocess(env, cli_env):
    with ScriptedServer([], model="m") as server:
        proc_env = {**cli_env, **{k: v for k, v in env.items() if v is not None}}
        result = run_cli(["doctor", "--base-url", server.base_url, "--model", "nope"], proc_env)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("FAIL  model") for line in lines)
    assert any(line.startswith("ok    endpoint") for line in lines)
    assert any(line.startswith("warn  docker") for line in lines)
    assert any("fix: pass --model with one of the served names" in line for line in lines)
    assert lines[-1] == "1 failure(s), 1 warning(s)"
    assert result.stderr == "" and SECRET_KEY not in result.stdout


def test_render_puts_hints_only_under_problems():
    text = render([Check("a", OK, "fine", "never shown"), Check("bb", FAIL, "broken", "do X")])
    assert "never shown" not in text and "fix: do X" in text


def test_the_sandbox_check_says_whether_commands_run_sandboxed():
    from cwm_agent.doctor import SKIP, check_sandbox
    from cwm_agent.runtimes import sandbox

    assert check_sandbox("docker", "auto").status == SKIP
    off = check_sandbox("local", "none")
    assert off.status == WARN and "your rights" in off.detail
    here = check_sandbox("local", "bwrap")
    assert here.status == (OK if sandbox.works() is None else FAIL)


def test_the_docker_runtime_without_an_image_is_a_failure():
    import os

    checks = {c.name: c for c in check_docker("docker", None)}
    if checks["docker"].status != OK:  # the image is checked once the engine answers
        if os.environ.get("CWM_REQUIRE_DOCKER") == "1":
            pytest.fail(f"CWM_REQUIRE_DOCKER=1 but {checks['docker'].detail}")
        pytest.skip(f"needs a Docker engine: {checks['docker'].detail}")
    assert checks["image"].status == FAIL and "needs an image" in checks["image"].detail
