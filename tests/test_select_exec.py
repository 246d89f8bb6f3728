"""`cwm-agent select` with its execution stage, through the real CLI: predictions files,
a folder of patches for one repository and the records' images in Docker; the reproduction
scripts from --tests. Real sandboxed copies and containers, real pytest.

The repository (``exec_support.make_calc_repo``): ``add`` subtracts (the issue); its tests
are ``test_add`` (fails on the base), ``test_sub`` and a sentinel (both pass there).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from batch_support import SWEBENCH_IMAGE, needs
from batch_support import swebench_records as sr
from conftest import git, run_cli
from exec_support import FIX, REPRO, make_calc_repo
from select_support import FORCING, prediction, read_jsonl, write_jsonl

VENV_BIN = str(Path(sys.executable).parent)  # `python3` with pytest, in the sandbox too
BREAKS_SUB = FIX.replace("return a - b", "return b - a")  # fixes add, breaks sub
BROKEN = FIX.replace("return a + b", "return a * b")  # does not fix add
SUB = "tests.test_ops::test_sub"


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
