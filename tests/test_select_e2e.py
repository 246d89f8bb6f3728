"""`cwm-agent select` through the real CLI: predictions files, patch folders, usage errors.

Real git repositories in temp dirs; the verifier, where there is one, is the scripted
server through the real `openai` client.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from select_support import (
    judge,
    prediction,
    read_jsonl,
    setup,
    write_jsonl,
)

from cwm_agent.scripted_server import ScriptedServer


@pytest.fixture
def world(tmp_path):
    return setup(tmp_path)


def _select(world, out, *inputs, extra=()):
    args = ["select", *map(str, inputs), "-o", str(out), "--dataset", str(world["records"])]
    return [*args, "--repos-dir", str(world["repos"]), *extra]


def test_predictions_files_to_one_choice_per_instance(world, tmp_path, cli_env):
    p = world["patches"]
    jsonl = write_jsonl(
        tmp_path / "a.jsonl",
        [
            prediction("calc-1", p["wrong"], "m1"),
            prediction("calc-1", p["right"], "m1"),
            prediction("calc-2", p["forcing_only"], "m1"),
            prediction("calc-2", "", "m1"),
        ],
    )
    listed = tmp_path / "b.json"
    listed.write_text(json.dumps([prediction("calc-1", p["right_spaced"], "m2")]))
    keyed = tmp_path / "c.json"
    keyed.write_text(
        json.dumps({"calc-2": {"model_patch": p["broken"], "model_name_or_path": "m3"}})
    )
    out = tmp_path / "out"
    result = run_cli([*_select(world, out, jsonl, listed, keyed), "--json"], cli_env)
    assert result.returncode == 0, result.stderr

    summary = json.loads(result.stdout)
    assert summary == json.loads((out / "summary.json").read_text())
    funnel = {"candidates": 5, "static": 3, "group": 2, "execute": 2, "chosen": 1}
    assert summary["funnel"] == funnel
    preds = read_jsonl(out / "preds.jsonl")
    # 2 votes (a+b and a + b); the smaller patch stands for them
    assert preds == [prediction("calc-1", p["right_spaced"], "m2")]
    records = {r["instance_id"]: r for r in read_jsonl(out / "selection.jsonl")}
    one = records["calc-1"]
    assert one["chosen"]["decided_by"] == "votes"
    assert one["chosen"]["origin"] == {"source": str(listed), "line": 1, "model": "m2"}
    origins = [c["origin"] for c in one["candidates"]]
    assert {"source": str(jsonl), "line": 2, "model": "m1"} in origins
    two = records["calc-2"]
    assert two["chosen"] is None and two["prediction"] is None
    assert two["nothing_chosen"] == "no candidate is left to choose from"
    reasons = {c["origin"]["model"]: c["reason"] for c in two["candidates"]}
    assert reasons["m1"].startswith("non_test: changes only test infrastructure (conftest.py)")
    assert reasons["m3"].startswith("compile: calc.py:2: SyntaxError")
    assert "note: " in result.stderr and "1 empty prediction(s) skipped" in result.stderr
    page = (out / "report.html").read_text()
    assert "Funnel" in page and "calc-1" in page and "<script" not in page
    assert "FAIL_TO_PASS" not in (out / "selection.jsonl").read_text()


def test_an_instance_whose_predictions_are_all_empty_gets_a_record_saying_so(
    world, tmp_path, cli_env
):
    """**Was**: no record at all (only a note that empty predictions were skipped), so the
    instance looked unselected, not settled."""
    p = world["patches"]
    preds = write_jsonl(
        tmp_path / "p.jsonl",
        [prediction("calc-1", p["right"]), prediction("calc-2", ""), prediction("calc-2", "\n")],
    )
    result = run_cli(_select(world, tmp_path / "out", preds), cli_env)
    assert result.returncode == 0, result.stderr
    records = {r["instance_id"]: r for r in read_jsonl(tmp_path / "out" / "selection.jsonl")}
    assert set(records) == {"calc-1", "calc-2"}
    empty = records["calc-2"]
    assert empty["chosen"] is None and empty["prediction"] is None and empty["candidates"] == []
    assert empty["nothing_chosen"] == (
        "nothing to choose from: its 2 prediction(s) are empty (no patch)"
    )
    assert [r["instance_id"] for r in read_jsonl(tmp_path / "out" / "preds.jsonl")] == ["calc-1"]


TEST_PATCH = (
    "diff --git a/tests/test_calc.py b/tests/test_calc.py\n--- a/tests/test_calc.py\n"
    "+++ b/tests/test_calc.py\n@@ -1 +1,2 @@\n x\n+y\n"
)
EVAL_SCRIPT = f"""#!/bin/bash
set -uxo pipefail
source /opt/miniconda3/bin/activate
conda activate testbed
cd /testbed
git status
git checkout {{base}} tests/test_calc.py
git apply -v - <<'EOF_X'
{TEST_PATCH}EOF_X
: '>>>>> Start Test Output'
python -m pytest -rA tests/test_calc.py
: '>>>>> End Test Output'
"""


def test_records_whose_command_needs_their_image_do_not_execute_in_a_local_copy(
    world, tmp_path, cli_env
):
    """SWE-bench records (their command activates the image's conda env) with --repos-dir:
    **was**: execute ran in a sandboxed copy per instance, its base run failed, and every
    instance warned; now it is not run by default, said once, and runs when asked."""
    lines = read_jsonl(world["records"])
    for line in lines:
        script = EVAL_SCRIPT.replace("{base}", line["base_commit"])
        line.update(eval_script=script, log_parser="parse_log_pytest", test_patch=TEST_PATCH)
    write_jsonl(world["records"], lines)
    p = world["patches"]
    preds = write_jsonl(tmp_path / "p.jsonl", [prediction("calc-1", p["wrong"], "m1"),
                                               prediction("calc-1", p["right"], "m2")])  # fmt: skip
    result = run_cli(_select(world, tmp_path / "out", preds), cli_env)
    assert result.returncode == 0, result.stderr
    (record,) = read_jsonl(tmp_path / "out" / "selection.jsonl")
    why = record["stages"]["execute"]["why"]
    assert why.startswith("the records' own test commands need their images")
    assert record["warnings"] == [] and result.stderr.count(why) == 1  # the start line
    asked = run_cli(_select(world, tmp_path / "asked", preds,
                            extra=["--stages", "static,group,execute"]), cli_env)  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert "note: 1 of 1 instance(s): the records' own test commands need" in asked.stderr
    (ran,) = read_jsonl(tmp_path / "asked" / "selection.jsonl")
    assert ran["stages"]["execute"]["ran"]


def test_an_execution_that_cannot_decide_is_said_loudly_with_what_decided(world, tmp_path, cli_env):
    """The clone has no tests and no script was given: the stage runs (--repos-dir gives
    it a runtime) but no check can tell the candidates apart; every instance says so."""
    p = world["patches"]
    preds = write_jsonl(
        tmp_path / "p.jsonl", [prediction("calc-1", p["wrong"]), prediction("calc-1", p["right"])]
    )
    result = run_cli(_select(world, tmp_path / "out", preds), cli_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # stdout is only for --json
    record = read_jsonl(tmp_path / "out" / "selection.jsonl")[0]
    assert record["stages"]["execute"]["ran"] and record["stages"]["execute"]["tests"] == []
    assert {g["execute"]["status"] for g in record["groups"]} == {"not_run"}
    loud = (
        "execute: impacted tests: no test file imports the changed modules; the choice "
        "fell to input order"
    )
    assert record["warnings"] == [loud]
    assert f"WARNING calc-1: {loud}" in result.stderr
    assert f"WARNING (1 instance(s)): {loud}" in result.stderr


def test_a_folder_of_patches_for_one_local_repository(world, tmp_path, cli_env):
    p = world["patches"]
    folder = tmp_path / "patches"
    folder.mkdir()
    for name in ("wrong", "right", "right_spaced", "broken"):
        (folder / f"{name}.patch").write_text(p[name])
    (folder / "notes.txt").write_text("not a patch")
    issue = tmp_path / "ISSUE-7.md"
    issue.write_text("add() subtracts instead of adding")
    work = world["repos"] / "work"  # a checkout at the base (select_support made it)
    out = tmp_path / "out"
    args = ["select", str(folder), "-o", str(out), "--repo", str(work), "--issue-file", str(issue)]
    result = run_cli([*args, "--stages", "static,group"], cli_env)
    assert result.returncode == 0, result.stderr
    (record,) = read_jsonl(out / "selection.jsonl")
    assert record["instance_id"] == "ISSUE-7"
    assert record["chosen"]["decided_by"] == "votes"
    assert record["chosen"]["origin"]["path"].endswith(("right.patch", "right_spaced.patch"))
    assert read_jsonl(out / "preds.jsonl")[0]["model_name_or_path"] == "cwm-agent-select"
    broken = next(c for c in record["candidates"] if c["origin"]["path"].endswith("broken.patch"))
    assert broken["pruned_at"] == "static"
    assert record["stages"]["static"]["base"].startswith(str(work))


def test_the_verifier_decides_and_its_cache_answers_another_selection(world, tmp_path, cli_env):
    p = world["patches"]
    preds = write_jsonl(
        tmp_path / "p.jsonl",
        [
            prediction("calc-1", p["wrong"]),
            prediction("calc-1", p["wrong"]),
            prediction("calc-1", p["right"]),
        ],  # fmt: skip
    )
    cache = tmp_path / "cache"
    with ScriptedServer(judge) as server:
        extra = ["--verifier-model", "judge", "--verifier-base-url", server.base_url]
        extra += ["--verifier-cache", str(cache), "--stages", "static,group,reward"]
        first = run_cli(_select(world, tmp_path / "one", preds, extra=extra), cli_env)
        asked = len(server.requests)
        second = run_cli(_select(world, tmp_path / "two", preds, extra=extra), cli_env)
        assert len(server.requests) == asked == 2
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    for out in ("one", "two"):
        (record,) = read_jsonl(tmp_path / out / "selection.jsonl")
        assert record["chosen"]["decided_by"] == "reward score"  # over 2 votes for the wrong one
        assert read_jsonl(tmp_path / out / "preds.jsonl")[0]["model_patch"] == p["right"]
    (again,) = read_jsonl(tmp_path / "two" / "selection.jsonl")
    assert again["stages"]["reward"]["cached"] == 2
    assert again["stages"]["reward"]["cost"]["model_calls"] == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--stages", "static,bogus"], "unknown stage(s) bogus"),
        (["--stages", "reward"], "--stages reward: no verifier model"),
        (["--split", "dev"], "--split is for --dataset"),
    ],
)
def test_usage_errors(world, tmp_path, cli_env, extra, message):
    preds = write_jsonl(tmp_path / "p.jsonl", [prediction("calc-1", world["patches"]["right"])])
    args = ["select", str(preds), "-o", str(tmp_path / "out")]
    if "--split" not in extra:
        args += ["--dataset", str(world["records"])]
    result = run_cli([*args, *extra], cli_env)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_tests_without_the_execute_stage_are_refused(world, tmp_path, cli_env):
    preds = write_jsonl(tmp_path / "p.jsonl", [prediction("calc-1", world["patches"]["right"])])
    script = tmp_path / "check.py"
    script.write_text("print('Issue resolved')\n")
    args = ["select", str(preds), "-o", str(tmp_path / "out"), "--dataset", str(world["records"])]
    result = run_cli([*args, "--tests", str(script)], cli_env)  # no runtime: no execution
    assert result.returncode == 2, result.stderr
    assert "--tests is for the execute stage, which does not run (no runtime" in result.stderr
    assert not (tmp_path / "out").exists()


def test_malformed_inputs_name_the_file_and_line(world, tmp_path, cli_env):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(prediction("calc-1", "x")) + "\n{not json\n")
    result = run_cli(_select(world, tmp_path / "out", bad), cli_env)
    assert result.returncode == 2
    assert f"{bad}:2: not valid JSON" in result.stderr
    unknown = write_jsonl(tmp_path / "u.jsonl", [prediction("nope-1", world["patches"]["right"])])
    result = run_cli(_select(world, tmp_path / "out2", unknown), cli_env)
    assert result.returncode == 2 and "not in" in result.stderr and "nope-1" in result.stderr
    assert not (tmp_path / "out2").exists()
