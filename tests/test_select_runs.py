"""`cwm-agent select` on a real `batch --attempts` folder, killed and resumed, and under Ray."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import tempfile
import threading

import pytest
from batch_support import start_cli, wait_for
from conftest import cwm, run_cli
from select_support import judge, prediction, read_jsonl, setup, write_jsonl

from cwm_agent.scripted_server import ScriptedServer

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None and os.environ.get("CWM_REQUIRE_RAY") != "1",
    reason="Ray is not installed (pip install 'cwm-agent[ray]'; CWM_REQUIRE_RAY=1 fails instead)",
)


def _fix(name: str, line: str) -> list[str]:
    edit = f"calc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n{line}\n>>>>>>> REPLACE"
    return [
        cwm("edit", edit, f"[script:{name}] add() is wrong."),
        cwm("bash", "git diff > fix.patch"),
        cwm("submit", "fix.patch"),
        "<think>\nDone.\n</think>\nFixed add().",
    ]


class Attempts:
    """Each issue's first conversation gets the wrong fix, its second the right one."""

    SCRIPTS = {
        "wrong": _fix("wrong", "    return a * b"),
        "right": _fix("right", "    return a + b"),
    }

    def __init__(self) -> None:
        self.started: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> str | None:
        said = [m for m in body["messages"] if m["role"] == "assistant"]
        if said:
            name = re.search(r"\[script:(\w+)\]", json.dumps(said[0])).group(1)
        else:
            key = re.search(r"\[(calc-\d)\]", body["messages"][1]["content"]).group(1)
            with self.lock:
                self.started[key] = self.started.get(key, 0) + 1
                name = "wrong" if self.started[key] == 1 else "right"
        script = self.SCRIPTS[name]
        return script[len(said)] if len(said) < len(script) else None


@pytest.fixture
def env(cli_env, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    ray_tmp = tempfile.mkdtemp(prefix="cwmray-", dir="/tmp")  # Ray's sockets: a short path
    yield {**cli_env, "TMPDIR": str(tmp), "RAY_TMPDIR": ray_tmp}
    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_every_attempt_of_a_batch_folder_is_a_candidate(tmp_path, env):
    world = setup(tmp_path)
    batch_out = tmp_path / "batch"
    args = [
        "batch",
        str(world["records"]),
        "-o",
        str(batch_out),
        "--repos-dir",
        str(world["repos"]),
    ]
    args += ["--model", "m", "--max-steps", "6", "--attempts", "2", "--workers", "1"]
    args += ["--repro-tests", "0", "--test-cmd", ""]
    with ScriptedServer(Attempts()) as server:
        made = run_cli([*args, "--base-url", server.base_url], env, timeout=300)
    assert made.returncode == 0, made.stderr

    out = tmp_path / "sel"
    with ScriptedServer(judge) as verifier:
        select = ["select", str(batch_out), "-o", str(out), "--dataset", str(world["records"])]
        select += ["--repos-dir", str(world["repos"]), "--model", "judge"]
        select += ["--base-url", verifier.base_url, "--verifier-cache", str(tmp_path / "cache")]
        result = run_cli(select, env)
        assert result.returncode == 0, result.stderr
        assert len(verifier.requests) == 4  # two groups of two instances
        assert all(r.body["model"] == "judge" for r in verifier.requests)
    for record in read_jsonl(out / "selection.jsonl"):
        origins = [c["origin"] for c in record["candidates"]]
        assert sorted(o["attempt"] for o in origins) == [1, 2]
        assert {o["model"] for o in origins} == {"m"}
        assert all(o["path"].startswith(str(batch_out / record["instance_id"])) for o in origins)
        assert all(c["tokens"] > 0 for c in record["candidates"])
        assert record["chosen"]["decided_by"] == "reward score"
    preds = read_jsonl(out / "preds.jsonl")
    assert [p["instance_id"] for p in preds] == ["calc-1", "calc-2"]
    assert all("+    return a + b" in p["model_patch"] for p in preds)


def _many(tmp_path, count: int):
    ids = tuple(f"calc-{n}" for n in range(1, count + 1))
    world = setup(tmp_path, ids)
    p = world["patches"]
    rows = [prediction(i, p[name]) for i in ids for name in ("wrong", "right")]
    return world, ids, write_jsonl(tmp_path / "p.jsonl", rows)


def test_a_killed_selection_resumes_and_loses_nothing_finished(tmp_path, env):
    world, ids, preds = _many(tmp_path, 6)
    out = tmp_path / "out"
    args = [
        "select",
        str(preds),
        "-o",
        str(out),
        "--dataset",
        str(world["records"]),
        "--model",
        "j",
    ]
    args += ["--repos-dir", str(world["repos"]), "--verifier-cache", str(tmp_path / "cache")]
    slow = lambda body: {**judge(body), "delay": 0.4}  # noqa: E731
    with ScriptedServer(slow) as server:
        args += ["--base-url", server.base_url, "--verifier-workers", "1"]
        proc = start_cli(args, env)
        try:
            wait_for(lambda: out.joinpath("selection.jsonl").exists()
                     and len(read_jsonl(out / "selection.jsonl")) >= 2, timeout=120)  # fmt: skip
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        kept = out.joinpath("selection.jsonl").read_text().splitlines()
        assert 2 <= len(kept) < len(ids)
        asked = len(server.requests)
        again = run_cli(args, env)
    assert again.returncode == 0, again.stderr
    assert f"{len(kept)} already finished, {len(ids) - len(kept)} to run" in again.stderr
    records = read_jsonl(out / "selection.jsonl")
    assert sorted(r["instance_id"] for r in records) == sorted(ids)  # each exactly once
    assert out.joinpath("selection.jsonl").read_text().splitlines()[: len(kept)] == kept
    assert sorted(p["instance_id"] for p in read_jsonl(out / "preds.jsonl")) == sorted(ids)
    assert len(server.requests) - asked <= 2 * (len(ids) - len(kept)) + 2  # finished: not asked
    assert json.loads((out / "summary.json").read_text())["instances"] == len(ids)


def test_another_selection_into_the_same_out_is_refused(tmp_path, env):
    world, _, preds = _many(tmp_path, 1)
    base = ["select", str(preds), "-o", str(tmp_path / "out"), "--dataset", str(world["records"])]
    assert run_cli([*base, "--stages", "static,group"], env).returncode == 0
    refused = run_cli([*base, "--stages", "static"], env)
    assert refused.returncode == 2 and "holds another selection (stages:" in refused.stderr


def test_a_resume_with_other_budgets_or_runtime_is_refused(tmp_path, env):
    """**Was**: the manifest held only the test command and --tests ("budgets and timeouts
    do not change verdicts"), so a resume mixed verdicts made under other budgets."""
    world = setup(tmp_path, ("calc-1",))
    preds = write_jsonl(tmp_path / "p.jsonl", [prediction("calc-1", world["patches"]["right"])])
    base = ["select", str(preds), "-o", str(tmp_path / "out"), "--dataset", str(world["records"])]
    base += ["--repos-dir", str(world["repos"])]
    assert run_cli([*base, "--max-test-runs", "5"], env).returncode == 0
    refused = run_cli([*base, "--max-test-runs", "6"], env)
    assert refused.returncode == 2 and "holds another selection (execution:" in refused.stderr
    assert "'max_test_runs': 5" in refused.stderr and "'runtime': 'local'" in refused.stderr
    assert run_cli([*base, "--max-test-runs", "5"], env).returncode == 0  # the same: resumes


@needs_ray
def test_ray_gives_the_records_the_threads_give(tmp_path, env):
    world, _, preds = _many(tmp_path, 3)
    outs = {}
    with ScriptedServer(judge) as server:
        for executor in ("thread", "ray"):
            out = tmp_path / executor
            args = ["select", str(preds), "-o", str(out), "--dataset", str(world["records"])]
            args += ["--repos-dir", str(world["repos"]), "--model", "j", "--base-url"]
            args += [server.base_url, "--verifier-cache", str(tmp_path / executor / "cache")]
            args += ["--executor", executor, "--workers", "2"]
            result = run_cli(args, env, timeout=300)
            assert result.returncode == 0, result.stderr
            outs[executor] = out
    assert "ray: starting a local instance with 2 CPU(s)" in result.stderr
    lines = {k: sorted((o / "preds.jsonl").read_text().splitlines()) for k, o in outs.items()}
    assert lines["ray"] == lines["thread"]  # in the order instances ended: that may differ

    def stable(out):
        found = {}
        for record in read_jsonl(out / "selection.jsonl"):
            record.pop("cost")
            for stage in record["stages"].values():
                stage.pop("cost", None)
            found[record["instance_id"]] = record
        return found

    assert stable(outs["ray"]) == stable(outs["thread"])
