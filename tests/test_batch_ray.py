"""`batch --executor ray`: a local Ray instance started by the CLI, real repos, scripted model.

The Ray tests are skipped when Ray is not installed (``pip install 'cwm-agent[ray]'``),
unless CWM_REQUIRE_RAY=1, where they run and fail instead. The scripted server runs in
this process on 127.0.0.1; the Ray workers, on this machine, reach it like threads do.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import tempfile

import pytest
from batch_support import (
    MODEL_ERROR,
    Scripts,
    batch_args,
    busy_script,
    count_lines,
    fix_script,
    issue,
    make_repo,
    read_json,
    read_preds,
    requests_by_key,
    start_cli,
    wait_for,
    write_jsonl,
)
from conftest import run_cli

from cwm_agent.scripted_server import ScriptedServer

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None and os.environ.get("CWM_REQUIRE_RAY") != "1",
    reason="Ray is not installed (pip install 'cwm-agent[ray]'; CWM_REQUIRE_RAY=1 fails instead)",
)
HIDE_RAY = """import sys


class HideRay:  # as if Ray were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "ray":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, HideRay())
"""

# What differs from run to run (times, ids, paths; tokens count prompts that name temporary
# paths) or names the executor; everything else must match between the executors.
VOLATILE = {
    "run_id", "wall_seconds", "attempt_seconds", "instance_seconds", "trajectory",
    "updated_at", "usage", "tokens", "executor",
}  # fmt: skip


@pytest.fixture
def env(cli_env, tmp_path):
    """A private TMPDIR (a leftover sandbox or scratch folder would show) and a short
    RAY_TMPDIR of its own: Ray's session files, sockets included, whose paths must be short.
    """
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    ray_tmp = tempfile.mkdtemp(prefix="cwmray-", dir="/tmp")
    yield {**cli_env, "TMPDIR": str(tmp), "RAY_TMPDIR": ray_tmp}
    shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture
def three_records(tmp_path):
    repos = tmp_path / "repos"
    records = []
    for n, name in enumerate(("alpha", "beta", "gamma")):
        base = make_repo(repos / f"acme__{name}")
        iid = f"acme__{name}-{n + 1}"
        records.append(
            {
                "instance_id": iid,
                "repo": f"acme/{name}",
                "base_commit": base,
                "problem_statement": issue(iid),
            }
        )
    return write_jsonl(tmp_path / "instances.jsonl", records), repos, records


def comparable(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in VOLATILE}


def run_twice(executor, input_path, repos, ids, env, tmp_path):
    """The model fails on the third instance; then, healthy, the same command resumes."""
    outdir = tmp_path / f"out-{executor}"
    scripts = Scripts({ids[0]: fix_script(), ids[1]: fix_script(), ids[2]: [MODEL_ERROR]})
    extra = ("--repos-dir", str(repos), "--workers", "2", "--executor", executor)
    with ScriptedServer(scripts) as server:
        first = run_cli(batch_args(server, input_path, outdir, *extra), env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == ""
    assert sorted(p["instance_id"] for p in read_preds(outdir)) == ids[:2]
    assert read_json(outdir / ids[2] / "result.json")["exit_code"] == 3
    scripts.scripts[ids[2]] = fix_script()
    with ScriptedServer(scripts) as server:
        second = run_cli(batch_args(server, input_path, outdir, *extra), env)
        rerun = requests_by_key(server, scripts)
    assert second.returncode == 0, second.stderr
    assert rerun == {ids[2]: 4}  # only the failed instance ran again
    return outdir, first.stderr + second.stderr


@needs_ray
def test_ray_executor_writes_what_the_thread_pool_writes_and_resumes(three_records, env, tmp_path):
    input_path, repos, records = three_records
    ids = [r["instance_id"] for r in records]
    thread_out, _ = run_twice("thread", input_path, repos, ids, env, tmp_path)
    ray_out, stderr = run_twice("ray", input_path, repos, ids, env, tmp_path)

    assert "ray: starting a local instance with 2 CPU(s)" in stderr
    preds = read_preds(ray_out)
    assert sorted(p["instance_id"] for p in preds) == ids  # each exactly once
    assert sorted(preds, key=lambda p: p["instance_id"]) == sorted(
        read_preds(thread_out), key=lambda p: p["instance_id"]
    )
    for iid in ids:
        folder = ray_out / iid
        result = read_json(folder / "result.json")
        assert comparable(result) == comparable(read_json(thread_out / iid / "result.json"))
        assert result["usage"]["total_tokens"] > 0
        # The worker's scratch paths were replaced by the instance folder.
        assert result["trajectory"] == str(folder / "trajectory.json")
        assert read_json(folder / "trajectory.json")["exit_status"] == "submitted"
        assert (folder / "patch.diff").read_text() == result["patch"]
        log = (folder / "stderr.log").read_text()
        assert "step 3] submit: fix.patch" in log and log.endswith("=== submitted ===\n")
    failed_then_fixed = (ray_out / ids[2] / "stderr.log").read_text()
    assert failed_then_fixed.count("=== attempt started") == 2 and "ModelError" in failed_then_fixed
    ray_summary = read_json(ray_out / "summary.json")
    assert ray_summary["executor"] == "ray"
    assert comparable(ray_summary) == comparable(read_json(thread_out / "summary.json"))
    assert (ray_summary["finished"], ray_summary["completed"]) == (3, True)
    assert os.listdir(env["TMPDIR"]) == []  # scratch folders, checkouts, sandboxes: gone


@needs_ray
def test_sigterm_cancels_the_ray_tasks_and_keeps_what_finished(three_records, env, tmp_path):
    input_path, repos, records = three_records
    ids = [r["instance_id"] for r in records]
    scripts = Scripts({ids[0]: fix_script()})
    for iid in ids[1:]:  # busy for far longer than the test waits: never done before SIGTERM
        scripts.scripts[iid] = busy_script(steps=100, delay=0.4)
    outdir = tmp_path / "out"
    # --max-steps 100 (after batch_args' 6: the last one counts): busy instances cannot end
    # at their step limit, however slowly the third one starts on a loaded machine.
    extra = ("--repos-dir", str(repos), "--workers", "2", "--executor", "ray")
    extra += ("--max-steps", "100")
    with ScriptedServer(scripts) as server:
        proc = start_cli(batch_args(server, input_path, outdir, *extra), env)
        wait_for(lambda: count_lines(outdir / "preds.jsonl") >= 1, timeout=60)
        wait_for(lambda: ids[2] in requests_by_key(server, scripts), timeout=30)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "batch interrupted" in stderr and "resume" in stderr
    assert [p["instance_id"] for p in read_preds(outdir)] == [ids[0]]
    summary = read_json(outdir / "summary.json")
    assert summary["interrupted"] is True and (summary["finished"], summary["pending"]) == (1, 2)
    for iid in ids[1:]:  # stopped the agent's way: trajectory says so, no result, no sandbox
        assert read_json(outdir / iid / "trajectory.json")["exit_status"] == "interrupted"
        assert not (outdir / iid / "result.json").exists()
        assert (outdir / iid / "stderr.log").read_text().endswith("=== interrupted ===\n")
    assert os.listdir(env["TMPDIR"]) == []


@needs_ray
def test_ray_address_errors(three_records, env, tmp_path):
    input_path, repos, _ = three_records
    args = ["batch", str(input_path), "-o", str(tmp_path / "o"), "--model", "m"]
    args += ["--repos-dir", str(repos)]
    result = run_cli([*args, "--ray-address", "auto"], env)
    assert result.returncode == 2 and "--ray-address is for --executor ray" in result.stderr
    # Nothing listens there: a clear failure at once, not Ray waiting without end.
    result = run_cli([*args, "--executor", "ray", "--ray-address", "127.0.0.1:1"], env, timeout=30)
    assert result.returncode == 4, result.stderr
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in result.stderr


def test_without_ray_the_ray_executor_is_a_usage_error(three_records, env, tmp_path):
    input_path, repos, _ = three_records
    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "sitecustomize.py").write_text(HIDE_RAY)
    args = ["batch", str(input_path), "-o", str(tmp_path / "o"), "--model", "m"]
    args += ["--repos-dir", str(repos), "--executor", "ray"]
    result = run_cli(args, {**env, "PYTHONPATH": str(tmp_path / "hide")})
    assert result.returncode == 2, result.stderr
    assert "--executor ray needs Ray" in result.stderr
    assert "pip install 'cwm-agent[ray]'" in result.stderr
    assert not (tmp_path / "o").exists()  # refused before anything was set up


@needs_ray
def test_evaluate_on_ray_gives_the_threads_verdicts(env, tmp_path):
    from batch_support import SWEBENCH_IMAGE, swebench_engine
    from batch_support import swebench_records as sr

    swebench_engine().close()
    dataset = write_jsonl(tmp_path / "dataset.jsonl", sr.records(3, SWEBENCH_IMAGE))
    rows = [sr.prediction(1, "gold"), sr.prediction(2, "wrong"), sr.prediction(3, "empty")]
    preds = write_jsonl(tmp_path / "preds.jsonl", rows)
    reports = {}
    for executor in ("thread", "ray"):
        out = tmp_path / executor
        args = ["evaluate", str(preds), "-d", str(dataset), "-o", str(out), "--workers", "2"]
        result = run_cli([*args, "--executor", executor], env, timeout=180)
        assert result.returncode == 0, result.stderr
        reports[executor] = read_json(out / "report.json")
        for iid in (sr.instance_id(1), sr.instance_id(2)):  # the logs came back from the task
            assert (out / iid / "test_output.txt").read_text().count(">>>>> Start Test") == 1
    assert "ray: starting a local instance with 2 CPU(s)" in result.stderr
    keys = ("resolved_ids", "unresolved_ids", "error_ids", "empty_patch_ids")
    assert {k: reports["ray"][k] for k in keys} == {k: reports["thread"][k] for k in keys}
    assert reports["ray"]["resolved_ids"] == [sr.instance_id(1)]
    tests = {e: r["instances"][sr.instance_id(2)]["tests_status"] for e, r in reports.items()}
    assert tests["ray"] == tests["thread"]
    assert os.listdir(env["TMPDIR"]) == []  # the tasks' scratch folders are gone
