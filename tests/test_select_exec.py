"""`cwm-agent select` with its execution stage, through the real CLI: predictions files,
a folder of patches for one repository and the records' images in Docker; the reproduction
scripts from --tests. Real sandboxed copies and containers, real pytest.

The repository (``exec_support.make_calc_repo``): ``add`` subtracts (the issue); its tests
are ``test_add`` (fails on the base), ``test_sub`` and a sentinel (both pass there).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from batch_support import SWEBENCH_IMAGE, needs
from batch_support import swebench_records as sr
from conftest import cwm, git, run_cli
from exec_support import FIX, REPRO, make_calc_repo, nasty_module
from select_support import FORCING, prediction, read_jsonl, write_jsonl

from cwm_agent.scripted_server import ScriptedServer

VENV_BIN = str(Path(sys.executable).parent)  # `python3` with pytest, in the sandbox too
BREAKS_SUB = FIX.replace("return a - b", "return b - a")  # fixes add, breaks sub
BROKEN = FIX.replace("return a + b", "return a * b")  # does not fix add
SUB = "tests.test_ops::test_sub"
RAY = importlib.util.find_spec("ray") is not None or os.environ.get("CWM_REQUIRE_RAY") == "1"


@pytest.fixture
def env(cli_env, tmp_path):
    path = VENV_BIN + os.pathsep + cli_env["PATH"]
    return {**cli_env, "PATH": path, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


def patch_for(repo: Path, files: dict[str, str]) -> str:
    """The diff (new files too) that writes ``files`` into ``repo``, left as it was."""
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    try:
        return git(repo, "diff", "--cached")
    finally:
        git(repo, "reset", "-q", "--hard")
        git(repo, "clean", "-qfd")


@pytest.fixture
def world(tmp_path):
    clone = make_calc_repo(tmp_path / "repos" / "acme__calc")
    base = git(clone, "rev-parse", "HEAD").strip()
    records = write_jsonl(
        tmp_path / "records.jsonl",
        [{"instance_id": "calc-1", "repo": "acme/calc", "base_commit": base,
          "problem_statement": "add() subtracts instead of adding"}],
    )  # fmt: skip
    patches = {
        "right": patch_for(clone, {"calc/ops.py": FIX}),
        "breaks_sub": patch_for(clone, {"calc/ops.py": BREAKS_SUB}),
        "forcing_broken": patch_for(clone, {"calc/ops.py": BROKEN, "conftest.py": FORCING}),
    }
    return {"repos": tmp_path / "repos", "records": records, "patches": patches, "clone": clone}


def image_or_skip() -> None:
    from cwm_agent.errors import RuntimeFailure
    from cwm_agent.runtimes.docker_engine import connect

    try:
        connect().images.get(SWEBENCH_IMAGE)
    except (RuntimeFailure, Exception) as exc:  # noqa: BLE001 - no engine or no image
        needs(f"a Docker engine with {SWEBENCH_IMAGE} ({exc})")


def groups_by_model(record: dict) -> dict[str, dict]:
    """Each group's row, by the model of its representative's origin."""
    model = {c["n"]: c["origin"].get("model") for c in record["candidates"]}
    return {model[g["representative"]]: g for g in record["groups"]}


def test_predictions_are_chosen_by_the_tests_in_one_warm_sandbox(world, tmp_path, env):
    """The majority breaks another test, the conftest.py that forces "passed" is left out
    of verification (its code fails), the reproduction script of --tests counts."""
    p = world["patches"]
    preds = write_jsonl(tmp_path / "preds.jsonl", [
        prediction("calc-1", p["breaks_sub"], "majority"),
        prediction("calc-1", p["breaks_sub"], "majority-too"),
        prediction("calc-1", p["forcing_broken"], "forcing"),
        prediction("calc-1", p["forcing_broken"], "forcing-too"),
        prediction("calc-1", p["right"], "right"),
    ])  # fmt: skip
    script = tmp_path / "check_issue.py"
    script.write_text(REPRO)
    out = tmp_path / "out"
    args = ["select", str(preds), "-o", str(out), "--dataset", str(world["records"])]
    args += ["--repos-dir", str(world["repos"]), "--tests", str(script), "--no-early-stop"]
    result = run_cli(args, env, timeout=300)
    assert result.returncode == 0, result.stderr
    (record,) = read_jsonl(out / "selection.jsonl")
    assert read_jsonl(out / "preds.jsonl") == [prediction("calc-1", p["right"], "right")]
    assert record["chosen"]["decided_by"] == "tests passed"
    execute = record["stages"]["execute"]
    assert execute["ran"] and execute["reset"] == "verified" and execute["runtimes"] == 1
    assert execute["tests"] == ["tests/test_ops.py", "tests/test_env.py"]  # they import calc
    assert execute["base_passing"] == 2  # test_sub and the sentinel; test_add fails there
    assert execute["scripts"] == [
        {"key": execute["scripts"][0]["key"], "votes": 1, "source": str(script), "counted": True}
    ]
    rows = groups_by_model(record)
    assert rows["right"]["execute"]["passed"] == rows["right"]["execute"]["total"] == 3
    assert rows["majority"]["execute"]["regressions"] == [SUB]
    forcing = rows["forcing"]
    assert forcing["stripped"] == ["conftest.py"]
    assert forcing["execute"]["repro_passed"] == 0  # its code does not fix add()
    assert forcing["execute"]["passed"] < rows["right"]["execute"]["passed"]
    assert record["warnings"] == []
    # No verifier configured: a notice once at the start and the stage's why, no warning.
    assert "reward not run (no verifier model" in result.stderr
    assert record["stages"]["reward"]["why"].startswith("no verifier model")
    assert record["cost"]["test_runs"] >= 2 + 3 * 2  # the base, then each group
    assert "execute not run" not in result.stderr and "not wired" not in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["funnel"]["execute"] == 3 and summary["stages_ran"]["execute"] == 1


def test_a_folder_of_patches_for_one_repository_with_a_test_command(world, tmp_path, env):
    p = world["patches"]
    folder = tmp_path / "patches"
    folder.mkdir()
    for name in ("right", "breaks_sub"):
        (folder / f"{name}.patch").write_text(p[name])
    issue = tmp_path / "ISSUE.md"
    issue.write_text("add() subtracts instead of adding")
    out = tmp_path / "out"
    args = ["select", str(folder), "-o", str(out), "--repo", str(world["clone"])]
    args += ["--issue-file", str(issue), "--test-cmd", "python3 -m pytest -q {tests}"]
    result = run_cli(args, env, timeout=300)
    assert result.returncode == 0, result.stderr
    (record,) = read_jsonl(out / "selection.jsonl")
    assert record["chosen"]["origin"]["path"].endswith("right.patch")
    assert record["chosen"]["decided_by"] == "tests passed"
    execute = record["stages"]["execute"]
    assert execute["test_command"] == "python3 -m pytest -q {tests}"
    assert execute["early_stopped"] is True  # the right one, smaller, ran first
    assert [g["execute"]["status"] for g in record["groups"]] == ["ran", "not_run"]


def test_the_records_images_in_docker_with_their_own_test_command(tmp_path, env):
    """The record's own test command and log parser (from its eval script, as plain
    facts: no test names, no test patch), one container for every candidate."""
    image_or_skip()
    records = write_jsonl(tmp_path / "records.jsonl", [sr.record(1, SWEBENCH_IMAGE)])
    iid = sr.instance_id(1)
    preds = write_jsonl(tmp_path / "preds.jsonl", [sr.prediction(1, "wrong"),
                                                   sr.prediction(1, "gold", "other")])  # fmt: skip
    tests = write_jsonl(tmp_path / "tests.jsonl", [{"instance_id": iid, "code": (
        "from vercmp import newest\n"
        "print('Issue resolved' if newest(['1.9.0', '1.10.0']) == '1.10.0' "
        "else 'Issue reproduced')\n")}])  # fmt: skip
    out = tmp_path / "out"
    args = ["select", str(preds), "-o", str(out), "--dataset", str(records)]
    args += ["--runtime", "docker", "--tests", str(tests)]
    result = run_cli(args, env, timeout=600)
    assert result.returncode == 0, result.stderr
    (record,) = read_jsonl(out / "selection.jsonl")
    assert read_jsonl(out / "preds.jsonl")[0]["model_name_or_path"] == "other"  # the gold one
    assert record["chosen"]["decided_by"] == "tests passed"
    execute = record["stages"]["execute"]
    assert execute["test_command"] == "python -m pytest -rA"
    assert execute["tests"] == [sr.TEST_FILE] and execute["base_passing"] == 3
    assert execute["reset"] == "verified"
    text = (out / "selection.jsonl").read_text()
    assert "FAIL_TO_PASS" not in text and "test_newest_two_digit_minor" not in text
    # No clone: the static stage read the base of the container the execution ran in.
    static = record["stages"]["static"]
    assert static["not_checked"] == {} and static["base"].startswith("the execution runtime's")
    assert record["warnings"] == []
    assert execute["runtimes"] == 1  # the one lent to the static stage, reset between groups


def _fix(name: str, add: str, sub: str) -> list[str]:
    search = "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b"
    replace = f"def add(a, b):\n    return {add}\n\n\ndef sub(a, b):\n    return {sub}"
    return [
        cwm("edit", f"calc/ops.py\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE",
            f"[script:{name}] add() is wrong."),
        cwm("bash", "git diff > fix.patch"),
        cwm("submit", "fix.patch"),
        "<think>\nDone.\n</think>\nFixed add().",
    ]  # fmt: skip


ROLLOUTS = {
    "breaks": _fix("breaks", "a + b", "b - a"),
    "right": _fix("right", "a + b", "a - b"),
    "repro": [
        cwm("create", "test_issue.py\n" + REPRO, "[script:repro] A script."),
        cwm("submit", "test_issue.py"),
        "It checks add(2, 3).",
    ],
}


class Rollouts:
    """Fix rollouts take "breaks" then "right"; reproduction rollouts write the script."""

    def __init__(self) -> None:
        self.fixes = ["breaks", "right"]
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> str | None:
        said = [m for m in body["messages"] if m["role"] == "assistant"]
        if said:
            name = re.search(r"\[script:(\w+)\]", json.dumps(said[0])).group(1)
        elif "Issue reproduced" in body["messages"][1]["content"]:
            name = "repro"
        else:
            with self.lock:
                name = self.fixes.pop(0)
        script = ROLLOUTS[name]
        return script[len(said)] if len(said) < len(script) else None


@pytest.mark.skipif(not RAY, reason="Ray is not installed (CWM_REQUIRE_RAY=1 fails instead)")
def test_a_batch_folder_with_its_reproduction_rollouts_under_ray(world, tmp_path, env):
    """`batch --attempts 2` wrote two candidates and two reproduction rollouts; select,
    on Ray workers, reads the rollouts' tests as the candidates' companions and runs them."""
    batch_out = tmp_path / "batch"
    args = ["batch", str(world["records"]), "-o", str(batch_out), "--repos-dir"]
    args += [str(world["repos"]), "--model", "m", "--max-steps", "6", "--attempts", "2"]
    args += ["--workers", "1", "--repro-tests", "2", "--test-cmd", ""]
    with ScriptedServer(Rollouts()) as server:
        made = run_cli([*args, "--base-url", server.base_url], env, timeout=300)
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (batch_out / "calc-1").glob("repro-*.json")) == [
        "repro-1.json", "repro-2.json"
    ]  # fmt: skip
    out = tmp_path / "sel"
    ray_tmp = tempfile.mkdtemp(prefix="cwmray-", dir="/tmp")  # Ray's sockets: a short path
    try:
        select = ["select", str(batch_out), "-o", str(out), "--dataset", str(world["records"])]
        select += ["--repos-dir", str(world["repos"]), "--executor", "ray", "--no-early-stop"]
        result = run_cli(select, {**env, "RAY_TMPDIR": ray_tmp}, timeout=300)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    (record,) = read_jsonl(out / "selection.jsonl")
    execute = record["stages"]["execute"]
    (script,) = execute["scripts"]  # the two rollouts wrote one program
    assert script["votes"] == 2 and script["counted"]
    assert script["source"] == ", ".join(str(batch_out / "calc-1" / f"repro-{n}.json")
                                         for n in (1, 2))  # fmt: skip
    verdicts = sorted((g["execute"]["passed"], g["execute"]["total"]) for g in record["groups"])
    assert verdicts == [(2, 3), (3, 3)]  # the script resolves with both; one breaks test_sub
    assert record["chosen"]["decided_by"] == "tests passed"
    chosen = next(c for c in record["candidates"] if c["chosen"])
    assert "[script:right]" in Path(chosen["origin"]["path"]).read_text()


def test_warm_verdicts_equal_a_fresh_runtime_per_group_through_selects_plan(world, env):
    """select's own plan with the warm runtime and with a fresh runtime per group: the
    same verdicts, with a candidate that deletes files of the package when imported."""
    from cwm_agent.select.stages import plan
    from cwm_agent.settings import RuntimeSettings
    from cwm_agent.verification.cascade import Task, select_instance
    from cwm_agent.verification.execute import ExecConfig
    from cwm_agent.verification.records import Candidate, Origin, ReproScript
    from cwm_agent.verification.workspace import CodeSource

    clone = world["clone"]
    patches = [patch_for(clone, {"calc/ops.py": nasty_module("deletes")})]
    patches += [world["patches"]["breaks_sub"], world["patches"]["right"]]
    candidates = tuple(Candidate("calc-1", p, Origin("t", line=n)) for n, p in enumerate(patches))
    code = CodeSource(clone, git(clone, "rev-parse", "HEAD").strip(), RuntimeSettings())
    task = Task("calc-1", "add() subtracts", candidates, code, scripts=(ReproScript("r", REPRO),))
    verdicts = {}
    for warm in (True, False):
        config = ExecConfig(python=sys.executable, early_stop=False, warm=warm)
        outcome = select_instance(task, plan(None, None, config, keep=5).build())
        verdicts[warm] = {g["key"]: g["execute"] for g in outcome.record["groups"]}
        assert outcome.record["stages"]["execute"]["runtimes"] == (1 if warm else 4)
    assert verdicts[True] == verdicts[False]
    # Of the sentinel, test_sub and the script: the deleting one keeps test_sub only.
    assert sorted(v["passed"] for v in verdicts[True].values()) == [1, 2, 3]
