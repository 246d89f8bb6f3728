"""CWM's own prompts, imported from its code: the system, user and test-generation turns
are byte for byte what CWM's environments build for the same limits and issue."""

from __future__ import annotations

import json

import pytest
from conftest import FakeModel, make_buggy_repo, run_cli

from cwm_agent import prompt_sets, prompts
from cwm_agent.agent import Agent
from cwm_agent.errors import UsageError
from cwm_agent.factory import open_runtime
from cwm_agent.settings import AgentConfig, RuntimeSettings
from cwm_agent.trajectory import Trajectory

from .conftest import cwm_system, cwm_testgen, cwm_user

ISSUES = [
    "add() subtracts.",
    "  Braces {like} this, {{ jinja }} and {% tags %} stay text.\n\nSecond paragraph.\n",
    "Unicode: café ✓, tabs\tand a trailing space ",
]
LIMITS = [(120.0, 131_072, 128), (45.9, 8_192, 10)]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    repo = make_buggy_repo(tmp_path_factory.mktemp("prompts") / "repo")
    runtime = open_runtime(RuntimeSettings(), repo, "prompts")
    yield runtime
    runtime.close()


@pytest.mark.parametrize("issue", ISSUES)
@pytest.mark.parametrize(("timeout", "context", "turns"), LIMITS)
def test_system_and_user_turns_are_cwms(
    runtime, imported_set, tmp_path, issue, timeout, context, turns
):
    config = AgentConfig(
        prompts=str(imported_set), timeout=timeout, max_context=context, max_steps=turns
    )
    traj = Trajectory(tmp_path / "t.json", "p", {}, issue)
    system, user = Agent(FakeModel(), runtime, config, traj)._initial_messages(issue)
    assert system == {"role": "system", "content": cwm_system(timeout, context, turns)}
    # CWM's tokenizer strips a user turn's ends; so do cwm-agent's templates.
    assert user == {"role": "user", "content": cwm_user(issue, runtime.root).strip()}


@pytest.mark.parametrize("issue", ISSUES)
def test_the_test_generation_turn_is_cwms(runtime, imported_set, issue):
    """`repro_user`, rendered with the variables the reproduction rollouts pass."""
    chosen = prompt_sets.load(str(imported_set))
    text = prompts.render(
        "repro_user", chosen, issue=issue, root=runtime.root, test_name="test_issue.py",
        python="python3", tool_format="cwm",
    )  # fmt: skip
    assert text == cwm_testgen(issue, runtime.root).strip()


def test_the_bundled_set_is_ours(runtime, imported_set):
    """What ships is in our own words: no sentence of CWM's prompts is in prompts/."""
    from .conftest import SWE_ENV, TESTGEN_ENV, cwm_constants

    bundled = "\n".join(p.read_text() for p in prompts.prompts_dir().glob("*.j2"))
    theirs = {**cwm_constants(SWE_ENV), **cwm_constants(TESTGEN_ENV)}
    sentences = {
        s.strip()
        for name in ("SYSTEM_UBUNTU", "USER_ISSUE_SOLVING", "USER_TESTGEN")
        for s in theirs[name].replace("\n", " ").split(". ")
        if len(s.strip()) > 40
    }
    assert len(sentences) > 10
    assert [s for s in sentences if s in bundled.replace("\n", " ")] == []
    assert prompt_sets.load(None).sha256 != prompt_sets.load(str(imported_set)).sha256


def test_the_set_in_use_is_named_and_hashed(runtime, imported_set, tmp_path):
    config = AgentConfig(prompts=str(imported_set), max_steps=1)
    traj = Trajectory(tmp_path / "t.json", "p", {}, "issue")
    Agent(FakeModel(), runtime, config, traj).run("issue")
    recorded = json.loads((tmp_path / "t.json").read_text())["config"]["prompt_set"]
    assert recorded["sha256"] == prompt_sets.load(str(imported_set)).sha256
    assert recorded["source"] and recorded["own_templates"] == list(prompt_sets.SET_TEMPLATES)
    assert recorded["tool_formats"] == ["cwm"]


def test_cwms_set_speaks_the_cwm_tool_format_only(runtime, imported_set, tmp_path):
    traj = Trajectory(tmp_path / "t.json", "p", {}, "issue")
    with pytest.raises(UsageError, match="describes the cwm tool format"):
        Agent(
            FakeModel(), runtime, AgentConfig(prompts=str(imported_set), tool_format="openai"), traj
        )


def test_the_named_set_through_the_cli(oracle, imported_set, cli_env):
    env = {**cli_env, "XDG_CONFIG_HOME": str(imported_set.parents[2])}
    sha = prompt_sets.load(str(imported_set)).sha256
    listed = run_cli(["prompts", "list"], env)
    assert listed.returncode == 0
    assert [line.split()[:2] for line in listed.stdout.splitlines()][1] == ["cwm", sha[:12]]
    shown = run_cli(["prompts", "show", "cwm", "--template", "user"], env)
    assert shown.returncode == 0 and "<issue_description>\n{{ issue }}" in shown.stdout
    assert run_cli(["prompts", "list", "--json"], env).stdout.count('"sha256"') == 2
    again = run_cli(["prompts", "import-cwm", str(oracle)], env)
    assert again.returncode == 2 and "exists already" in again.stderr and "--force" in again.stderr
    other = run_cli(["prompts", "import-cwm", str(oracle), "--name", "cwm-copy"], env)
    assert other.returncode == 0
    assert prompt_sets.load("cwm-copy", env).sha256 == sha  # the same text, the same hash
    doctor = run_cli(
        ["doctor", "--prompts", "cwm", "--base-url", "http://127.0.0.1:9/v1",
         "--connect-timeout", "0.2", "--json"], env,
    )  # fmt: skip
    check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "prompts")
    assert check["status"] == "ok" and f"prompt set cwm (sha256 {sha[:12]})" in check["detail"]
    missing = run_cli(["doctor", "--prompts", "nope", "--json"], env)
    check = next(c for c in json.loads(missing.stdout)["checks"] if c["name"] == "prompts")
    assert check["status"] == "fail" and "prompts import-cwm" in check["hint"]
