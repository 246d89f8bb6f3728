"""`cwm-agent trace run` on code that leaves something running behind it.

The traced call starts a child (``subprocess.Popen``, ``os.fork``, a ``setsid`` daemon)
or a non-daemon thread, and returns. The trace must come back at once (it used to
take the full 30 s limit: the child held the captured output pipes, a thread held the
interpreter open) and nothing the call started may outlive the command.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import run_cli
from test_reliability_support import wait_none_left

TARGETS = """\
import os, subprocess, threading, time

def note(pid):
    with open(os.environ["PID_FILE"], "a") as handle:
        handle.write("%d\\n" % pid)

def child():
    note(subprocess.Popen(["sleep", "300"]).pid)
    return 1

def daemon():
    note(subprocess.Popen(["sleep", "300"], start_new_session=True).pid)
    return 2

def forked():
    pid = os.fork()
    if pid == 0:
        time.sleep(300)
        os._exit(0)
    note(pid)
    return 3

def forked_and_returning():
    pid = os.fork()
    if pid:  # the parent notes it: the child may be killed before it could write
        note(pid)
    return 4

def thread():
    threading.Thread(target=time.sleep, args=(300,)).start()
    note(os.getpid())
    return 5
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize(
    ("name", "returned"),
    [("child", 1), ("daemon", 2), ("forked", 3), ("forked_and_returning", 4), ("thread", 5)],
)
def test_trace_run_returns_at_once_and_leaves_nothing(tmp_path, name, returned):
    (tmp_path / "bg.py").write_text(TARGETS)
    pid_file = tmp_path / "pids"
    env = {**os.environ, "PID_FILE": str(pid_file)}
    started = time.monotonic()
    result = run_cli(["trace", "run", f"bg.py::{name}", "--root", str(tmp_path)], env, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert f'<|arg_sep|>"{returned}"<|frame_sep|><|end_of_text|>' in result.stdout
    assert result.stdout.count("<|end_of_text|>") == 1  # a forked child wrote no trace
    assert elapsed < 10, f"took {elapsed:.1f} s (the limit is 30 s)"
    pids = [int(line) for line in pid_file.read_text().split()]
    assert pids
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in pids if alive(pid)] == []
    assert wait_none_left(under=str(tmp_path), limit=2) == []
