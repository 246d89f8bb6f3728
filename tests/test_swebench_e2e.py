"""SWE-bench end to end in the SWE-bench-shaped image (tests/docker/swebench): `batch` with
the records' own images gives the agent the testbed env's python, `--evaluate` grades as
it solves, and nothing of the grading fields ever reaches the model.

The real CLI, the real Docker engine, the model scripted over HTTP.
"""

from __future__ import annotations

import json

import pytest
from batch_support import (
    SWEBENCH_IMAGE,
    ByPhrase,
    leftover_containers,
    read_json,
    read_preds,
    run_ids,
    swebench_engine,
    write_jsonl,
)
from batch_support import swebench_records as sr
from conftest import cwm, run_cli

from cwm_agent.scripted_server import ScriptedServer

PROBE = 'python -c "import sys; print(sys.prefix)"; python -m pytest -q 2>&1 | tail -n 1'
# What must never reach the model: the grading fields (and the hints, never shown either).
SECRETS = ("SENTINEL-GOLD", "SENTINEL-TEST-PATCH", "SENTINEL-HINT", sr.DELIMITER)
SECRETS += tuple(sr.BUGS.values()) + tuple(name.split("::")[1] for name in sr.BUGS.values())


@pytest.fixture(scope="module")
def engine():
    client = swebench_engine()
    yield client
    client.close()


def secret_records(count: int) -> list[dict]:
    records = sr.records(count, SWEBENCH_IMAGE)
    for record in records:  # fields swebench 5 does not grade with: free to mark
        record["patch"] += "# SENTINEL-GOLD\n"
        record["test_patch"] += "# SENTINEL-TEST-PATCH\n"
        record["hints_text"] = "SENTINEL-HINT: look at the tests"
    return records


def fix(path: str, old: str, new: str) -> list[str]:
    edit = f"{path}\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE"
    return [
        cwm("bash", PROBE),
        cwm("edit", edit),
        cwm("bash", "git diff > fix.patch"),
        cwm("submit", "fix.patch"),
        "<think>\nDone.\n</think>\nFixed it.",
    ]


SCRIPTS = {  # instance 1: the right fix; instance 2: a plausible one that breaks a test
    "newest": fix(
        "vercmp/__init__.py", "    return max(versions)", "    return max(versions, key=Version)"
    ),
    "bump": fix(
        "vercmp/__init__.py",
        '        return f"{major}.{minor}.{patch + 1}"',
        '        return f"{major}.{minor}.0"',
    ),
}
PHRASES = {"newest": "newest() picks the wrong version", "bump": "keeps the patch number"}


def test_batch_in_the_records_images_activates_testbed_and_grades_as_it_solves(
    engine, cli_env, tmp_path
):
    dataset = write_jsonl(tmp_path / "verified.jsonl", secret_records(2))
    outdir = tmp_path / "run"
    scripts = ByPhrase(SCRIPTS, PHRASES)
    with ScriptedServer(scripts) as server:
        args = ["batch", str(dataset), "-o", str(outdir), "--runtime", "docker", "--model", "m"]
        args += ["--base-url", server.base_url, "--max-steps", "8", "--workers", "2", "--evaluate"]
        result = run_cli(args, cli_env, timeout=300)
        bodies = [json.dumps(r.body) for r in server.requests if r.method == "POST"]
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    ids = [sr.instance_id(1), sr.instance_id(2)]
    assert sorted(p["instance_id"] for p in read_preds(outdir)) == ids
    for iid in ids:  # the agent's shell: the testbed env, where pytest and packaging are
        first = read_json(outdir / iid / "trajectory.json")["steps"][0]
        output = first["observation"]["output"]
        assert "/opt/miniconda3/envs/testbed\n" in output, output
        assert "3 passed" in output, output
    report = read_json(outdir / "evaluation" / "report.json")
    assert report["resolved_ids"] == [ids[0]] and report["unresolved_ids"] == [ids[1]]
    assert report["error_ids"] == [] and report["submitted_instances"] == 2
    failing = report["instances"][ids[1]]["tests_status"]["PASS_TO_PASS"]["failure"]
    assert failing == [f"{sr.TEST_FILE}::test_bump_patch"]
    assert f"{ids[0]}: RESOLVED" in result.stderr and "resolved 1 of 2" in result.stderr
    # Grading is post-hoc: the model never saw a grading field, in any request.
    assert len(bodies) >= 8
    leaked = [s for s in SECRETS if any(s in body for body in bodies)]
    assert leaked == []
    assert leftover_containers(engine, run_ids(outdir)) == []

    # Resumed: nothing to solve, nothing to grade again (the verdicts are reused).
    again = run_cli(args, cli_env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "2 already finished, 0 to run" in again.stderr
    assert read_json(outdir / "evaluation" / "report.json")["resolved_ids"] == [ids[0]]


def test_scaled_selection_never_sees_the_grading_fields(engine, cli_env, tmp_path):
    dataset = write_jsonl(tmp_path / "verified.jsonl", secret_records(1))
    outdir = tmp_path / "run"
    scripts = ByPhrase({"newest": SCRIPTS["newest"]}, {"newest": PHRASES["newest"]})
    with ScriptedServer(scripts) as server:
        args = ["batch", str(dataset), "-o", str(outdir), "--runtime", "docker", "--model", "m"]
        args += ["--base-url", server.base_url, "--max-steps", "8", "--attempts", "2"]
        args += ["--repro-tests", "0", "--test-cmd", "python -m pytest -q"]
        result = run_cli(args, cli_env, timeout=300)
        bodies = [json.dumps(r.body) for r in server.requests if r.method == "POST"]
    assert result.returncode == 0, result.stderr
    selection = read_json(outdir / sr.instance_id(1) / "selection.json")
    assert json.dumps(selection).count("SENTINEL") == 0
    assert [s for s in SECRETS if any(s in body for body in bodies)] == []
    assert read_preds(outdir)[0]["model_patch"].count("key=Version") == 1
    assert leftover_containers(engine, run_ids(outdir)) == []


def test_the_image_head_is_checked_against_the_records_base_commit(engine, cli_env, tmp_path):
    records = sr.records(1, SWEBENCH_IMAGE)
    records[0]["base_commit"] = "0123456789ab" + "0" * 28  # not what the image holds
    dataset = write_jsonl(tmp_path / "verified.jsonl", records)
    outdir = tmp_path / "run"
    scripts = ByPhrase({"newest": SCRIPTS["newest"]}, {"newest": PHRASES["newest"]})
    with ScriptedServer(scripts) as server:
        args = ["batch", str(dataset), "-o", str(outdir), "--runtime", "docker", "--model", "m"]
        args += ["--base-url", server.base_url, "--max-steps", "8"]
        result = run_cli(args, cli_env, timeout=300)
    assert result.returncode == 0, result.stderr
    iid = sr.instance_id(1)
    notices = read_json(outdir / iid / "trajectory.json")["config"]["runtime_notices"]
    expected = f"at {sr.BASE_COMMIT[:12]}, not at the record's base_commit 0123456789ab"
    assert any(expected in notice for notice in notices), notices
    assert f"{iid}: warning: " in result.stderr and expected in result.stderr
    assert expected in (outdir / iid / "stderr.log").read_text()
    image_head = engine.containers.run(
        SWEBENCH_IMAGE, ["git", "-C", "/testbed", "rev-parse", "HEAD"], remove=True
    )
    assert image_head.decode().strip() == sr.BASE_COMMIT  # the records' constant is right
