"""`show` on damaged trajectories (issue 21 item 16): fields of the wrong type.

A trajectory is a file anyone can edit (or another program can write): `model_seconds:
"x"`, `usage: []`, a step that is `null` used to crash `show` and `show --html` with a
traceback. Now: `Error: PATH is not a valid trajectory: <which field, what it holds>`,
exit 2, for the terminal transcript and the page alike; a missing field still reads as
its default (a run in progress, an older format).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_buggy_repo, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_run_e2e import FIXING_SCRIPT

from cwm_agent.cli import main
from cwm_agent.scripted_server import ScriptedServer


@pytest.fixture(scope="module")
def trajectory(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("damaged")
    repo = make_buggy_repo(base / "repo")
    env = {**os.environ, "CWM_AGENT_HOME": str(base / "home"), "OPENAI_API_KEY": "k"}
    traj = base / "run.json"
    with ScriptedServer(FIXING_SCRIPT) as server:
        args = ["run", str(repo), "--issue", "add() subtracts", "--base-url", server.base_url]
        result = run_cli([*args, "--model", "m", "--traj", str(traj), "-q"], env)
    assert result.returncode == 0, result.stderr
    return json.loads(traj.read_text())


def damaged(data: dict, path: tuple, value) -> dict:
    """A copy of ``data`` with the member at ``path`` (keys and indexes) set to ``value``."""
    data = copy.deepcopy(data)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


# (where, value, what the message names)
DAMAGE = [
    (("steps", 0, "model_seconds"), "x", 'step 1: model_seconds is "x", not a number'),
    (("steps", 0, "usage"), [], "step 1: usage is [], not an object"),
    (("steps", 1), None, "step 2 is null, not an object"),
    (("usage",), [], "usage is [], not an object"),
    (("usage", "prompt_tokens"), "many", 'usage.prompt_tokens is "many", not a number'),
    (("steps", 0, "observation"), "x", 'step 1: observation is "x", not an object'),
    (("steps", 0, "observation", "duration"), "1s", "observation.duration"),
    (("steps", 0, "action"), 5, "step 1: action is 5, not an object"),
    (("steps", 0, "action", "args"), ["ls"], "step 1: action.args"),
    (("steps", 0, "hooks"), [], "step 1: hooks is [], not an object"),
    (("config",), [], "config is [], not an object"),
    (("config", "model"), "m", 'config.model is "m", not an object'),
    (("messages",), {"a": 1}, "messages is"),
    (("messages", 2), 7, "messages[2] is 7, not an object"),
    (("exit_code",), "zero", 'exit_code is "zero", not a number'),
    (("patch",), 5, "patch is 5, not a string"),
    (("started_at",), "yesterday", "started_at"),
    (("wall_seconds",), True, "wall_seconds is true, not a number"),
    (("submissions",), "one", "submissions"),
]


@pytest.mark.parametrize("html", [False, True], ids=["terminal", "html"])
@pytest.mark.parametrize(("path", "value", "named"), DAMAGE, ids=[str(d[0]) for d in DAMAGE])
def test_a_field_of_the_wrong_type_is_a_usage_error(trajectory, tmp_path, path, value, named, html):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(damaged(trajectory, path, value)))
    args = ["show", str(bad), *(["--html", str(tmp_path / "p.html")] if html else [])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert f"{bad} is not a valid trajectory: " in result.output
    assert named in result.output
    assert not (tmp_path / "p.html").exists()


@pytest.mark.parametrize(
    ("path", "value"),
    [(("steps", 0, "model_seconds"), "x"), (("steps", 0, "usage"), []), (("steps", 1), None)],
    ids=["model_seconds", "usage", "null-step"],
)
def test_the_cases_of_the_report_through_the_real_cli(trajectory, tmp_path, cli_env, path, value):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(damaged(trajectory, path, value)))
    for extra in ([], ["--html", str(tmp_path / "p.html")]):
        result = run_cli(["show", str(bad), *extra], cli_env)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith(f"Error: {bad} is not a valid trajectory: step ")


def test_missing_fields_still_show(trajectory, tmp_path):
    """Tolerance kept: nulls and absent members read as their defaults."""
    data = damaged(trajectory, ("steps", 0, "usage"), None)
    for key in ("config", "usage", "started_at", "wall_seconds", "exit_code", "messages"):
        data.pop(key)
    data["steps"][1].pop("model_seconds")
    data["steps"][2]["observation"] = None
    good = tmp_path / "good.json"
    good.write_text(json.dumps(data))
    for extra in ([], ["--html", "-"]):
        result = CliRunner().invoke(main, ["show", str(good), *extra])
        assert result.exit_code == 0, (result.output, result.exception)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value, prefix=()) -> list[tuple]:
    """Every member's path in a JSON document."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*prefix, i))
    return found


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_damage_is_shown_or_refused_never_a_crash(trajectory, data):
    paths = _paths({k: v for k, v in trajectory.items() if k != "messages"})
    path = data.draw(st.sampled_from(paths))
    doc = damaged(trajectory, path, data.draw(JSON))
    html = data.draw(st.booleans())
    with tempfile.TemporaryDirectory() as tmp:
        traj = Path(tmp) / "t.json"
        traj.write_text(json.dumps(doc))
        result = CliRunner().invoke(main, ["show", str(traj), *(["--html", "-"] if html else [])])
    assert result.exit_code in (0, 2), (path, result.output, result.exception)
    refused = ("is not a valid trajectory: ", "is not a cwm-agent trajectory (no list of 'steps')")
    assert result.exit_code == 0 or any(reason in result.output for reason in refused)
