"""`evaluate --candidates` beyond the official harness's agreement (test_swebench_harness):
an eval script past its time costs its container, not the next candidate's verdict; Ray
gives the threads' verdicts; usage errors; empty candidates need no engine."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from batch_support import SWEBENCH_IMAGE, leftover_containers, swebench_engine, write_jsonl
from batch_support import swebench_records as sr
from conftest import git, run_cli

PROJECT = Path(__file__).resolve().parent / "docker" / "swebench" / "project"


@pytest.fixture(scope="module")
def engine():
    client = swebench_engine()
    yield client
    client.close()


def hanging_patch(tmp_path: Path) -> str:
    """A candidate whose tests never end: newest() sleeps."""
    repo = tmp_path / "vercmp"
    shutil.copytree(PROJECT, repo)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    module = repo / "vercmp" / "__init__.py"
    text = module.read_text().replace(
        "    return max(versions)", "    import time\n    time.sleep(600)"
    )
    module.write_text(text)
    return git(repo, "diff")


def candidates(args_dir: Path, rows: list[dict], *extra: str, env=None, records=1):
    dataset = write_jsonl(args_dir / "dataset.jsonl", sr.records(records, SWEBENCH_IMAGE))
    preds = write_jsonl(args_dir / "preds.jsonl", rows)
    args = ["evaluate", str(preds), "-d", str(dataset), "--candidates", "--json"]
    return run_cli(
        [*args, "-o", str(args_dir / "out"), *extra], env or dict(os.environ), timeout=300
    )


def test_a_candidate_past_its_time_gets_no_verdict_and_the_next_a_fresh_container(engine, tmp_path):
    hang = {**sr.prediction(1, "gold"), "model_patch": hanging_patch(tmp_path)}
    run = candidates(tmp_path, [hang, sr.prediction(1, "gold")], "--timeout", "20")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert [c["status"] for c in report["candidates"]] == ["error", "resolved"]
    instance = report["instances"][sr.instance_id(1)]
    assert instance["containers"] == 2
    assert instance["reset_fallbacks"] == ["a fresh runtime: the eval script ran past its time"]
    assert leftover_containers(engine, {report["evaluation"]["run_id"]}) == []


def test_the_candidates_folders_hold_the_harness_files(engine, tmp_path):
    rows = [sr.prediction(1, "wrong"), sr.prediction(1, "gold")]
    run = candidates(tmp_path, rows)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    for row in report["candidates"]:
        folder = tmp_path / "out" / sr.instance_id(1) / "candidates" / row["patch_sha256"][:16]
        names = {p.name for p in folder.iterdir()}
        assert {"patch.diff", "eval.sh", "test_output.txt", "report.json", "outcome.json"} <= names
        assert (folder / "test_output.txt").read_text().count(">>>>> Start Test Output") == 1
    assert (tmp_path / "out" / sr.instance_id(1) / "containers.log").exists()


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None and os.environ.get("CWM_REQUIRE_RAY") != "1",
    reason="Ray is not installed (pip install 'cwm-agent[ray]'; CWM_REQUIRE_RAY=1 fails instead)",
)
def test_ray_gives_the_threads_verdicts(engine, tmp_path):
    rows = [sr.prediction(1, "wrong"), sr.prediction(1, "gold"), sr.prediction(2, "gold")]
    rows += [sr.prediction(2, "empty")]
    ray_tmp = tempfile.mkdtemp(prefix="cwmray-", dir="/tmp")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "RAY_TMPDIR": ray_tmp}
    found = {}
    try:
        for executor in ("thread", "ray"):
            where = tmp_path / executor
            where.mkdir()
            run = candidates(where, rows, "--executor", executor, "--workers", "2", env=env,
                             records=2)  # fmt: skip
            assert run.returncode == 0, run.stderr
            found[executor] = json.loads(run.stdout)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert "ray: starting a local instance" in run.stderr
    statuses = {e: [c["status"] for c in r["candidates"]] for e, r in found.items()}
    assert statuses["ray"] == statuses["thread"] == ["unresolved", "resolved", "resolved", "empty"]
    one = sr.instance_id(1)
    assert found["ray"]["instances"][one]["containers"] == 1  # its candidates on one worker
    sha = found["ray"]["candidates"][1]["patch_sha256"][:16]
    assert (tmp_path / "ray" / "out" / one / "candidates" / sha / "report.json").exists()
    assert os.listdir(scratch) == []  # the tasks' scratch folders are gone


def test_first_resolved_needs_candidates(tmp_path):
    dataset = write_jsonl(tmp_path / "dataset.jsonl", sr.records(1))
    preds = write_jsonl(tmp_path / "preds.jsonl", [sr.prediction(1, "empty")])
    run = run_cli(["evaluate", str(preds), "-d", str(dataset), "--first-resolved"], {**os.environ})
    assert run.returncode == 2
    assert "--first-resolved is for --candidates" in run.stderr


def test_empty_candidates_need_no_engine_and_without_the_flag_the_last_line_wins(tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    rows = [sr.prediction(1, "empty", "a"), sr.prediction(1, "empty", "b")]
    run = candidates(tmp_path, rows, env=env)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert [(c["line"], c["model_name_or_path"], c["status"]) for c in report["candidates"]] == [
        (1, "a", "empty"),
        (2, "b", "empty"),
    ]
    assert report["empty_patch_ids"] == [sr.instance_id(1)]
    plain = run_cli(
        ["evaluate", str(tmp_path / "preds.jsonl"), "-d", str(tmp_path / "dataset.jsonl")]
        + ["-o", str(tmp_path / "plain"), "--json"],
        env,
    )
    assert plain.returncode == 0, plain.stderr
    assert "candidates" not in json.loads(plain.stdout)


def test_a_container_gone_between_candidates_is_replaced_not_reused(engine, tmp_path):
    """A grading container removed between candidates (the engine, an out-of-memory
    kill): the reset cannot reach it, and the next candidate gets a fresh container
    (**was**: the engine's error escaped the reset after the runtime was marked clean, and
    the next use reached the dead container)."""
    from cwm_agent.evaluate.grade import Grader
    from cwm_agent.evaluate.tasks import Task
    from cwm_agent.evaluate.warm_grading import ContainerBox
    from cwm_agent.runtimes.docker_engine import remove_container
    from cwm_agent.verification.warm import Warm

    record = sr.record(1, SWEBENCH_IMAGE)
    task = Task(record["instance_id"], sr.prediction(1, "gold"), record, SWEBENCH_IMAGE)
    grader = Grader(engine, f"cwm-test-gone-{os.getpid()}", 60)
    boxes: list[ContainerBox] = []

    def open_box(label):
        with open(tmp_path / "containers.log", "a", encoding="utf-8") as log:
            boxes.append(ContainerBox(grader, task, log))
        return boxes[-1]

    warm = Warm(open_box)
    try:
        warm.run("echo dirty > vercmp/__init__.py", 30)
        warm.reset()
        remove_container(boxes[0].container)
        assert warm.run("git status --porcelain", 30).output == ""
        assert warm.stats.opened == 2
        assert warm.stats.fallbacks[0].startswith(
            "a fresh runtime: the container cannot run commands"
        )
    finally:
        warm.close()
    assert leftover_containers(engine, {grader.run_id}) == []
