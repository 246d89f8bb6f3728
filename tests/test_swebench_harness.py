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
