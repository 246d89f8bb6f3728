"""`cwm-agent evaluate` agrees with the official harness (`swebench.harness.run_evaluation`,
run here as its users run it) on the same predictions, records and image.

The harness needs no build and no pull: in swebench 5 a record names its instance image
(``image``), and `run_evaluation` uses an image that is already on the engine as it is
(it pulls only when the image is missing). The records here name the SWE-bench-shaped
test image, so both graders start their containers from the same local image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from batch_support import SWEBENCH_IMAGE, read_json, swebench_engine, write_jsonl
from batch_support import swebench_records as sr
from conftest import run_cli

KINDS = ["gold", "wrong", "wrong", "garbage", "empty", "gold"]  # instance n gets KINDS[n - 1]


@pytest.fixture(scope="module")
def engine():
    client = swebench_engine()
    yield client
    client.close()


def verdicts(report: dict) -> dict[str, list[str]]:
    keys = ("resolved_ids", "unresolved_ids", "error_ids", "empty_patch_ids", "completed_ids")
    return {key: report[key] for key in keys}


def test_evaluate_gives_the_official_harness_verdicts(engine, tmp_path):
    records = sr.records(len(KINDS), SWEBENCH_IMAGE)
    dataset = write_jsonl(tmp_path / "dataset.jsonl", records)
    preds_rows = [sr.prediction(n, kind) for n, kind in enumerate(KINDS, 1)]
    preds = write_jsonl(tmp_path / "preds.jsonl", preds_rows)
    harness = tmp_path / "harness"
    harness.mkdir()
    official = subprocess.run(
        [sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name", str(dataset)]
        + ["--predictions_path", str(preds), "--run_id", "agree", "--max_workers", "5"]
        + ["--report_dir", str(harness / "report")],
        cwd=harness,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert official.returncode == 0, official.stdout[-3000:] + official.stderr[-3000:]
    theirs = read_json(harness / "report" / "m.agree.json")
    ours_run = run_cli(
        ["evaluate", str(preds), "--dataset", str(dataset), "--workers", "5"]
        + ["-o", str(tmp_path / "ours"), "--json"],
        dict(os.environ),
        timeout=300,
    )
    assert ours_run.returncode == 0, ours_run.stderr
    ours = json.loads(ours_run.stdout)
    ids = [sr.instance_id(n) for n in range(1, len(KINDS) + 1)]
    expected = {
        "resolved_ids": [ids[0], ids[5]],
        "unresolved_ids": ids[1:3],
        "error_ids": [ids[3]],
        "empty_patch_ids": [ids[4]],
        "completed_ids": [ids[0], *ids[1:3], ids[5]],
    }
    assert verdicts(theirs) == expected  # the harness itself, on these predictions
    assert verdicts(ours) == verdicts(theirs)
    assert {k: v for k, v in ours.items() if k in theirs} == {
        k: v for k, v in theirs.items() if k in ours and not k.startswith("unremoved")
    }
    for iid in theirs["completed_ids"]:  # and the same test results, test by test
        logs = harness / "logs" / "run_evaluation" / "agree" / "m" / iid
        their_tests = read_json(logs / "report.json")[iid]["tests_status"]
        assert ours["instances"][iid]["tests_status"] == their_tests, iid
        assert (tmp_path / "ours" / iid / "eval.sh").read_text() == (logs / "eval.sh").read_text()


# Each instance's candidates, in PREDS's order (instance n: CANDIDATES[n - 1]).
CANDIDATES = [["wrong", "gold", "gold", "garbage"], ["gold", "wrong"], ["wrong", "empty"]]
STATUS = {"resolved_ids": "resolved", "unresolved_ids": "unresolved", "error_ids": "error"}
STATUS["empty_patch_ids"] = "empty"


def official(tmp_path, dataset, rows, run_id):
    """The harness's verdict of each prediction in ``rows`` (one per instance)."""
    preds = write_jsonl(tmp_path / f"{run_id}.jsonl", rows)
    harness = tmp_path / "harness"
    harness.mkdir(exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name", str(dataset)]
        + ["--predictions_path", str(preds), "--run_id", run_id, "--max_workers", "3"]
        + ["--report_dir", str(harness / "report")],
        cwd=harness,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = read_json(harness / "report" / f"m.{run_id}.json")
    return {iid: STATUS[key] for key in STATUS for iid in report[key]}


def test_evaluate_candidates_gives_the_official_harness_verdicts(engine, tmp_path):
    """Every line graded in one warm container per instance, as the harness grades each
    one in a fresh container (run here once per column: one prediction per instance)."""
    records = sr.records(len(CANDIDATES), SWEBENCH_IMAGE)
    dataset = write_jsonl(tmp_path / "dataset.jsonl", records)
    placed = [(n, kind) for n, kinds in enumerate(CANDIDATES, 1) for kind in kinds]
    rows = [sr.prediction(n, kind, model=f"model-{k}") for k, (n, kind) in enumerate(placed)]
    preds = write_jsonl(tmp_path / "preds.jsonl", rows)
    expected: dict[int, str] = {}  # line -> the harness's verdict
    for column in range(max(len(kinds) for kinds in CANDIDATES)):
        picked = {}  # line -> prediction; an exact copy of a graded patch needs no run
        for line, (n, kind) in enumerate(placed, 1):
            if (
                CANDIDATES[n - 1][column : column + 1] == [kind]
                and kind not in CANDIDATES[n - 1][:column]
            ):
                picked[line] = sr.prediction(n, kind)
        if picked:
            found = official(tmp_path, dataset, list(picked.values()), f"col{column}")
            expected.update({line: found[pred["instance_id"]] for line, pred in picked.items()})
    expected[3] = expected[2]  # instance 1's second gold: the same bytes as line 2
    run = run_cli(
        ["evaluate", str(preds), "-d", str(dataset), "--candidates", "-o", str(tmp_path / "ours")]
        + ["--json", "--workers", "3"],
        dict(os.environ),
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    ours = json.loads(run.stdout)
    assert {c["line"]: c["status"] for c in ours["candidates"]} == expected
    assert expected == {1: "unresolved", 2: "resolved", 3: "resolved", 4: "error",
                        5: "resolved", 6: "unresolved", 7: "unresolved", 8: "empty"}  # fmt: skip
    assert [c["model_name_or_path"] for c in ours["candidates"]] == [
        r["model_name_or_path"] for r in rows
    ]
    assert ours["resolved_ids"] == [sr.instance_id(1), sr.instance_id(2)]  # any candidate
    first = ours["instances"][sr.instance_id(1)]
    assert (first["candidates"], first["distinct_patches"], first["graded"]) == (4, 3, 3)
    assert (first["containers"], first["resets_verified"], first["reset_fallbacks"]) == (1, 2, [])


def test_first_resolved_stops_an_instance_and_a_rerun_reuses_the_verdicts(engine, tmp_path):
    records = sr.records(1, SWEBENCH_IMAGE)
    dataset = write_jsonl(tmp_path / "dataset.jsonl", records)
    kinds = ["wrong", "gold", "garbage", "gold"]
    preds = write_jsonl(tmp_path / "preds.jsonl", [sr.prediction(1, kind) for kind in kinds])
    args = ["evaluate", str(preds), "-d", str(dataset), "--candidates", "--first-resolved"]
    args += ["-o", str(tmp_path / "ours"), "--json"]
    run = run_cli(args, dict(os.environ), timeout=300)
    assert run.returncode == 0, run.stderr
    statuses = [c["status"] for c in json.loads(run.stdout)["candidates"]]
    assert statuses == ["unresolved", "resolved", "skipped", "resolved"]
    again = run_cli(args, dict(os.environ), timeout=300)
    assert "2 verdict(s) reused" in again.stderr
    assert [c["status"] for c in json.loads(again.stdout)["candidates"]] == statuses
    assert json.loads(again.stdout)["instances"][sr.instance_id(1)]["containers"] == 0
