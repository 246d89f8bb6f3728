"""Hostile and odd candidates: paths out of the repository, bytes that are not UTF-8, text
meant for the report page, a verifier that is down."""

from __future__ import annotations

import json

from conftest import git, run_cli
from select_support import prediction, read_jsonl, setup, write_jsonl

from cwm_agent.verification import static
from cwm_agent.verification.basecode import GitBase

ESCAPE = """diff --git a/../outside.py b/../outside.py
new file mode 100644
--- /dev/null
+++ b/../outside.py
@@ -0,0 +1 @@
+x = 1
diff --git a/calc.py b/calc.py
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,2 @@
 def add(a, b):
-    return a - b
+    return a + b
"""


def test_a_path_out_of_the_repository_is_pruned_and_nothing_is_written_there(tmp_path):
    world = setup(tmp_path)
    with GitBase(world["clone"], world["base"]) as base:
        result = static.check(ESCAPE, base, "")
        outside = base.work.parent / "outside.py"
        assert not outside.exists()
    assert result.failure is not None and result.failure.name == "apply"
    assert result.failure.reason == "a path leaves the repository: ../outside.py"


def test_a_patch_of_a_file_that_is_not_utf8_keeps_its_bytes(tmp_path, cli_env):
    world = setup(tmp_path)
    work = world["repos"] / "work"
    (work / "legacy.py").write_bytes(b"# caf\xe9\nx = 1\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "latin-1")
    base = git(work, "rev-parse", "HEAD").strip()
    (work / "legacy.py").write_bytes(b"# caf\xe9\nx = 2\n")
    patch = git(work, "diff")  # decoded with surrogate escapes: the \xe9 byte survives
    git(work, "checkout", "-q", "--", ".")
    records = tmp_path / "r.jsonl"
    records.write_text(json.dumps({"instance_id": "l-1", "repo": "acme/calc", "base_commit": base,
                                   "problem_statement": "x should be 2"}) + "\n")  # fmt: skip
    git(world["clone"], "fetch", "-q", str(work), base)  # the clone must hold the commit
    preds = tmp_path / "p.jsonl"
    line = json.dumps(prediction("l-1", patch), ensure_ascii=False)
    preds.write_bytes(line.encode("utf-8", "surrogateescape") + b"\n")
    out = tmp_path / "out"
    args = ["select", str(preds), "-o", str(out), "--dataset", str(records)]
    result = run_cli([*args, "--repos-dir", str(world["repos"])], cli_env)
    assert result.returncode == 0, result.stderr
    (record,) = read_jsonl(out / "selection.jsonl")
    checks = record["candidates"][0]["static"]["checks"]
    assert checks["apply"]["status"] == "pass" and checks["compile"]["status"] == "pass"
    (pred,) = read_jsonl(out / "preds.jsonl")
    assert "# caf\ufffd" in pred["model_patch"]  # valid Unicode for the harness, as batch writes


def test_the_report_escapes_what_the_inputs_say(tmp_path, cli_env):
    world = setup(tmp_path)
    hostile = "<script>alert('x')</script>"
    preds = write_jsonl(
        tmp_path / "p.jsonl", [prediction("calc-1", world["patches"]["right"], hostile)]
    )
    out = tmp_path / "out"
    args = ["select", str(preds), "-o", str(out), "--dataset", str(world["records"])]
    assert run_cli(args, cli_env).returncode == 0
    page = (out / "report.html").read_text()
    assert hostile not in page and "&lt;script&gt;alert(" in page
    assert "default-src 'none'" in page


def test_a_verifier_that_is_down_exits_3_and_a_rerun_retries(tmp_path, cli_env):
    world = setup(tmp_path)
    p = world["patches"]
    preds = write_jsonl(
        tmp_path / "p.jsonl", [prediction("calc-1", p["wrong"]), prediction("calc-1", p["right"])]
    )
    out = tmp_path / "out"
    args = ["select", str(preds), "-o", str(out), "--dataset", str(world["records"])]
    args += ["--verifier-model", "j", "--verifier-base-url", "http://127.0.0.1:9/v1"]
    args += ["--max-retries", "0", "--verifier-cache", str(tmp_path / "cache")]
    down = run_cli(args, cli_env)
    assert down.returncode == 3, down.stderr
    assert "the verifier failed after retries for 1 instance(s) (calc-1)" in down.stderr
    assert "WARNING calc-1: reward: no group could be scored (Could not reach" in down.stderr
    (record,) = read_jsonl(out / "selection.jsonl")
    assert record["retry"] and record["chosen"]["decided_by"] in ("size", "input order")
    again = run_cli(args, cli_env)
    assert "0 already finished, 1 to run" in again.stderr


def test_instances_that_fail_make_the_exit_status_1_and_a_rerun_retries(tmp_path, cli_env):
    """A partial clone whose remote is gone: the base's blobs cannot be read, the static
    stage fails for the instance. **Was** exit 0 with the failures said in passing; now
    exit 1 naming them, no record for them (a re-run runs them again)."""
    world = setup(tmp_path)
    git(world["clone"], "config", "uploadpack.allowFilter", "true")
    partial = tmp_path / "partial"
    partial.mkdir()
    source = f"file://{world['clone']}"
    git(partial, "clone", "-q", "--bare", "--filter=blob:none", source, "acme__calc")
    git(partial / "acme__calc", "remote", "set-url", "origin", f"file://{tmp_path}/gone")
    preds = write_jsonl(tmp_path / "p.jsonl", [prediction("calc-1", world["patches"]["right"])])
    out = tmp_path / "out"
    args = ["select", str(preds), "-o", str(out), "--dataset", str(world["records"])]
    args += ["--repos-dir", str(partial), "--stages", "static,group"]
    failed = run_cli(args, cli_env)
    assert failed.returncode == 1, failed.stderr
    assert "calc-1: FAILED, will run again on resume: git cat-file could not read" in failed.stderr
    assert "Error: 1 instance(s) failed and have no record in selection.jsonl" in failed.stderr
    assert not (out / "selection.jsonl").exists() or read_jsonl(out / "selection.jsonl") == []
    again = run_cli(args, cli_env)
    assert again.returncode == 1 and "0 already finished, 1 to run" in again.stderr
