"""Configuration: flag > env > config file > default, profiles, refused secrets, `config show`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SECRET_KEY, cwm, run_cli

from cwm_agent.cli import main
from cwm_agent.config import SETTINGS, resolve, user_config_path
from cwm_agent.errors import UsageError
from cwm_agent.scripted_server import ScriptedServer

FILE = """\
model = "file-model"
max_steps = 40
temperature = 0.5
runtime = "local"

[profiles.vllm-cwm]
base_url = "http://gpu:8000/v1"
model = "facebook/cwm"
max_steps = 60
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "conf.toml"
    path.write_text(FILE)
    return path


def resolve_in(tmp_path: Path, flags=None, env=None, **kw):
    """Resolve with a controlled env and cwd (no stray config files from the machine)."""
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), **(env or {})}
    return resolve(flags or {}, env=env, cwd=tmp_path, **kw)


LAYERS = {  # one way to set max_steps at each layer
    "flag": lambda path: ({"max_steps": 7}, {}, str(path)),
    "env": lambda path: ({}, {"CWM_AGENT_MAX_STEPS": "8"}, str(path)),
    "file": lambda path: ({}, {}, str(path)),
    "default": lambda path: ({}, {}, None),
}
EXPECTED = {"flag": (7, "flag --max-steps"), "env": (8, "env CWM_AGENT_MAX_STEPS")}


@pytest.mark.parametrize(
    ("high", "low"),
    [("flag", "env"), ("flag", "file"), ("flag", "default"), ("env", "file"),
     ("env", "default"), ("file", "default")],
)  # fmt: skip
def test_precedence_pairwise(tmp_path, config_file, high, low):
    flags, env, path = LAYERS[low](config_file)
    more_flags, more_env, more_path = LAYERS[high](config_file)
    resolved = resolve_in(
        tmp_path, {**flags, **more_flags}, {**env, **more_env}, config=more_path or path
    )
    expected = EXPECTED.get(high) or (40, f"file {config_file}")
    assert (resolved["max_steps"], resolved.sources["max_steps"]) == expected
    if high == "file":  # and with nothing set anywhere, the default
        assert resolve_in(tmp_path)["max_steps"] == SETTINGS["max_steps"].default


def test_profiles_and_base_url_env(tmp_path, config_file):
    base = resolve_in(tmp_path, config=str(config_file))
    assert base["model"] == "file-model" and base["base_url"] is None and base.profile is None
    prof = resolve_in(tmp_path, config=str(config_file), profile="vllm-cwm")
    assert prof["model"] == "facebook/cwm" and prof["max_steps"] == 60
    assert prof["temperature"] == 0.5  # top-level values still apply under a profile
    assert prof.sources["model"] == f"file {config_file} [profiles.vllm-cwm]"
    by_env = resolve_in(tmp_path, env={"CWM_AGENT_PROFILE": "vllm-cwm"}, config=str(config_file))
    assert by_env.profile == "vllm-cwm"
    env = {"OPENAI_BASE_URL": "http://openai-env/v1"}
    assert (
        resolve_in(tmp_path, env=env, config=str(config_file), profile="vllm-cwm").sources[
            "base_url"
        ]
        == "env OPENAI_BASE_URL"
    )
    env["CWM_AGENT_BASE_URL"] = "http://ours/v1"  # our own variable wins over the SDK's
    assert resolve_in(tmp_path, env=env)["base_url"] == "http://ours/v1"


def test_default_profile_in_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('profile = "fast"\nmodel = "a"\n[profiles.fast]\nmodel = "b"\n')
    assert resolve_in(tmp_path, config=str(path))["model"] == "b"
    assert resolve_in(tmp_path, config=str(path), profile="fast").profile == "fast"


def test_file_discovery(tmp_path):
    assert resolve_in(tmp_path).config_file is None
    user = user_config_path({"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    user.parent.mkdir(parents=True)
    user.write_text('model = "user"\n')
    assert resolve_in(tmp_path)["model"] == "user"
    # ./cwm-agent.toml is a project file: on top of the user's, for the settings it may set
    (tmp_path / "cwm-agent.toml").write_text('model = "local"\ntimeout = 30\n')
    layered = resolve_in(tmp_path)
    assert (layered["model"], layered["timeout"]) == ("user", 30.0)
    assert layered.config_file == user and layered.project_file == tmp_path / "cwm-agent.toml"
    assert layered.ignored == ("model",) and "ignored model" in layered.notices[0]
    explicit = tmp_path / "other.toml"
    explicit.write_text('model = "explicit"\n')
    assert resolve_in(tmp_path, env={"CWM_AGENT_CONFIG": str(explicit)})["model"] == "explicit"
    assert user_config_path({}) == Path.home() / ".config" / "cwm-agent" / "config.toml"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('api_key = "sk-x"\n', "keys are not read from config files"),
        ('[profiles.p]\nOPENAI_API_KEY = "sk-x"\n', "keys are not read from config files"),
        ('modle = "x"\n', "unknown setting 'modle'"),
        ('max_steps = "many"\n', "expected an integer"),
        ("max_steps = true\n", "expected an integer"),
        ('tool_format = "xml"\n', "expected one of cwm, openai"),
        ("model = \n", "cannot read config file"),
        ("profiles = 3\n", "'profiles' must hold"),
    ],
)
def test_bad_files_are_refused(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message) as info:
        resolve_in(tmp_path, config=str(path))
    assert str(path) in str(info.value) or "cannot read" in str(info.value)


def test_bad_env_and_missing_things(tmp_path, config_file):
    with pytest.raises(UsageError, match="CWM_AGENT_TIMEOUT='soon': expected a number"):
        resolve_in(tmp_path, env={"CWM_AGENT_TIMEOUT": "soon"})
    with pytest.raises(UsageError, match="expected one of local, docker"):
        resolve_in(tmp_path, env={"CWM_AGENT_RUNTIME": "k8s"})
    with pytest.raises(UsageError, match="no profile 'nope'") as info:
        resolve_in(tmp_path, config=str(config_file), profile="nope")
    assert "vllm-cwm" in info.value.hint
    with pytest.raises(UsageError, match="there is no config file"):
        resolve_in(tmp_path, profile="vllm-cwm")
    with pytest.raises(UsageError, match="config file not found"):
        resolve_in(tmp_path, config=str(tmp_path / "missing.toml"))
    assert resolve_in(tmp_path, env={"CWM_AGENT_TIMEOUT": "30"})["timeout"] == 30.0


def test_config_show_text_and_json(tmp_path, config_file):
    env = {
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "OPENAI_API_KEY": SECRET_KEY,
        "CWM_AGENT_MAX_STEPS": "9",
        "CWM_AGENT_CONFIG": None,
        "CWM_AGENT_PROFILE": None,
        "OPENAI_BASE_URL": None,
        "CWM_AGENT_MODEL": None,
    }
    runner = CliRunner()
    args = ["config", "show", "--config", str(config_file), "--profile", "vllm-cwm"]
    text = runner.invoke(main, args, env=env)
    assert text.exit_code == 0, text.output
    assert SECRET_KEY not in text.output and "OPENAI_API_KEY: set" in text.output
    lines = {line.split()[0]: line for line in text.output.splitlines() if line.strip()}
    assert lines["model"].split()[1:] == ["facebook/cwm", "file", str(config_file),
                                          "[profiles.vllm-cwm]"]  # fmt: skip
    assert lines["max_steps"].split()[1:] == ["9", "env", "CWM_AGENT_MAX_STEPS"]
    assert lines["top_p"].split()[1:] == ["0.95", "default"]
    doc = json.loads(runner.invoke(main, [*args, "--json"], env=env).output)
    assert doc["api_key_set"] is True and doc["profile"] == "vllm-cwm"
    assert doc["settings"]["temperature"] == {"value": 0.5, "source": f"file {config_file}"}
    assert set(doc["settings"]) == set(SETTINGS)
    bad = runner.invoke(main, ["config", "show", "--profile", "x"], env=env)
    assert bad.exit_code == 2 and "Error: profile 'x'" in bad.output


def test_run_uses_the_resolved_config(buggy_repo, cli_env, tmp_path):
    """A real run: model and limits from the profile, temperature from env, steps from a flag."""
    with ScriptedServer([cwm("bash", "true")] * 2, model="facebook/cwm") as server:
        conf = tmp_path / "c.toml"
        conf.write_text(
            f'model = "wrong"\nmax_steps = 50\n[profiles.local]\nbase_url = "{server.base_url}"\n'
            'model = "facebook/cwm"\ntop_p = 0.5\nrequest_timeout = 30\n'
        )
        env = {**cli_env, "CWM_AGENT_TEMPERATURE": "0.25", "CWM_AGENT_PROFILE": "local"}
        env["CWM_AGENT_MAX_RETRIES"] = "1"
        traj = tmp_path / "t.json"
        args = ["run", str(buggy_repo), "--issue", "x", "--config", str(conf)]
        result = run_cli([*args, "--max-steps", "2", "--traj", str(traj)], env)
        assert result.returncode == 1, result.stderr  # the step limit, no patch
        body = server.requests[0].body
    assert body["model"] == "facebook/cwm" and body["top_p"] == 0.5
    assert body["temperature"] == 0.25
    config = json.loads(traj.read_text())["config"]
    assert config["agent"]["max_steps"] == 2 and config["model"]["base_url"] == server.base_url
    assert (config["model"]["request_timeout"], config["model"]["max_retries"]) == (30.0, 1)
    assert SECRET_KEY not in traj.read_text()


def test_run_refuses_a_key_in_the_config(buggy_repo, cli_env, tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('model = "m"\napi_key = "sk-secret"\n')
    result = run_cli(["run", str(buggy_repo), "--issue", "x", "--config", str(conf)], cli_env)
    assert result.returncode == 2
    assert "api_key: keys are not read from config files" in result.stderr
    assert "OPENAI_API_KEY" in result.stderr and result.stdout == ""


def test_config_show_subprocess(tmp_path, cli_env):
    project = tmp_path / "cwm-agent.toml"
    project.write_text('model = "from-cwd"\ntimeout = 33\n')
    env = {**cli_env, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    env.pop("OPENAI_API_KEY")
    proc = run_cli_in(tmp_path, ["config", "show"], env)
    assert proc.returncode == 0, proc.stderr
    assert "OPENAI_API_KEY: not set" in proc.stdout
    assert f"project file: {project}" in proc.stdout and "config file: (none found)" in proc.stdout
    lines = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines() if line}
    assert lines["timeout"] == ["33.0", "project", "file", str(project)]
    assert lines["model"] == ["-", "default"] and "from-cwd" not in proc.stdout
    assert f"notice: read {project}" in proc.stderr and "ignored model" in proc.stderr


def run_cli_in(cwd: Path, args: list[str], env: dict[str, str]):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return run_cli(args, env)
    finally:
        os.chdir(old)


def test_every_command_has_examples_and_completion_works(cli_env):
    runner = CliRunner()
    for command in (["run"], ["show"], ["doctor"], ["config"], ["config", "show"]):
        result = runner.invoke(main, [*command, "--help"])
        assert result.exit_code == 0 and "Examples:" in result.output, command
    # Completion keys on the program name, so it goes through the installed entry point.
    exe = Path(sys.executable).with_name("cwm-agent")
    if not exe.exists():
        pytest.skip("the cwm-agent entry point is not installed next to this Python")
    env = {**cli_env, "_CWM_AGENT_COMPLETE": "bash_complete", "COMP_CWORD": "1"}

    def complete(words: str, cword: str = "1") -> list[str]:
        run = {**env, "COMP_WORDS": words, "COMP_CWORD": cword}
        return subprocess.run([exe], env=run, capture_output=True, text=True).stdout.split()

    assert complete("cwm-agent do") == ["plain,doctor"]
    assert complete("cwm-agent run --runtime ", "3") == ["plain,local", "plain,docker"]
    script = subprocess.run([exe], env={**cli_env, "_CWM_AGENT_COMPLETE": "bash_source"},
                            capture_output=True, text=True).stdout  # fmt: skip
    assert "complete -o nosort -F _cwm_agent_completion cwm-agent" in script


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--max-retries", "-1"], "--max-retries must be at least 0"),
        (["--timeout", "0"], "--timeout must be greater than 0"),
        (["--request-timeout", "0"], "--request-timeout must be greater than 0"),
        (["--max-steps", "0"], "--max-steps must be at least 1"),
        (["--max-tokens", "-5"], "--max-tokens must be at least 1"),
        (["--max-context", "0"], "--max-context must be at least 1"),
        (["--top-p", "1.5"], "--top-p must be at most 1"),
        (["--chat-template-kwargs", "[1,2]"], "--chat-template-kwargs must be a JSON object"),
        (["--chat-template-kwargs", "{oops"], "--chat-template-kwargs is not JSON"),
        (["--tmp-size", "0"], "--tmp-size '0' is too small (at least 1m)"),
        (["--tmp-size", "8x"], "--tmp-size '8x' is not a size"),
        (["--tmp-size", "nan"], "--tmp-size 'nan' is not a size"),
        (["--tmp-size", "-1g"], "--tmp-size '-1g' is not a size"),
        (["--tmp-size", "9999999999g"], "--tmp-size '9999999999g' is too large"),
        (["--tmp-size", "9" * 400 + "g"], "is too large"),  # beyond a float: no traceback
        (["--tmp-size", "8m", "--sandbox", "none"], "it does not apply with --sandbox none"),
        (["--tmp-size", "8m", "--runtime", "docker", "--image", "i"], "with --runtime docker"),
    ],
)
def test_nonsense_values_are_usage_errors_naming_the_flag(buggy_repo, cli_env, args, named):
    result = run_cli(["run", str(buggy_repo), "--issue", "x", "--model", "m", *args], cli_env)
    assert result.returncode == 2 and named in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_nonsense_values_from_env_and_file_are_refused_too(tmp_path):
    with pytest.raises(UsageError, match="CWM_AGENT_MAX_RETRIES must be at least 0"):
        resolve_in(tmp_path, env={"CWM_AGENT_MAX_RETRIES": "-2"})
    path = tmp_path / "c.toml"
    path.write_text("timeout = 0\n")
    with pytest.raises(UsageError, match="timeout must be greater than 0"):
        resolve_in(tmp_path, config=str(path))
    path.write_text('network = "yes"\n')
    with pytest.raises(UsageError, match="expected true or false"):
        resolve_in(tmp_path, config=str(path))
    resolved = resolve_in(tmp_path, env={"CWM_AGENT_NETWORK": "1", "CWM_AGENT_PIDS_LIMIT": "64"})
    assert (resolved["network"], resolved["pids_limit"]) == (True, 64)
    kwargs = resolve_in(tmp_path, env={"CWM_AGENT_CHAT_TEMPLATE_KWARGS": '{"a": 1}'})
    assert kwargs["chat_template_kwargs"] == {"a": 1}


def test_sizes_are_read_as_dockers_memory_flag_reads_them(tmp_path):
    from cwm_agent.config_values import size_bytes

    sizes = {"512m": 512 << 20, "1.5g": 3 << 29, "8MB": 8 << 20, "4096k": 4 << 20, "2048": 2048}
    assert {text: size_bytes(text) for text in sizes} == sizes
    path = tmp_path / "c.toml"
    path.write_text('tmp_size = "1 g"\n')
    with pytest.raises(UsageError, match="tmp_size '1 g' is not a size"):
        resolve_in(tmp_path, config=str(path))
    assert resolve_in(tmp_path, env={"CWM_AGENT_TMP_SIZE": "64m"})["tmp_size"] == "64m"


def test_a_trajectory_path_under_a_file_is_refused_before_the_run(buggy_repo, cli_env, tmp_path):
    blocker = tmp_path / "some_file"
    blocker.write_text("not a folder\n")
    args = ["run", str(buggy_repo), "--issue", "x", "--model", "m", "--base-url", "http://x:1/v1"]
    result = run_cli([*args, "--traj", str(blocker / "t.json")], cli_env)
    assert result.returncode == 2, result.stderr
    assert "is a file, not a folder" in result.stderr and "Traceback" not in result.stderr
