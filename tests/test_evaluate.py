"""`cwm-agent evaluate`: predictions and records on their own, then grading in real containers
of the SWE-bench-shaped image (tests/docker/swebench) through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from batch_support import (
    SWEBENCH_IMAGE,
    leftover_containers,
    read_json,
    swebench_engine,
    wait_for,
    write_jsonl,
)
from batch_support import swebench_records as sr
from conftest import run_cli

from cwm_agent.errors import UsageError
from cwm_agent.evaluate import tasks
from cwm_agent.verification.images import record_image


# -- without Docker ----------------------------------------------------------------------
def test_importing_the_cli_and_other_commands_never_import_swebench():
    code = (
        "import sys; from click.testing import CliRunner; import cwm_agent.cli as cli\n"
        "for args in (['batch', '--help'], ['--help'], ['evaluate', '--help']):\n"
        "    result = CliRunner().invoke(cli.main, args)\n"
        "    assert result.exit_code == 0, result.output\n"
        "    heavy = sorted(m for m in ('swebench', 'datasets', 'pyarrow') if m in sys.modules)\n"
        "    print(args[0], heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["batch []", "--help []", "evaluate []"]


def test_predictions_are_read_as_the_harness_reads_them(tmp_path):
    rows = [sr.prediction(1, "wrong"), sr.prediction(2, "gold"), sr.prediction(1, "gold")]
    jsonl = write_jsonl(tmp_path / "preds.jsonl", rows)
    as_list = tmp_path / "preds.json"
    as_list.write_text(json.dumps(rows))
    by_id = tmp_path / "by_id.json"
    by_id.write_text(json.dumps({r["instance_id"]: r for r in rows}))
    for path in (jsonl, as_list):  # the last prediction of an id wins
        read = tasks.last_predictions(path)
        assert [p["instance_id"] for p in read] == [sr.instance_id(2), sr.instance_id(1)]
        assert read[1]["model_patch"] == sr.prediction(1, "gold")["model_patch"]
    assert len(tasks.last_predictions(by_id)) == 2
    bad = {
        "not valid JSON": '{"instance_id": \n',
        "bad.jsonl:1: no instance_id": '{"model_patch": ""}\n',
        "must be a string": '{"instance_id": "a", "model_patch": 3}\n',
        "holds no predictions": "\n",
    }
    for expected, text in bad.items():
        (tmp_path / "bad.jsonl").write_text(text)
        with pytest.raises(UsageError, match=expected):
            tasks.last_predictions(tmp_path / "bad.jsonl")


def test_each_prediction_needs_its_record_and_its_grading_fields():
    records = sr.records(2)
    matched = tasks.match([sr.prediction(2, "gold")], records)
    assert [(t.instance_id, t.image) for t in matched] == [(sr.instance_id(2), sr.IMAGE)]
    with pytest.raises(UsageError, match="name no instance of the dataset: nope__x-1") as err:
        tasks.match([{**sr.prediction(1, "gold"), "instance_id": "nope__x-1"}], records)
    assert "--dataset" in err.value.hint
    old_style = [{k: v for k, v in r.items() if k != "eval_script"} for r in records]
    with pytest.raises(UsageError, match="has no eval_script"):
        tasks.match([sr.prediction(1, "gold")], old_style)
    assert tasks.match([sr.prediction(1, "empty")], old_style)  # nothing to grade: fine
    template = "reg/{instance_id_1776}:v1"
    assert tasks.match([sr.prediction(1, "gold")], records, template)[0].image == (
        "reg/cwm-agent_1776_vercmp-1:v1"
    )
    no_image = [{k: v for k, v in r.items() if k != "image"} for r in records]
    assert record_image(no_image[0]) == ("swebench/sweb.eval.x86_64.cwm-agent_1776_vercmp-1:latest")
    key = matched[0].key()
    assert tasks.match([sr.prediction(2, "gold")], records)[0].key() == key
    assert tasks.match([sr.prediction(2, "wrong")], records)[0].key() != key


# -- grading in containers ---------------------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    client = swebench_engine()
    yield client
    client.close()


def evaluate(tmp_path, preds, *extra, records=None):
    dataset = write_jsonl(tmp_path / "dataset.jsonl", records or sr.records(4, SWEBENCH_IMAGE))
    preds_path = write_jsonl(tmp_path / "preds.jsonl", preds)
    args = ["evaluate", str(preds_path), "--dataset", str(dataset), "--workers", "2", *extra]
    return run_cli(args, dict(os.environ), timeout=240)


def test_a_right_patch_is_resolved_and_wrong_ones_are_not(engine, tmp_path):
    preds = [
        sr.prediction(1, "gold"),
        sr.prediction(2, "wrong"),  # applies; breaks a test that passed
        sr.prediction(3, "wrong"),  # applies; the failing test still fails
        sr.prediction(4, "garbage"),  # no diff: every apply fallback fails
    ]
    result = evaluate(tmp_path, preds, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # --json: the report, and nothing else, on stdout
    assert report == read_json(tmp_path / "evaluation" / "report.json")
    ids = [sr.instance_id(n) for n in range(1, 5)]
    assert report["resolved_ids"] == [ids[0]]
    assert report["unresolved_ids"] == ids[1:3]
    assert report["error_ids"] == [ids[3]] and report["completed_ids"] == ids[:3]
    assert (report["total_instances"], report["submitted_instances"]) == (4, 4)
    assert report["schema_version"] == 2
    bump = report["instances"][ids[1]]["tests_status"]
    assert bump["FAIL_TO_PASS"]["success"] == [sr.BUGS["bump"]]
    assert bump["PASS_TO_PASS"]["failure"] == [f"{sr.TEST_FILE}::test_bump_patch"]
    folder = tmp_path / "evaluation" / ids[0]
    for name in ("patch.diff", "eval.sh", "test_output.txt", "run_instance.log", "report.json"):
        assert (folder / name).exists(), name
    assert ">>>>> Start Test Output" in (folder / "test_output.txt").read_text()
    assert "Patch Apply Failed" in report["instances"][ids[3]]["error"]
    assert f"{ids[0]}: RESOLVED" in result.stderr and "resolved 1 of 4" in result.stderr
    assert leftover_containers(engine, {report["evaluation"]["run_id"]}) == []

    # Again: every verdict is reused (the error is tried again); a changed patch is regraded.
    preds[1] = sr.prediction(2, "gold")
    again = evaluate(tmp_path, preds, "--json")
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["resolved_ids"] == ids[:2] and second["error_ids"] == [ids[3]]
    assert "2 verdict(s) reused" in again.stderr
    assert f"{ids[1]}: RESOLVED" in again.stderr and f"{ids[0]}: RESOLVED (" not in again.stderr


def test_empty_patches_missing_images_and_time_limits(engine, tmp_path):
    records = sr.records(3, SWEBENCH_IMAGE)
    records[1]["image"] = "cwm-agent-no-such-image:latest"
    records[2]["eval_script"] = records[2]["eval_script"].replace(
        "python -m pytest", "sleep 30; python -m pytest"
    )
    preds = [sr.prediction(1, "empty"), sr.prediction(2, "gold"), sr.prediction(3, "gold")]
    result = evaluate(tmp_path, preds, "--timeout", "2", records=records)
    assert result.returncode == 0, result.stderr
    report = read_json(tmp_path / "evaluation" / "report.json")
    ids = [sr.instance_id(n) for n in range(1, 4)]
    assert report["empty_patch_ids"] == [ids[0]]
    assert report["error_ids"] == ids[1:]
    missing = report["instances"][ids[1]]["error"]
    assert "cwm-agent-no-such-image:latest" in missing and "docker pull" in missing
    assert "timed out after 2 seconds" in report["instances"][ids[2]]["error"]
    assert (
        "Timeout error: 2 seconds exceeded."
        in (tmp_path / "evaluation" / ids[2] / "test_output.txt").read_text()
    )
    assert report["failure_reasons"] == {ids[2]: "tests_timed_out"}  # swebench's classifier
    assert leftover_containers(engine, {report["evaluation"]["run_id"]}) == []


def test_usage_errors_exit_2(tmp_path):
    records = write_jsonl(tmp_path / "dataset.jsonl", sr.records(1))
    preds = write_jsonl(tmp_path / "preds.jsonl", [sr.prediction(7, "gold")])
    env = dict(os.environ)
    cases = {
        "name no instance of the dataset": ["evaluate", str(preds), "-d", str(records)],
        "neither a file": ["evaluate", str(preds), "-d", "./missing.jsonl"],
        "--split is for a dataset": ["evaluate", str(preds), "-d", str(records), "--split", "x"],
        "--ray-address is for --executor ray": [
            "evaluate",
            str(preds),
            "-d",
            str(records),
            "--ray-address",
            "h:1",  # fmt: skip
        ],
        "Missing option": ["evaluate", str(preds)],
    }
    for expected, args in cases.items():
        result = run_cli(args, env)
        assert result.returncode == 2, (expected, result.stderr)
        assert expected in result.stderr, (expected, result.stderr)
        assert result.stdout == ""


def test_without_an_engine_exit_4_and_ctrl_c_removes_the_containers(engine, tmp_path):
    records = sr.records(2, SWEBENCH_IMAGE)
    for record in records:  # eval scripts that would run for a minute
        record["eval_script"] = record["eval_script"].replace("python -m", "sleep 60; python -m")
    dataset = write_jsonl(tmp_path / "dataset.jsonl", records)
    preds = write_jsonl(
        tmp_path / "preds.jsonl", [sr.prediction(1, "gold"), sr.prediction(2, "gold")]
    )
    args = ["evaluate", str(preds), "--dataset", str(dataset), "-o", str(tmp_path / "out")]
    no_engine = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    result = run_cli(args, no_engine)
    assert result.returncode == 4 and "no Docker engine answers" in result.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "cwm_agent", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: len(started(engine, proc.pid)) == 2, timeout=60)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "evaluation interrupted" in stderr
    assert started(engine, proc.pid) == set()  # removed, not left to `cleanup`
    assert not list((tmp_path / "out").glob("*/outcome.json"))  # no verdict was made


def started(engine, pid: int) -> set[str]:
    """Ids of the containers the process ``pid`` made that are there now (one call: no
    inspect that a removal can race; other runs on the same engine do not count)."""
    from cwm_agent.runtimes.docker_engine import OWNER_LABEL

    found = engine.api.containers(all=True, filters={"label": OWNER_LABEL})
    return {c["Id"] for c in found if f"/{pid}/" in c["Labels"].get(OWNER_LABEL, "")}


def test_select_and_evaluate_read_a_predictions_file_the_same_way(tmp_path):
    """One reader (``verification/predictions.py``): a JSON object keyed by instance id
    whose values do not repeat the id, with an upper-case suffix (**was**: evaluate
    refused what select read), gives both the same lines, ids, patches and models."""
    from cwm_agent.verification.candidates import read_inputs

    rows = [sr.prediction(1, "wrong"), sr.prediction(2, "gold")]
    keyed = tmp_path / "preds.JSON"
    without_id = {r["instance_id"]: {k: v for k, v in r.items() if k != "instance_id"}
                  for r in rows}  # fmt: skip
    keyed.write_text(json.dumps(without_id))
    graded = [(n, p["instance_id"], p["model_patch"], p["model_name_or_path"])
              for n, p in tasks.read_lines(keyed)]  # fmt: skip
    chosen = [(c.origin.line, c.instance_id, c.patch, c.origin.model)
              for c in read_inputs([str(keyed)]).candidates]  # fmt: skip
    assert graded == chosen and [g[1] for g in graded] == [sr.instance_id(1), sr.instance_id(2)]
