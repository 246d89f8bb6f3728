"""The trajectory's in-place writer: a complete JSON document after every save."""

from __future__ import annotations

import json
import os

from cwm_agent.trajectory import MIN_GAP, Trajectory
from cwm_agent.types import Action, Observation, Usage


def add_step(traj: Trajectory, n: int, output: str = "ok") -> None:
    traj.messages.append({"role": "assistant", "content": f"step {n}"})
    traj.messages.append({"role": "tool", "content": output})
    traj.add_step(
        reply_content=f"step {n}",
        action=Action("bash", {"command": "true"}),
        observation=Observation(output),
        format_error=None,
        model_seconds=0.01,
        tool_seconds=0.02,
        usage=Usage(10, 2),
        finish_reason="stop",
    )
    traj.set_usage(Usage(10 * n, 2 * n))


def on_disk(traj: Trajectory) -> dict:
    return json.loads(traj.path.read_text(encoding="utf-8"))


def test_the_file_is_the_document_after_every_save(tmp_path):
    traj = Trajectory(tmp_path / "t.json", "r", {"run_id": "r", "x": "é \udcff"}, "issue")
    traj.messages.append({"role": "system", "content": "sys"})
    traj.save()
    assert on_disk(traj) == json.loads(json.dumps(traj.data))
    for n in range(1, 40):
        add_step(traj, n, output="ü" * n)
        traj.save()
        assert on_disk(traj) == json.loads(json.dumps(traj.data)), n
    traj.finish(status="submitted", exit_code=0, reason="done", patch="diff")
    traj.save()
    text = traj.path.read_text(encoding="utf-8")
    assert on_disk(traj)["exit_status"] == "submitted"
    assert "  " not in text  # the finished document is rewritten without its gap


def test_small_saves_write_in_place_and_a_full_gap_rewrites_the_file(tmp_path):
    traj = Trajectory(tmp_path / "t.json", "r", {"run_id": "r"}, "issue")
    traj.save()
    first = os.stat(traj.path).st_ino
    add_step(traj, 1)
    traj.save()
    assert os.stat(traj.path).st_ino == first  # appended into the gap, same file
    add_step(traj, 2, output="x" * (2 * MIN_GAP))  # more than the gap holds
    traj.save()
    rewritten = os.stat(traj.path).st_ino
    assert rewritten != first  # a new file, renamed over the old one
    assert on_disk(traj) == json.loads(json.dumps(traj.data))
    add_step(traj, 3)
    traj.save()
    assert os.stat(traj.path).st_ino == rewritten  # the new gap is as large as the messages
    assert on_disk(traj)["steps"][-1]["step"] == 3


def test_replacing_a_saved_record_rewrites_the_whole_file(tmp_path):
    traj = Trajectory(tmp_path / "t.json", "r", {"run_id": "r"}, "issue")
    add_step(traj, 1)
    traj.save()
    traj.data["steps"][0] = {**traj.data["steps"][0], "reply": "changed"}
    traj.save()
    assert on_disk(traj)["steps"][0]["reply"] == "changed"
