"""`cwm-agent show`: the transcript and the HTML page of a trajectory from a real run."""

from __future__ import annotations

import html
import json
import os
import re
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import cwm, make_buggy_repo, run_cli
from test_run_e2e import FIXING_SCRIPT
from test_trace_consult import PREDICTION, PYTEST  # a canned prediction of test_add

from cwm_agent.cli import main
from cwm_agent.errors import UsageError
from cwm_agent.scripted_server import ScriptedServer
from cwm_agent.show.cli import HTML_MAX_LINE, TERMINAL_MAX_LINE, read_trajectory
from cwm_agent.show.view import cut_long_lines, diff_lines, hook_parts, load_view, split_reply

TEST_COMMAND = f"{PYTEST} tests/test_ops.py::test_add -q"
LONG_COMMAND = "seq 1 200"
SCRIPT = [
    cwm("bash", TEST_COMMAND, "Run the failing test first."),
    {"text": PREDICTION},  # the trace consultation's /v1/completions request
    cwm("bash", LONG_COMMAND, "A long output, to be folded."),
    *FIXING_SCRIPT,
]
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)></pre></details>{{ 7*7 }}'


def make_trajectory(base: Path) -> Path:
    """A real `cwm-agent run --trace-prediction` against the scripted server; its trajectory."""
    repo = make_buggy_repo(base / "repo")
    env = {**os.environ, "CWM_AGENT_HOME": str(base / "home"), "OPENAI_API_KEY": "k"}
    traj = base / "run.json"
    with ScriptedServer(SCRIPT) as server:
        args = ["run", str(repo), "--issue", "add() subtracts", "--base-url", server.base_url]
        args += ["--model", "m", "--trace-prediction", "--traj", str(traj), "-q"]
        result = run_cli(args, env)
    assert result.returncode == 0, result.stderr
    return traj


def hostile_copy(traj: Path, out: Path) -> Path:
    """The same trajectory with attacker-controlled text in every model-written field."""
    data = json.loads(traj.read_text())
    data["issue"] = HOSTILE
    for step in data["steps"]:
        step["reply"] = f"<think>{HOSTILE}</think>" + step["reply"].split("</think>")[-1]
        if step["observation"]:
            step["observation"]["output"] += "\n" + HOSTILE + "\x1b[2J"
    data["steps"][0]["hooks"]["TraceConsultant"]["headline"] = HOSTILE
    out.write_text(json.dumps(data))
    return out


@pytest.fixture(scope="module")
def trajectory(tmp_path_factory) -> Path:
    return make_trajectory(tmp_path_factory.mktemp("show"))


@pytest.fixture(scope="module")
def hostile(trajectory, tmp_path_factory) -> Path:
    return hostile_copy(trajectory, tmp_path_factory.mktemp("hostile") / "hostile.json")


def test_transcript_of_a_real_run(trajectory):
    result = run_cli(["show", str(trajectory), "--width", "120"], dict(os.environ))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "\x1b[" not in out  # piped: no colour codes
    data = json.loads(trajectory.read_text())
    for step in data["steps"]:
        assert f"step {step['step']} · " in out
    assert "git diff > fix.patch" in out and "mathlib/ops.py" in out
    assert "-    return a - b" in out and "+    return a + b" in out
    assert "trace prediction" in out and "predicted: returns None" in out
    assert "first divergence" in out  # the consultation's summary
    assert "lines folded (--full shows everything)" in out and "\n  │ 200" in out.replace(" ", " ")
    assert "submitted (exit 0)" in out and "final patch (1 submission(s))" in out
    assert out.rstrip().endswith("def scale(values, factor):")
    assert result.stderr == ""


def test_full_unfolds_and_run_ids_resolve(trajectory, tmp_path):
    runner = CliRunner()
    full = runner.invoke(main, ["show", str(trajectory), "--full", "--width", "100"])
    assert full.exit_code == 0, full.output
    assert "lines folded" not in full.output and "│ 100 " in full.output
    runs = tmp_path / "home" / "runs"
    runs.mkdir(parents=True)
    (runs / "20260101-000000-abcdef.json").write_text(trajectory.read_text())
    env = {"CWM_AGENT_HOME": str(tmp_path / "home")}
    by_id = runner.invoke(main, ["show", "20260101-000000-abcdef"], env=env)
    newest = runner.invoke(main, ["show"], env=env)
    assert by_id.exit_code == newest.exit_code == 0
    assert by_id.output == newest.output and "git diff > fix.patch" in newest.output


def test_bad_input_is_a_usage_error(tmp_path):
    runner = CliRunner()
    env = {"CWM_AGENT_HOME": str(tmp_path)}
    missing = runner.invoke(main, ["show", str(tmp_path / "nope.json")], env=env)
    assert missing.exit_code == 2 and "no trajectory" in missing.output
    (tmp_path / "x.json").write_text('{"a": 1}')
    wrong = runner.invoke(main, ["show", str(tmp_path / "x.json")])
    assert wrong.exit_code == 2 and "not a cwm-agent trajectory" in wrong.output
    empty = runner.invoke(main, ["show"], env=env)
    assert empty.exit_code == 2 and "no trajectories" in empty.output


def test_a_read_racing_a_live_write_is_retried(trajectory, tmp_path):
    """A torn read of a run in progress (the writer mid-pwrite) is tried again."""
    whole = trajectory.read_text()
    live = tmp_path / "live.json"
    live.write_text(whole[: len(whole) // 2])  # what a reader may see mid-write
    threading.Timer(0.08, live.write_text, args=(whole,)).start()
    assert read_trajectory(live, attempts=20) == json.loads(whole)  # ample on a busy machine
    live.write_text(whole[: len(whole) // 2])  # and a file that stays broken is an error
    with pytest.raises(UsageError, match="cannot read the trajectory"):
        read_trajectory(live, attempts=2)


def test_terminal_transcript_escapes_hostile_text(hostile):
    result = CliRunner().invoke(main, ["show", str(hostile), "--width", "200", "--full"])
    assert result.exit_code == 0, result.output
    assert "\x1b[2J" not in result.output and "\\x1b[2J" in result.output
    assert '<script>alert("x")</script>' in result.output  # shown as text, verbatim


def test_html_page_is_self_contained_and_escaped(hostile, tmp_path):
    out = tmp_path / "page.html"
    result = run_cli(["show", str(hostile), "--html", str(out)], dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and "wrote" in result.stderr
    page = out.read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    # No reference that could reach the network: no src/href to a URL, no @import, no url().
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    assert "<img" not in page and "<script>alert" not in page and "</pre></details>{{" not in page
    assert html.escape(HOSTILE, quote=False).replace("&quot;", '"') in page or (
        "&lt;script&gt;alert(" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    )
    assert page.count("<script>") == 1  # our own inline script only
    data = json.loads(hostile.read_text())
    for step in data["steps"]:
        assert f'id="step-{step["step"]}"' in page
    assert html.escape(TEST_COMMAND) in page
    assert '<span class="d-add">+    return a + b' in page
    assert '<span class="d-del">-    return a - b' in page
    assert "Trace prediction" in page and "&lt;script&gt;" in page


def test_html_to_stdout(trajectory):
    result = CliRunner().invoke(main, ["show", str(trajectory), "--html", "-"])
    assert result.exit_code == 0
    assert result.output.startswith("<!DOCTYPE html>") and result.output.rstrip().endswith(
        "</html>"
    )


def test_view_helpers():
    assert split_reply("<think>\nwhy\n</think>\n<tool: bash>\nls\n</tool>") == (
        "why",
        "<tool: bash>\nls\n</tool>",
    )
    assert split_reply("just text") == ("", "just text")
    kinds = [
        k for k, _ in diff_lines("diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n c")
    ]
    assert kinds == ["meta", "meta", "meta", "hunk", "del", "add", "ctx"]
    headline, summary, rows, rest = hook_parts(
        {"headline": "h", "summary": "s\nt", "status": "compared", "seconds": 1.5, "x": {"y": 1}}
    )
    assert (headline, summary) == ("h", "s\nt")
    assert rows == [("status", "compared"), ("seconds", "1.5")] and '"y": 1' in rest
    assert hook_parts(["a"])[3] == '[\n "a"\n]'


def test_view_of_a_run_in_progress():
    view = load_view({"run_id": "r", "steps": [{"step": 1, "reply": "<think>x</think>"}]})
    assert view.status == "unknown" and view.steps[0].kind == "final"
    assert view.steps[0].reasoning == "x" and view.patch is None


def test_view_of_the_openai_tool_format():
    """Native tool calls: reasoning from the message's reasoning_content, args as recorded."""
    data = {
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "assistant", "content": "", "reasoning_content": "edit it"},
        ],
        "steps": [
            {
                "step": 1,
                "reply": "",
                "action": {"tool": "edit", "args": {"path": "a.py", "search": "x", "replace": "y"}},
                "observation": {"output": "done", "ok": False, "exit_code": None},
            }
        ],
    }
    step = load_view(data).steps[0]
    assert step.reasoning == "edit it" and step.summary == "a.py" and step.outcome == "failed"
    from cwm_agent.show.html import render_html

    page = render_html(load_view(data))
    assert '<span class="d-del">-x' in page and '<span class="d-add">+y' in page


BIG = 5_000_000


@pytest.fixture(scope="module")
def one_huge_line(trajectory, tmp_path_factory) -> Path:
    """The real run with one 5 MB line in an observation, a command and the reasoning."""
    data = json.loads(trajectory.read_text())
    step = next(s for s in data["steps"] if s["observation"])
    step["observation"]["output"] = "HEAD" + "x" * BIG + "TAIL\nsecond line\n"
    step["action"]["args"]["command"] = "echo " + "c" * BIG
    step["reply"] = "<think>\n" + "r" * BIG + "\n</think>\n" + step["reply"].split("</think>")[-1]
    out = tmp_path_factory.mktemp("huge") / "huge.json"
    out.write_text(json.dumps(data))
    return out


def test_a_5mb_line_is_cut_in_the_transcript(one_huge_line):
    """Was: 10.7 MB, 104,000 terminal rows and 5.7 s for one `show` (width 100)."""
    result = run_cli(["show", str(one_huge_line), "--width", "100"], dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) < 100_000
    cut = f"{BIG + 8 - TERMINAL_MAX_LINE:,} characters cut (--full keeps them)"
    assert cut in result.stdout  # the observation's line: its head and tail stay
    assert "HEADxxx" in result.stdout and "xxxTAIL" in result.stdout
    assert "second line" in result.stdout
    assert result.stdout.count("characters cut") >= 3  # command and reasoning too


def test_a_5mb_line_is_cut_in_the_html_page(one_huge_line, tmp_path):
    page = tmp_path / "huge.html"
    result = run_cli(["show", str(one_huge_line), "--html", str(page)], dict(os.environ))
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    assert len(text) < 300_000  # was 10 MB in one <pre>
    assert f"{BIG + 8 - HTML_MAX_LINE:,} characters cut (--full keeps them)" in text
    assert "HEADxxx" in text and "xxxTAIL" in text and text.rstrip().endswith("</html>")


def test_cut_long_lines_keeps_head_and_tail_and_short_lines():
    line = "a" * 60 + "b" * 40
    text = f"short\n{line}\nend"
    assert cut_long_lines(text, 200) == text
    cut = cut_long_lines(text, 40).split("\n")
    assert cut[0] == "short" and cut[2] == "end"
    assert cut[1] == "a" * 30 + " … 60 characters cut (--full keeps them) … " + "b" * 10


def test_full_keeps_long_lines_whole(trajectory, tmp_path):
    data = json.loads(trajectory.read_text())
    step = next(s for s in data["steps"] if s["observation"])
    step["observation"]["output"] = "y" * 3 * TERMINAL_MAX_LINE
    long = tmp_path / "long.json"
    long.write_text(json.dumps(data))
    args = ["show", str(long), "--width", "100"]
    folded, full = (CliRunner().invoke(main, args + extra) for extra in ([], ["--full"]))
    assert "characters cut" in folded.output and "characters cut" not in full.output
    assert full.output.count("y") >= 3 * TERMINAL_MAX_LINE
