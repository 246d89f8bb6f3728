"""`cwm-agent batch` end to end: the real CLI, real git repos, the model scripted over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

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
from conftest import cwm, git, run_cli, snapshot

from cwm_agent.scripted_server import ScriptedServer


@pytest.fixture
def env(cli_env, tmp_path):
    """The CLI's env with a private TMPDIR: leftover sandboxes or checkouts would show."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return {**cli_env, "TMPDIR": str(tmp)}


def leftovers(env) -> list[str]:
    return os.listdir(env["TMPDIR"])


def applies(patch: str, repo: Path, commit: str, tmp_path: Path) -> bool:
    clone = tmp_path / f"check-{commit[:8]}-{len(os.listdir(tmp_path))}"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    git(clone, "checkout", "-q", commit)
    check = subprocess.run(["git", "apply", "--check", "-"], cwd=clone, input=patch, text=True)
    return check.returncode == 0


@pytest.fixture
def swe_batch(tmp_path):
    """Three clones in the three accepted layouts, one record each, SWE-bench style."""
    repos = tmp_path / "repos"
    layouts = {"acme/alpha": "acme__alpha", "acme/beta": "acme/beta", "other/gamma": "gamma"}
    records, clones = [], {}
    for n, (repo, folder) in enumerate(layouts.items()):
        clones[repo] = repos / folder
        base = make_repo(clones[repo])
        iid = repo.replace("/", "__") + f"-{n + 1}"
        records.append(
            {
                "instance_id": iid,
                "repo": repo,
                "base_commit": base,
                "problem_statement": issue(iid),
                "hints_text": "ignored",
                "FAIL_TO_PASS": '["test_add"]',
            }
        )
    missing = {**records[0], "instance_id": "acme__missing-9", "repo": "acme/missing"}
    records.append({**missing, "problem_statement": issue("acme__missing-9")})
    return write_jsonl(tmp_path / "instances.jsonl", records), repos, records, clones


def test_jsonl_batch_records_a_model_failure_then_resumes_only_it(swe_batch, env, tmp_path):
    input_path, repos, records, clones = swe_batch
    ids = [r["instance_id"] for r in records]
    before = {repo: snapshot(path) for repo, path in clones.items()}
    outdir = tmp_path / "out"
    scripts = Scripts({ids[0]: fix_script(), ids[1]: fix_script(), ids[2]: [MODEL_ERROR] * 3})
    scripts.scripts[ids[3]] = fix_script()  # never asked: its clone is missing
    with ScriptedServer(scripts) as server:
        args = batch_args(server, input_path, outdir, "--repos-dir", str(repos), "--workers", "2")
        first = run_cli(args, env)
    assert first.returncode == 0, first.stderr
    assert "FAILED ModelError (exit 3)" in first.stderr  # plain lines: stderr is not a TTY
    assert first.stdout == ""
    preds = read_preds(outdir)
    assert sorted(p["instance_id"] for p in preds) == ids[:2]
    for pred, record in zip(
        sorted(preds, key=lambda p: p["instance_id"]), records[:2], strict=True
    ):
        assert set(pred) == {"instance_id", "model_name_or_path", "model_patch"}
        assert pred["model_name_or_path"] == "m"
        clone = clones[record["repo"]]
        assert applies(pred["model_patch"], clone, record["base_commit"], tmp_path)
        assert not applies(pred["model_patch"], clone, "HEAD", tmp_path)  # solved at the base
        folder = outdir / pred["instance_id"]
        assert (folder / "patch.diff").read_text() == pred["model_patch"]
        assert read_json(folder / "trajectory.json")["exit_status"] == "submitted"
        assert "step 3] submit: fix.patch" in (folder / "stderr.log").read_text()
    failed = read_json(outdir / ids[2] / "result.json")
    assert failed["exit_code"] == 3 and failed["status"] == "ModelError"
    assert failed["error"]["type"] == "ModelError" and "500" in failed["error"]["message"]
    assert failed["prediction"] is None
    no_clone = read_json(outdir / ids[3] / "result.json")
    assert (no_clone["exit_code"], no_clone["status"]) == (4, "RuntimeFailure")
    assert "git clone https://github.com/acme/missing" in no_clone["error"]["hint"]
    summary = read_json(outdir / "summary.json")
    assert summary["completed"] is True
    assert (summary["finished"], summary["failed"]) == (2, 2)
    assert summary["by_exit_code"] == {"0": 2, "3": 1, "4": 1}
    assert summary["tokens"]["total_tokens"] > 0
    assert set(summary["failed_instances"]) == set(ids[2:])
    assert {repo: snapshot(path) for repo, path in clones.items()} == before
    assert leftovers(env) == []

    # Same command again, the server healthy now: only the failed instances run again.
    scripts.scripts[ids[2]] = fix_script()
    with ScriptedServer(scripts) as server:
        args = batch_args(server, input_path, outdir, "--repos-dir", str(repos), "--workers", "2")
        second = run_cli(args, env)
        counts = requests_by_key(server, scripts)
    assert second.returncode == 0, second.stderr
    assert counts == {ids[2]: 4}
    assert sorted(p["instance_id"] for p in read_preds(outdir)) == ids[:3]
    summary = read_json(outdir / "summary.json")
    assert (summary["finished"], summary["failed"]) == (3, 1)
    assert summary["by_exit_code"] == {"0": 3, "4": 1}


def test_folder_of_issue_files_with_filter_and_limit(buggy_repo, env, tmp_path):
    issues = tmp_path / "issues"
    issues.mkdir()
    edit = "mathlib/ops.py"
    for name in ("a-fix.md", "b-gives-up.txt", "c-fix.md"):
        (issues / name).write_text(issue(name.split(".")[0]))
    (issues / "notes.rst").write_text("not an issue file")
    scripts = Scripts(
        {
            "a-fix": fix_script(edit),
            "b-gives-up": [fix_script(edit)[1]] * 4,  # never submits: ends at the step limit
            "c-fix": fix_script(edit),
        }
    )
    before = snapshot(buggy_repo)
    outdir = tmp_path / "out"
    with ScriptedServer(scripts) as server:
        args = batch_args(server, issues, outdir, "--repo", str(buggy_repo), "--max-steps", "4")
        first = run_cli([*args, "--filter", "fix", "--limit", "1"], env)
        assert first.returncode == 0, first.stderr
        assert [p["instance_id"] for p in read_preds(outdir)] == ["a-fix"]
        second = run_cli([*args, "--workers", "3"], env)
    assert second.returncode == 0, second.stderr
    preds = {p["instance_id"]: p for p in read_preds(outdir)}
    assert sorted(preds) == ["a-fix", "b-gives-up", "c-fix"]
    assert preds["b-gives-up"]["model_patch"] == ""  # finished without a patch: exit 1
    assert preds["a-fix"]["model_patch"] == preds["c-fix"]["model_patch"]  # isolated copies
    assert "+    return a + b" in preds["c-fix"]["model_patch"]
    gave_up = read_json(outdir / "b-gives-up" / "result.json")
    assert (gave_up["exit_code"], gave_up["status"]) == (1, "limit")
    assert not (outdir / "b-gives-up" / "patch.diff").exists()
    assert read_json(outdir / "summary.json")["by_status"] == {"submitted": 2, "limit": 1}
    assert snapshot(buggy_repo) == before
    assert leftovers(env) == []


def folder_batch(tmp_path: Path, n: int, first_delay: float, delay: float) -> tuple[Path, Scripts]:
    issues = tmp_path / "issues"
    issues.mkdir()
    scripts = {}
    for i in range(n):
        key = f"issue-{i:02d}"
        (issues / f"{key}.md").write_text(issue(key))
        scripts[key] = fix_script("mathlib/ops.py", first_delay if i == 0 else delay)
    return issues, Scripts(scripts)


def test_sigkill_mid_batch_then_resume_has_every_instance_once(buggy_repo, env, tmp_path):
    issues, scripts = folder_batch(tmp_path, 6, 0.0, 0.1)
    outdir = tmp_path / "out"
    preds_path = outdir / "preds.jsonl"
    with ScriptedServer(scripts) as server:
        args = batch_args(server, issues, outdir, "--repo", str(buggy_repo), "--workers", "2")
        # Killed once two instances are in, then twice more at arbitrary moments.
        for moment in (None, 0.7, 1.2):
            proc = start_cli(args, env)
            try:
                if moment is None:
                    wait_for(lambda: count_lines(preds_path) >= 2)
                else:
                    time.sleep(moment)
            finally:
                proc.kill()  # SIGKILL: no handler, no cleanup
                proc.communicate()
        lines = {p["instance_id"] for p in read_preds(outdir)}
        finished = {i for i in lines if (outdir / i / "result.json").exists()}
        with open(preds_path, "a") as handle:  # as if killed in the middle of an append
            handle.write('{"instance_id": "issue-05", "model_name_or_pa')
        server.requests.clear()
        resumed = run_cli(args, env)
        rerun = set(requests_by_key(server, scripts))
    assert resumed.returncode == 0, resumed.stderr
    ids = [p["instance_id"] for p in read_preds(outdir)]
    assert sorted(ids) == [f"issue-{i:02d}" for i in range(6)]  # each exactly once
    assert finished and not finished & rerun  # what was finished before the kills is kept
    assert read_json(outdir / "summary.json")["finished"] == 6


def test_sigterm_stops_running_instances_and_keeps_finished_ones(buggy_repo, env, tmp_path):
    issues, scripts = folder_batch(tmp_path, 4, 0.0, 0.0)
    for key in list(scripts.scripts)[1:]:
        scripts.scripts[key] = busy_script(steps=6, delay=0.4)
    outdir = tmp_path / "out"
    with ScriptedServer(scripts) as server:
        args = batch_args(server, issues, outdir, "--repo", str(buggy_repo), "--workers", "2")
        proc = start_cli(args, env)
        wait_for(lambda: count_lines(outdir / "preds.jsonl") >= 1)
        wait_for(lambda: len(list(outdir.glob("*/trajectory.json"))) >= 3)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=8)
    assert proc.returncode == 130, stderr
    assert "batch interrupted" in stderr and "resume" in stderr
    assert [p["instance_id"] for p in read_preds(outdir)] == ["issue-00"]
    summary = read_json(outdir / "summary.json")
    assert summary["interrupted"] is True and summary["completed"] is False
    assert summary["finished"] == 1 and summary["pending"] == 3
    stopped = [read_json(t) for t in outdir.glob("issue-0[1-3]/trajectory.json")]
    assert stopped and all(t["exit_status"] == "interrupted" for t in stopped)
    assert not list(outdir.glob("issue-0[1-3]/result.json"))
    assert leftovers(env) == []  # their sandboxes were removed


def test_ctrl_c_during_model_requests_ends_them_at_once(buggy_repo, env, tmp_path):
    """Issue 22 item 3: a worker waiting on the model used to be waited for (10 s) and
    then abandoned, its trajectory left "running" with exit None."""
    issues, scripts = folder_batch(tmp_path, 3, 0.0, 0.0)
    held = {"content": cwm("bash", "echo never runs"), "delay": 300}  # far past any grace
    for key in scripts.scripts:
        scripts.scripts[key] = [held]
    outdir = tmp_path / "out"
    with ScriptedServer(scripts) as server:
        args = batch_args(server, issues, outdir, "--repo", str(buggy_repo), "--workers", "2")
        proc = start_cli(args, env)
        wait_for(lambda: sum(r.method == "POST" for r in server.requests) >= 2, timeout=120)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        waited = time.monotonic() - sent
    assert proc.returncode == 130, stderr
    assert "batch interrupted" in stderr
    assert "did not stop within" not in stderr  # every worker was back before the grace ran out
    assert waited < 60  # not the request's 300 s
    trajectories = [read_json(t) for t in outdir.glob("issue-*/trajectory.json")]
    assert len(trajectories) == 2
    for data in trajectories:
        assert (data["exit_status"], data["exit_code"]) == ("interrupted", 130), data["reason"]
        assert data["ended_at"] and data["steps"] == []
    assert not list(outdir.glob("issue-*/result.json"))  # a resume runs them again
    summary = read_json(outdir / "summary.json")
    assert summary["interrupted"] is True and summary["pending"] == 3
    assert leftovers(env) == []  # their sandboxes were removed


def test_ctrl_c_stops_every_rollout_of_an_attempts_instance_waiting_on_the_model(
    buggy_repo, env, tmp_path
):
    """The same with --attempts: the instance's rollouts have threads of their own (was:
    the instance abandoned after the grace, its attempts' trajectories left running)."""
    issues, scripts = folder_batch(tmp_path, 1, 0.0, 0.0)
    scripts.scripts["issue-00"] = [{"content": cwm("bash", "echo never runs"), "delay": 300}]
    outdir = tmp_path / "out"
    scaled = ("--attempts", "2", "--repro-tests", "1", "--test-cmd", "")
    with ScriptedServer(scripts) as server:
        args = batch_args(server, issues, outdir, "--repo", str(buggy_repo), *scaled)
        proc = start_cli(args, env)
        wait_for(lambda: sum(r.method == "POST" for r in server.requests) >= 2, timeout=120)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "did not stop within" not in stderr
    attempts = [read_json(t) for t in sorted(outdir.glob("issue-00/attempt-*.json"))]
    assert len(attempts) == 2
    assert {(a["exit_status"], a["exit_code"]) for a in attempts} == {("interrupted", 130)}
    assert not (outdir / "issue-00" / "result.json").exists()
    assert leftovers(env) == []


def test_evaluate_without_an_engine_is_exit_4_as_the_help_says(swe_batch, env, tmp_path):
    """The exit codes in `batch --help` (and README) include the runtime failure batch has."""
    pytest.importorskip("swebench")
    input_path, repos, _, _ = swe_batch
    no_engine = {**env, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    args = ["batch", str(input_path), "-o", str(tmp_path / "o"), "--model", "m"]
    result = run_cli([*args, "--repos-dir", str(repos), "--evaluate"], no_engine)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr
    shown = " ".join(run_cli(["batch", "--help"], env).stdout.split())
    assert "4 runtime failure: --evaluate without a Docker engine, or Ray cannot start" in shown


def test_usage_errors_exit_2(swe_batch, buggy_repo, env, tmp_path):
    input_path, repos, _, _ = swe_batch
    out = str(tmp_path / "out")
    base = ["batch", str(input_path), "-o", out, "--model", "m"]
    cases = {
        "--repos-dir": base,  # records need clones
        "--output-dir": ["batch", str(input_path), "--model", "m"],
        "matches": [*base, "--repos-dir", str(repos), "--filter", "^nothing$"],
        "--repo PATH": ["batch", str(tmp_path), "-o", out, "--model", "m"],  # folder w/o --repo
        "image": [*base, "--runtime", "docker"],
        "placeholders": [*base, "--runtime", "docker", "--image-template", "x/{id}"],
    }
    (tmp_path / "bad.md").write_text("an issue")  # makes tmp_path a valid issue folder
    for expected, args in cases.items():
        result = run_cli(args, env)
        assert result.returncode == 2, (expected, result.stderr)
        assert expected in result.stderr, (expected, result.stderr)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instance_id": "a", "problem_statement": "x"}\n{"instance_id": \n')
    result = run_cli(["batch", str(broken), "-o", out, "--model", "m"], env)
    assert result.returncode == 2 and "broken.jsonl:2" in result.stderr


def test_a_resume_that_would_mix_runs_is_refused_and_redo_reruns(buggy_repo, env, tmp_path):
    issues = tmp_path / "issues"
    issues.mkdir()
    for key in ("one", "two"):
        (issues / f"{key}.md").write_text(issue(key))
    scripts = Scripts({k: fix_script("mathlib/ops.py") for k in ("one", "two")})
    outdir = tmp_path / "out"
    with ScriptedServer(scripts) as server:
        args = batch_args(server, issues, outdir, "--repo", str(buggy_repo))
        first = run_cli([*args, "--filter", "one"], env)
        assert first.returncode == 0, first.stderr
        made = read_json(outdir / "manifest.json")
        assert made["model"] == "m" and made["input"]["name"] == str(issues)
        # Another model, other limits, another input: refused before anything runs.
        other_model = [a if a != "m" else "gpt-x" for a in args]
        other_input = tmp_path / "other"
        other_input.mkdir()
        (other_input / "three.md").write_text(issue("three"))
        refusals = {
            "model 'm' there, 'gpt-x' now": other_model,
            "agent.max_steps 6 there, 9 now": [*args, "--max-steps", "9"],
            f"input {str(issues)!r} there, {str(other_input)!r} now": [
                "batch",
                str(other_input),
                *args[2:],  # fmt: skip
            ],
        }
        for expected, refused in refusals.items():
            result = run_cli(refused, env)
            assert result.returncode == 2, result.stderr
            assert expected in result.stderr and "new -o OUTDIR" in result.stderr
        assert requests_by_key(server, scripts) == {"one": 4}  # nothing more was asked
        assert [p["instance_id"] for p in read_preds(outdir)] == ["one"]
        # The same batch resumes: "one" is skipped, "two" runs; --redo-existing reruns "one".
        second = run_cli(args, env)
        assert second.returncode == 0, second.stderr
        assert requests_by_key(server, scripts) == {"one": 4, "two": 4}
        third = run_cli([*args, "--filter", "one", "--redo-existing"], env)
        assert third.returncode == 0, third.stderr
        assert requests_by_key(server, scripts) == {"one": 8, "two": 4}
    preds = read_preds(outdir)
    assert sorted(p["instance_id"] for p in preds) == ["one", "two"]  # once each
    assert "1 already finished" in second.stderr and "0 already finished" in third.stderr
