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
from cwm_agent.batch.display import LiveDisplay, PlainDisplay
from cwm_agent.batch.plan import BatchConfig
from cwm_agent.batch.store import OutputStore
from cwm_agent.batch.summary import Tally
from cwm_agent.errors import RuntimeFailure, UsageError
from cwm_agent.settings import ModelSettings, RunSettings, RuntimeSettings
from cwm_agent.verification.checkout import checkout_at, find_clone
from cwm_agent.verification.sources import locate
from cwm_agent.verification.store import image_from_template

DATA = SHARED_DATA
SWEBENCH_FILES = {"swebench_lite_dev.jsonl": 23, "swebench_verified_test.jsonl": 500}


def load(path: Path) -> list[inst.Instance]:
    return inst.load(locate(str(path)))


# -- inputs ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SWEBENCH_FILES))
def test_reads_the_real_swebench_files_unchanged(name):
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not here")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    loaded = load(path)
    assert len(loaded) == SWEBENCH_FILES[name] == len(records)
    for instance, record in zip(loaded, records, strict=True):
        assert instance.instance_id == record["instance_id"]
        assert instance.problem_statement == record["problem_statement"]
        assert (instance.repo, instance.base_commit) == (record["repo"], record["base_commit"])
        assert instance.dirname == record["instance_id"]  # SWE-bench ids are folder-safe
    template = "swebench/sweb.eval.x86_64.{instance_id_1776}:latest"
    for instance in loaded:
        if instance.image:  # the Verified file names each instance's image: same scheme
            assert image_from_template(template, instance.instance_id) == instance.image
    owner = loaded[0].repo.split("/")[0]
    picked = inst.select(loaded, inst.Selection(f"^{owner}__", limit=2))
    assert len(picked) == 2 and all(i.repo.startswith(owner + "/") for i in picked)


def test_jsonl_records_and_their_errors(tmp_path):
    good = {"instance_id": "o__r-1", "problem_statement": "bug", "repo": "o/r", "x": [1]}
    path = write_jsonl(tmp_path / "in.jsonl", [good, {**good, "instance_id": "o__r-2"}])
    loaded = load(path)
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
            load(write_jsonl(tmp_path / "bad.jsonl", records))


def test_folder_input_filter_limit_and_templates(tmp_path):
    for name in ("b.md", "a.txt", "c.md", "skip.rst"):
        (tmp_path / name).write_text(f"issue {name}")
    loaded = load(tmp_path)
    assert [i.instance_id for i in loaded] == ["a", "b", "c"]
    assert loaded[0].problem_statement == "issue a.txt"
    assert [i.instance_id for i in inst.select(loaded, inst.Selection("[bc]"))] == ["b", "c"]
    assert [i.instance_id for i in inst.select(loaded, inst.Selection(limit=2))] == ["a", "b"]
    with pytest.raises(UsageError, match="regular expression"):
        inst.select(loaded, inst.Selection("("))
    assert inst.Instance("a/../b", "x").dirname == "a_.._b"
    assert inst.Instance(".hidden", "x").dirname == "_.hidden"
    image = image_from_template("r/{instance_id}:{instance_id_1776}", "Org__Proj-7")
    assert image == "r/Org__Proj-7:org_1776_proj-7"
    with pytest.raises(UsageError, match="placeholders"):
        image_from_template("r/{nope}", "a")


def test_selection_filter_shuffle_slice_limit(tmp_path):
    records = [{"instance_id": f"o__r-{n}", "problem_statement": "x"} for n in range(10)]
    loaded = load(write_jsonl(tmp_path / "in.jsonl", records))
    ids = lambda picked: [i.instance_id for i in picked]  # noqa: E731
    assert ids(inst.select(loaded, inst.Selection(slice="2:4"))) == ["o__r-2", "o__r-3"]
    assert ids(inst.select(loaded, inst.Selection(slice="-2:"))) == ["o__r-8", "o__r-9"]
    assert ids(inst.select(loaded, inst.Selection(slice="::4"))) == ["o__r-0", "o__r-4", "o__r-8"]
    odd = inst.Selection(pattern="[13579]$", slice="1:", limit=2)
    assert ids(inst.select(loaded, odd)) == ["o__r-3", "o__r-5"]  # filter, slice, then limit
    shuffled = ids(inst.select(loaded, inst.Selection(shuffle=True, seed=7)))
    assert sorted(shuffled) == sorted(ids(loaded)) and shuffled != ids(loaded)
    assert ids(inst.select(list(reversed(loaded)), inst.Selection(shuffle=True, seed=7))) == (
        shuffled  # the same records in another order shuffle alike
    )
    assert ids(inst.select(loaded, inst.Selection(shuffle=True, seed=8))) != shuffled
    for bad in ("3", "a:b", "1:2:0", "1:2:3:4"):
        with pytest.raises(UsageError, match="is not a slice"):
            inst.select(loaded, inst.Selection(slice=bad))
    described = inst.describe(inst.Selection("x", True, 3, "1:", 2))
    assert described == "--filter 'x' --shuffle --seed 3 --slice 1: --limit 2"


def test_json_and_parquet_records_read_like_jsonl(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow

    records = [
        {"instance_id": "o__r-1", "problem_statement": "one", "repo": "o/r", "base_commit": "a"},
        {"instance_id": "o__r-2", "problem_statement": "two", "repo": "o/r", "base_commit": "b"},
    ]
    jsonl = load(write_jsonl(tmp_path / "in.jsonl", records))
    (tmp_path / "in.json").write_text(json.dumps(records))
    pq.write_table(pyarrow.Table.from_pylist(records), tmp_path / "in.parquet")
    assert load(tmp_path / "in.json") == jsonl == load(tmp_path / "in.parquet")
    assert locate(str(tmp_path / "in.parquet")).kind == "parquet"
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 but not really")
    with pytest.raises(UsageError, match="as parquet"):
        load(tmp_path / "bad.parquet")
    (tmp_path / "noext").write_bytes((tmp_path / "in.parquet").read_bytes())
    with pytest.raises(UsageError, match="not UTF-8 text") as err:
        load(tmp_path / "noext")  # a parquet file without its suffix: the hint says why
    assert ".parquet" in err.value.hint


def test_dataset_names_and_what_is_not_an_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert locate("verified").identity() == {
        "kind": "dataset",
        "name": "SWE-bench/SWE-bench_Verified",
        "split": "test",
    }
    assert locate("LITE", "dev").identity()["name"] == "SWE-bench/SWE-bench_Lite"
    assert locate("full").name == "SWE-bench/SWE-bench"
    assert locate("princeton-nlp/SWE-bench_Verified").kind == "dataset"
    for missing in ("./nope.jsonl", "nope.jsonl", "/abs/nope"):
        with pytest.raises(UsageError, match="neither a file, a folder, nor a dataset"):
            locate(missing)
    (tmp_path / "princeton-nlp").mkdir()
    (tmp_path / "princeton-nlp" / "x.jsonl").write_text("{}")
    assert locate("princeton-nlp/x.jsonl").kind == "jsonl"  # a path that exists wins


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


def test_forget_makes_finished_instances_run_again(tmp_path):
    store = OutputStore(tmp_path)
    store.open()
    for iid in ("a", "b"):
        _result(store, iid, True)
    store.repair(store.load_results())
    store.forget([inst.Instance("a", "x")])
    assert store.repair(store.load_results()) == {"b"}
    assert [json.loads(line)["instance_id"] for line in store.preds_path.open()] == ["b"]
    store.close()


def test_manifest_refuses_another_model_input_or_setting(tmp_path):
    from dataclasses import replace

    from cwm_agent.batch import manifest

    source = locate(str(write_jsonl(tmp_path / "in.jsonl", [])))
    config = _config()
    made = manifest.made_by(config, source)
    manifest.check(tmp_path, made, {})
    recorded = json.loads((tmp_path / manifest.MANIFEST).read_text())
    assert recorded["input"] == {"kind": "jsonl", "name": str(tmp_path / "in.jsonl")}
    assert recorded["model"] == "m" and recorded["settings"]["agent.max_steps"] == 128
    manifest.check(tmp_path, made, {})  # the same batch again: fine
    base = config.base
    faster = replace(base, model=replace(base.model, request_timeout=5.0, max_retries=0))
    manifest.check(tmp_path, manifest.made_by(replace(config, base=faster), source), {})
    other_model = replace(base, model=replace(base.model, name="gpt"))
    fewer_steps = replace(base, agent=replace(base.agent, max_steps=6))
    other_input = locate("lite")
    cases = {
        "model 'm' there, 'gpt' now": manifest.made_by(replace(config, base=other_model), source),
        "agent.max_steps 128 there, 6 now": manifest.made_by(
            replace(config, base=fewer_steps), source
        ),
        "'SWE-bench/SWE-bench_Lite' (split test) now": manifest.made_by(config, other_input),
    }
    for expected, current in cases.items():
        with pytest.raises(UsageError, match="made by a different batch") as err:
            manifest.check(tmp_path, current, {})
        assert expected in err.value.message and "new -o OUTDIR" in err.value.hint
    newer = {**made, "settings": {**made["settings"], "agent.brand_new": 1}}
    manifest.check(tmp_path, newer, {})  # a setting the manifest does not know: no difference
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    with pytest.raises(UsageError, match="holds results of model old"):
        manifest.check(legacy, made, {"a": {"model_name_or_path": "old"}})
    manifest.check(legacy, made, {"a": {"model_name_or_path": "m"}})
    assert (legacy / manifest.MANIFEST).exists()


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
    assert runtime.base_commit == "abc"  # the runtime checks the image's HEAD against it
    own = _config(runtime="docker").settings(record, Path("/x"), Path("/t.json")).runtime
    assert (own.image, own.repo_in_image) == ("rec:img", True)
    plain = _config(runtime="docker", image="py:3").settings(record, Path("/x"), Path("/t.json"))
    plain_runtime = plain.runtime
    assert (plain_runtime.image, plain_runtime.repo_in_image, plain_runtime.workdir) == (
        "py:3",
        False,
        "/repo",
    )
    assert plain_runtime.base_commit is None  # checked out from a clone: nothing to check
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


def test_live_table_shows_what_a_priced_batch_spent():
    """Issue 22 item 1: the cost in the live table's row and headline, finished and running."""
    from cwm_agent.costs import Meter, Prices
    from cwm_agent.types import Usage

    tally = _tally()
    tally.results["a"]["cost_usd"] = 0.25
    running = inst.Instance("b", "x")
    tally.start(running)
    meter = Meter(Prices(input=2.0, output=8.0))
    meter.add(Usage(prompt_tokens=100_000, completion_tokens=10_000))
    tally.watch(running, meter)  # $0.20 + $0.08 spent so far
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    console.print(LiveDisplay(tally, console).__rich__())
    screen = console.file.getvalue()
    assert "tokens 111,200 · cost $0.5300 · " in screen, screen
    assert "│ 110,000 │ $0.2800 │" in screen, screen  # the running instance's own row


# -- isolation --------------------------------------------------------------------------
def test_an_instance_that_crashes_is_recorded_and_the_others_run(tmp_path, monkeypatch):
    from cwm_agent.batch import runner

    def execute(settings, issue, progress, **_):  # stop, meter: not used
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
