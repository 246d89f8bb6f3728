"""Batch parts on their own: inputs, checkouts, the crash-safe store, settings, display."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from batch_support import BUGGY, make_repo, write_jsonl
from conftest import SHARED_DATA, git, snapshot
from rich.console import Console

from cwm_agent.batch import instances as inst
from cwm_agent.batch.checkout import checkout_at, find_clone
from cwm_agent.batch.display import LiveDisplay, PlainDisplay
from cwm_agent.batch.plan import BatchConfig
from cwm_agent.batch.store import OutputStore
from cwm_agent.batch.summary import Tally
from cwm_agent.errors import RuntimeFailure, UsageError
from cwm_agent.settings import ModelSettings, RunSettings, RuntimeSettings

DATA = SHARED_DATA
SWEBENCH_FILES = {"swebench_lite_dev.jsonl": 23, "swebench_verified_test.jsonl": 500}


# -- inputs ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SWEBENCH_FILES))
def test_reads_the_real_swebench_files_unchanged(name):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not here")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    loaded = inst.load(path)
    assert len(loaded) == SWEBENCH_FILES[name] == len(records)
    for instance, record in zip(loaded, records, strict=True):
        assert instance.instance_id == record["instance_id"]
        assert instance.problem_statement == record["problem_statement"]
        assert (instance.repo, instance.base_commit) == (record["repo"], record["base_commit"])
        assert instance.dirname == record["instance_id"]  # SWE-bench ids are folder-safe
    template = "swebench/sweb.eval.x86_64.{instance_id_1776}:latest"
    for instance in loaded:
        if instance.image:  # the Verified file names each instance's image: same scheme
            assert inst.image_from_template(template, instance.instance_id) == instance.image
    owner = loaded[0].repo.split("/")[0]
    picked = inst.select(loaded, f"^{owner}__", 2)
    assert len(picked) == 2 and all(i.repo.startswith(owner + "/") for i in picked)


def test_jsonl_records_and_their_errors(tmp_path):
    good = {"instance_id": "o__r-1", "problem_statement": "bug", "repo": "o/r", "x": [1]}
    path = write_jsonl(tmp_path / "in.jsonl", [good, {**good, "instance_id": "o__r-2"}])
    loaded = inst.load(path)
    assert [i.instance_id for i in loaded] == ["o__r-1", "o__r-2"]
    assert loaded[0].base_commit is None and loaded[0].repo == "o/r"
    bad_cases = {
        "no problem_statement": [{"instance_id": "a"}],
        "no instance_id": [{"problem_statement": "x"}],
        "duplicate instance ids": [good, good],
        "share the folder": [{**good, "instance_id": "o:1"}, {**good, "instance_id": "o/1"}],
        "must be a string": [{**good, "base_commit": 7}],
    }
    for expected, records in bad_cases.items():
        with pytest.raises(UsageError, match=expected):
            inst.load(write_jsonl(tmp_path / "bad.jsonl", records))


def test_folder_input_filter_limit_and_templates(tmp_path):
    for name in ("b.md", "a.txt", "c.md", "skip.rst"):
        (tmp_path / name).write_text(f"issue {name}")
    loaded = inst.load(tmp_path)
    assert [i.instance_id for i in loaded] == ["a", "b", "c"]
    assert loaded[0].problem_statement == "issue a.txt"
    assert [i.instance_id for i in inst.select(loaded, "[bc]", None)] == ["b", "c"]
    assert [i.instance_id for i in inst.select(loaded, None, 2)] == ["a", "b"]
    with pytest.raises(UsageError, match="regular expression"):
        inst.select(loaded, "(", None)
    assert inst.Instance("a/../b", "x").dirname == "a_.._b"
    assert inst.Instance(".hidden", "x").dirname == "_.hidden"
    image = inst.image_from_template("r/{instance_id}:{instance_id_1776}", "Org__Proj-7")
    assert image == "r/Org__Proj-7:org_1776_proj-7"
    with pytest.raises(UsageError, match="placeholders"):
        inst.image_from_template("r/{nope}", "a")


# -- checkouts --------------------------------------------------------------------------
def test_finds_clones_in_all_three_layouts(tmp_path):
    for folder in ("acme__alpha", "acme/beta", "gamma"):
        (tmp_path / folder).mkdir(parents=True)
    assert find_clone(tmp_path, "acme/alpha") == tmp_path / "acme__alpha"
    assert find_clone(tmp_path, "acme/beta") == tmp_path / "acme" / "beta"
    assert find_clone(tmp_path, "other/gamma") == tmp_path / "gamma"
    with pytest.raises(RuntimeFailure, match="no clone of acme/delta") as err:
        find_clone(tmp_path, "acme/delta")
    assert "git clone https://github.com/acme/delta" in err.value.hint


def test_checkout_at_base_commit_leaves_the_clone_untouched(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    clone = tmp_path / "clone"
    base = make_repo(clone)
    (clone / "calc.py").write_text("uncommitted work\n")  # the user's own state
    before = snapshot(clone)
    with checkout_at(clone, base) as work:
        assert (work / "calc.py").read_text() == BUGGY
        assert git(work, "rev-parse", "HEAD").strip() == base
        assert work.name == "clone"
    assert not work.exists() and os.listdir(tmp_path / "tmp") == []
    assert snapshot(clone) == before
    with pytest.raises(RuntimeFailure, match="is not in the clone"):
        with checkout_at(clone, "0" * 40):
            pass


# -- the store --------------------------------------------------------------------------
def _pred(iid: str, patch: str = "p") -> dict:
    return {"instance_id": iid, "model_name_or_path": "m", "model_patch": patch}


def _result(store: OutputStore, iid: str, finished: bool, patch: str = "p") -> None:
    folder = store.instance_dir(inst.Instance(iid, "x"))
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"instance_id": iid, "prediction": _pred(iid, patch) if finished else None}
    (folder / "result.json").write_text(json.dumps(doc))


def test_repair_makes_preds_exactly_one_line_per_finished_instance(tmp_path):
    store = OutputStore(tmp_path)
    store.open()
    _result(store, "kept", True)
    _result(store, "lost-line", True, patch="from result")  # killed before... its line lost
    _result(store, "failed", False)
    lines = [_pred("kept", "old"), _pred("kept", "new"), _pred("no-result"), _pred("failed")]
    text = "".join(json.dumps(p) + "\n" for p in lines) + "not json\n" + '{"instance_id": "cut'
    store.preds_path.write_text(text)
    finished = store.repair(store.load_results())
    assert finished == {"kept", "lost-line"}
    preds = [json.loads(line) for line in store.preds_path.read_text().splitlines()]
    assert sorted((p["instance_id"], p["model_patch"]) for p in preds) == [
        ("kept", "new"),
        ("lost-line", "from result"),
    ]
    mtime = store.preds_path.stat().st_mtime_ns
    assert store.repair(store.load_results()) == finished
    assert store.preds_path.stat().st_mtime_ns == mtime  # nothing to repair: not rewritten
    store.close()


def test_store_records_in_crash_safe_order_and_locks_outdir(tmp_path):
    stale = tmp_path / "out" / "a" / ".result.json-x1.tmp"  # a kill hit an atomic write
    stale.parent.mkdir(parents=True)
    stale.write_text("{")
    store = OutputStore(tmp_path / "out")
    store.open()
    assert not stale.exists()
    instance = inst.Instance("a", "x")
    (store.instance_dir(instance) / "result.json").write_text("{}")  # an earlier attempt's
    store.begin(instance)
    assert not (store.instance_dir(instance) / "result.json").exists()
    doc = {"instance_id": "a", "patch": "diff", "prediction": _pred("a", "diff")}
    store.record(instance, doc)
    assert json.loads(store.preds_path.read_text()) == _pred("a", "diff")
    assert (store.instance_dir(instance) / "patch.diff").read_text() == "diff"
    other = OutputStore(tmp_path / "out")
    with pytest.raises(UsageError, match="another cwm-agent batch"):
        other.open()
    store.close()
    other.open()
    other.close()


# -- settings for the docker runtime ----------------------------------------------------
def _config(runtime="local", image=None, fallback_image=None, **kw) -> BatchConfig:
    """``image``: typed as a flag; ``fallback_image``: from env or a config file."""
    settings = RuntimeSettings(runtime=runtime, image=image or fallback_image)
    base = RunSettings(Path("."), ModelSettings("m"), runtime=settings)
    return BatchConfig(base, image_from_flag=image is not None, **kw)


def test_swebench_images_run_with_the_repository_inside():
    record = inst.Instance("astropy__astropy-12907", "bug", "astropy/astropy", "abc", "rec:img")
    templ = _config(runtime="docker", image_template="sweb.{instance_id_1776}")
    with templ.repository(record) as repo:
        settings = templ.settings(record, repo, Path("/t.json"))
    runtime = settings.runtime
    assert (runtime.runtime, runtime.image) == ("docker", "sweb.astropy_1776_astropy-12907")
    assert (runtime.repo_in_image, runtime.workdir) == (True, "/testbed")
    own = _config(runtime="docker").settings(record, Path("/x"), Path("/t.json")).runtime
    assert (own.image, own.repo_in_image) == ("rec:img", True)
    plain = _config(runtime="docker", image="py:3").settings(record, Path("/x"), Path("/t.json"))
    plain_runtime = plain.runtime
    assert (plain_runtime.image, plain_runtime.repo_in_image, plain_runtime.workdir) == (
        "py:3",
        False,
        "/repo",
    )
    fallback = _config(runtime="docker", fallback_image="cfg:img")  # from env / config file
    assert fallback.image_for(record) == ("rec:img", True)
    assert fallback.image_for(inst.Instance("a", "x")) == ("cfg:img", False)
    local = _config().settings(record, Path("/x"), Path("/t.json")).runtime
    assert (local.runtime, local.image, local.repo_in_image) == ("local", None, False)
    with pytest.raises(UsageError, match="no image"):
        _config(runtime="docker").check([inst.Instance("a", "x", "o/r", "c")], False)


# -- progress ---------------------------------------------------------------------------
def _tally() -> Tally:
    selected = [inst.Instance(i, "x") for i in ("a", "b", "c")]
    done = {"instance_id": "a", "status": "submitted", "exit_code": 0, "patch": "d"}
    done.update(prediction=_pred("a"), usage={"total_tokens": 1200}, steps=4)
    return Tally(selected, {"a": done}, {"model": "m"})


def test_live_table_and_plain_lines():
    tally = _tally()
    running = inst.Instance("b", "x")
    tally.start(running)
    tally.step(running, 7)
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    console.print(LiveDisplay(tally, console).__rich__())
    screen = console.file.getvalue()
    assert "done 1/3 · running 1 · failed 0 · tokens 1,200" in screen
    assert "ETA –" in screen and "b" in screen and "7" in screen
    failed = {"status": "ModelError", "exit_code": 3, "error": {"message": "HTTP 500\nmore"}}
    stream = io.StringIO()
    plain = PlainDisplay(tally, stream)
    tally.end(running, failed)
    plain.ended(running, failed)
    assert "[2/3] b: FAILED ModelError (exit 3): HTTP 500" in stream.getvalue()
    summary = tally.summary()
    assert (summary["finished"], summary["failed"], summary["pending"]) == (1, 1, 1)
    assert summary["completed"] is False and summary["by_exit_code"] == {"0": 1, "3": 1}


# -- isolation --------------------------------------------------------------------------
def test_an_instance_that_crashes_is_recorded_and_the_others_run(tmp_path, monkeypatch):
    from cwm_agent.batch import runner

    def execute(settings, issue, progress):
        if "boom" in issue:
            raise ValueError("unexpected")
        raise RuntimeFailure("container died", hint="retry")

    monkeypatch.setattr(runner, "execute", execute)
    selected = [inst.Instance("a", "boom"), inst.Instance("b", "fine")]
    store = OutputStore(tmp_path / "out")
    store.open()
    tally = Tally(selected, {}, {})
    config = _config(repo=tmp_path)
    runner.BatchRunner(config, store, tally, PlainDisplay(tally, io.StringIO())).run(selected, 2)
    crashed = json.loads((tmp_path / "out" / "a" / "result.json").read_text())
    assert crashed["status"] == "crashed" and "ValueError: unexpected" in crashed["reason"]
    assert "Traceback" in (tmp_path / "out" / "a" / "stderr.log").read_text()
    died = json.loads((tmp_path / "out" / "b" / "result.json").read_text())
    assert (died["status"], died["exit_code"], died["error"]["hint"]) == (
        "RuntimeFailure",
        4,
        "retry",
    )
    assert json.loads(store.summary_path.read_text())["failed"] == 2
    store.close()
