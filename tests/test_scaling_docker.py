"""A scaled run in containers: test files submitted from a container, checks run in others.

K=2 (a right and a wrong fix of add()) and two reproduction rollouts, one of which
submits its test by a path relative to the directory it moved to. The test image has no
pytest: the impacted tests cannot run on the base, which the selection says loudly (in
selection.json and on stderr) with what decided instead: the reproduction test, run in
the one warm container the execution stage uses.
"""

from __future__ import annotations

import json
import re
import threading

from conftest import cwm, run_cli
from test_docker_runtime import IMAGE, client  # noqa: F401 - the engine fixture

TEST = """from mathlib.ops import add
print("Issue resolved" if add(2, 3) == 5 else "Issue reproduced")
"""


def fix(name: str, line: str) -> list[str]:
    edit = f"mathlib/ops.py\n<<<<<<< SEARCH\n    return a - b\n=======\n{line}\n>>>>>>> REPLACE"
    return [
        cwm("edit", edit, f"[script:{name}] Fix add()."),
        cwm("bash", "git diff > fix.patch"),
        cwm("submit", "fix.patch"),
        "Fixed add().",
    ]


SCRIPTS = {
    "right": fix("right", "    return a + b"),
    "wrong": fix("wrong", "    return a * b"),
    "at-root": [
        cwm("create", "test_issue.py\n" + TEST, "[script:at-root] A test."),
        cwm("submit", "test_issue.py"),
        "It calls add(2, 3).",
    ],
    "from-below": [
        cwm("create", "test_issue.py\n" + TEST, "[script:from-below] A test."),
        cwm("bash", "cd mathlib && pwd"),
        cwm("submit", "../test_issue.py"),  # relative to the session's directory
        "It calls add(2, 3).",
    ],
}


class Conversations:
    def __init__(self) -> None:
        self.waiting = {"fix": ["wrong", "right"], "repro": ["at-root", "from-below"]}
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> str | None:
        messages = body["messages"]
        said = [m for m in messages if m["role"] == "assistant"]
        if said:
            name = re.search(r"\[script:([\w-]+)\]", json.dumps(said[0])).group(1)
        else:
            kind = "repro" if "Issue reproduced" in messages[1]["content"] else "fix"
            with self.lock:
                name = self.waiting[kind].pop(0)
        script = SCRIPTS[name]
        return script[len(said)] if len(said) < len(script) else None


def test_a_scaled_run_in_containers(client, buggy_repo, cli_env, tmp_path):  # noqa: F811
    from cwm_agent.scripted_server import ScriptedServer

    with ScriptedServer(Conversations()) as server:
        args = ["run", str(buggy_repo), "--issue", "add() subtracts", "--model", "m", "--json"]
        args += ["--base-url", server.base_url, "--attempts", "2", "--repro-tests", "2"]
        args += ["--runtime", "docker", "--image", IMAGE, "--traj", str(tmp_path / "run.json")]
        result = run_cli(args, cli_env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    sel = doc["selection"]
    assert "+    return a + b" in doc["patch"]
    tests = sel["reproduction_tests"]
    assert [(t["base_outcome"], t["counted"]) for t in tests] == [("reproduced", True)] * 2
    assert {t["path"] for t in tests} == {"test_issue.py", "../test_issue.py"}
    execute = sel["stages"]["execute"]
    assert [(s["votes"], s["counted"]) for s in execute["scripts"]] == [(2, True)]  # one program
    # No pytest in the image: the existing tests cannot run, and that is said loudly, in
    # selection.json and on stderr, with what decided instead (the reproduction script).
    assert execute["base_passing"] == 0 and execute["tests"] == ["tests/test_ops.py"]
    (warning,) = sel["warnings"]
    assert warning.startswith("execute: the test command passes no test on the base")
    assert "No module named pytest" in warning
    assert warning.endswith("the choice fell to the checks that could run (tests passed)")
    assert f"warning: selection: {warning}" in result.stderr
    right = next(r for r in sel["rollouts"] if r["selected"])
    wrong = next(r for r in sel["rollouts"] if not r["selected"])
    assert (right["checks"]["passed"], right["checks"]["total"]) == (1, 1)  # the script
    assert (wrong["checks"]["passed"], wrong["checks"]["total"]) == (0, 1)
    assert sel["chosen"]["decided_by"] == "tests passed"
    assert execute["runtimes"] == 1 and execute["reset"] == "verified"  # one container
