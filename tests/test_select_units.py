"""select's parts on their own: which stages run, OUT's repair, the progress display."""

from __future__ import annotations

import io
import json
import pickle

import pytest
from rich.console import Console

from cwm_agent.errors import UsageError
from cwm_agent.select import stages
from cwm_agent.select.display import LiveDisplay, PlainDisplay
from cwm_agent.select.store import SelectionStore, finished
from cwm_agent.select.summary import Tally
from cwm_agent.settings import ModelSettings
from cwm_agent.verification.cascade import Outcome
from cwm_agent.verification.execute import ExecConfig, Execution
from cwm_agent.verification.records import Cost
from cwm_agent.verification.reward import VerifierConfig

VERIFIER = VerifierConfig(ModelSettings("judge"))


def test_the_default_stages_are_those_whose_inputs_are_there():
    bare = stages.plan(None, None, None, keep=5)
    assert bare.stages == ("static", "group")
    assert bare.skipped["reward"] == stages.NO_VERIFIER
    assert bare.skipped["execute"] == stages.NO_RUNTIME and bare.build().executor is None
    full = stages.plan(None, VERIFIER, ExecConfig(max_test_runs=7), keep=3)
    assert full.stages == ("static", "group", "reward", "execute") and full.skipped == {}
    executor = full.build().executor
    assert isinstance(executor, Execution) and executor.config.max_test_runs == 7
    assert pickle.loads(pickle.dumps(full)) == full  # what Ray workers get
    asked = stages.plan(stages.parse("reward, static"), VERIFIER, ExecConfig(), keep=1)
    assert asked.stages == ("static", "reward") and asked.skipped["group"] == "not in --stages"
    assert asked.execution is None and asked.build().executor is None
    with pytest.raises(UsageError, match="--stages execute: no runtime"):
        stages.plan(("execute",), None, None, keep=1)


def _record(iid: str, retry: bool = False) -> dict:
    return {
        "instance_id": iid,
        "retry": retry,
        "prediction": {"instance_id": iid, "model_patch": "p"},
    }


def test_repair_keeps_whole_records_and_rebuilds_the_predictions(tmp_path):
    store = SelectionStore(tmp_path)
    lines = [_record("a"), _record("b", retry=True), _record("b")]
    text = "".join(json.dumps(r) + "\n" for r in lines) + '{"instance_id": "c", "cut'
    (tmp_path / "selection.jsonl").write_text(text)
    (tmp_path / "preds.jsonl").write_text('{"instance_id": "zombie"}\n')
    records = store.repair()
    assert list(records) == ["a", "b"] and finished(records) == {"a", "b"}
    preds = [json.loads(x) for x in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert [p["instance_id"] for p in preds] == ["a", "b"]
    assert len((tmp_path / "selection.jsonl").read_text().splitlines()) == 2


def _outcome(iid: str, warnings: tuple[str, ...] = ()) -> Outcome:
    record = {
        "funnel": {"candidates": 4, "static": 3, "group": 2, "chosen": 1},
        "chosen": {"candidate": 2, "decided_by": "votes"},
        "cost": {"wall_seconds": 0.25},
    }
    return Outcome(iid, record, None, warnings, False, Cost())


def test_progress_lines_and_loud_warnings_once_per_kind():
    tally = Tally(3, 12, 0)
    stream = io.StringIO()
    display = PlainDisplay(tally, stream)
    for n, warned in enumerate(["static: the apply check could not run for 4 of 4", "x", ""]):
        outcome = _outcome(f"i-{n}", (warned,) if warned else ())
        tally.end(outcome)
        display.ended(outcome)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[1/3, ") and "candidates/min, ETA" in lines[0]
    assert lines[0].endswith(
        "i-0: 4 candidate(s) -> 3 after static -> 2 groups -> #2 chosen (votes), 0.25 s"
    )
    assert lines[1] == "WARNING i-0: static: the apply check could not run for 4 of 4"
    assert sum(line.startswith("WARNING") for line in lines) == 2  # "x" is another kind
    console = Console(file=io.StringIO(), width=200)
    live = LiveDisplay(tally, console)
    console.print(live)  # what the live display draws
    shown = console.file.getvalue()
    assert "done 3/3 · candidates 12 · static 9 · group 6 · chosen 3" in shown


def test_a_batch_folder_without_instance_folders_gives_its_predictions(tmp_path):
    from cwm_agent.verification.candidates import read_inputs

    folder = tmp_path / "batch"
    folder.mkdir()
    lines = [
        {"instance_id": "a-1", "model_name_or_path": "m", "model_patch": "diff --git a/x b/x\n"},
        {"instance_id": "a-2", "model_name_or_path": "m", "model_patch": ""},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"instance_id": "a-3", "mo'
    (folder / "preds.jsonl").write_text(text)
    found = read_inputs([str(folder), str(folder)])
    assert found.kinds == {str(folder): "batch"}
    (candidate,) = found.candidates
    assert candidate.instance_id == "a-1" and candidate.origin.line == 1
    assert candidate.origin.path == str(folder / "preds.jsonl")
    assert found.notes == [f"{folder} given twice: read once"]
