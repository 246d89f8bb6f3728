"""Measuring tools: run an agent process against the scripted server and time what it does.

Every timestamp is ``time.perf_counter()`` in this process: the launch, the arrival of
each model request at the server (a server thread here) and the process's exit. So the
interval between two requests is one whole agent step as the server sees it (reply
parsing, the tool, the record, the next request) whichever harness runs.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cwm_agent.scripted_server import ScriptedServer

ROOT = Path(__file__).resolve().parent.parent

Reply = Callable[[int, dict[str, Any]], Any]  # (step, request body) -> scripted entry


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Run:
    """One agent process: launch, request arrivals, end, and what the server saw."""

    launch: float
    arrivals: list[float] = field(default_factory=list)
    chars: list[int] = field(default_factory=list)  # conversation size (content chars) per request
    rss_kb: list[int] = field(default_factory=list)  # agent's VmRSS at each request (if sampled)
    end: float = 0.0
    returncode: int | None = None
    peak_rss_kb: int = 0
    log: str = ""
    model_s: list[float] = field(default_factory=list)  # cwm-agent's trajectory: per step
    tool_s: list[float] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.arrivals)

    def intervals(self) -> list[float]:
        """Seconds from request k to request k+1, k = 1..steps-1."""
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]

    def first_request(self) -> float:
        return self.arrivals[0] - self.launch

    def wall_per_step(self) -> float:
        return (self.end - self.launch) / max(1, self.steps)


def conversation_chars(body: dict[str, Any]) -> int:
    total = 0
    for message in body.get("messages") or ():
        content = message.get("content")
        total += len(content) if isinstance(content, str) else len(json.dumps(content or ""))
        for call in message.get("tool_calls") or ():
            total += len(str(call.get("function", {}).get("arguments", "")))
    return total


def assistant_turns(body: dict[str, Any]) -> int:
    return sum(1 for m in body.get("messages") or () if m.get("role") == "assistant")


def _vm_rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_agent(
    make_argv: Callable[[str], list[str]],
    reply: Reply,
    *,
    env: dict[str, str],
    cwd: str | Path,
    log_path: Path,
    sample_rss: bool = False,
    timeout: float = 600,
) -> Run:
    """Serve ``reply(k, body)`` as step k's reply, run ``make_argv(base_url)``, time it."""
    run: Run | None = None
    pid = 0

    def answer(body: dict[str, Any]) -> Any:
        now = time.perf_counter()
        assert run is not None
        run.arrivals.append(now)
        run.chars.append(conversation_chars(body))
        if sample_rss:
            run.rss_kb.append(_vm_rss_kb(pid))
        server.requests.clear()  # the server keeps every request otherwise (memory here)
        step = assistant_turns(body) + 1
        entry = dict(reply(step, body))
        prompt = run.chars[-1] // 4
        entry.setdefault(
            "usage", {"prompt_tokens": prompt, "completion_tokens": 20, "total_tokens": prompt + 20}
        )
        return entry

    server = ScriptedServer(answer, model="bench")
    with server, open(log_path, "wb") as log:
        full = make_argv(server.base_url)
        run = Run(launch=time.perf_counter())
        proc = subprocess.Popen(
            full, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        pid = proc.pid
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # rusage of this child alone
        finally:
            killer.cancel()
        run.end = time.perf_counter()
        proc.returncode = os.waitstatus_to_exitcode(status)
        run.returncode = proc.returncode
        run.peak_rss_kb = usage.ru_maxrss
    run.log = str(log_path)
    return run


def time_command(argv: list[str], *, env: dict[str, str] | None = None, reps: int = 10) -> float:
    """Median wall seconds of running ``argv`` to completion (output discarded)."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        times.append(time.perf_counter() - start)
    return median(times)


_HTTP_CLIENT = """
import http.client, json, statistics, sys, time
port, reps = int(sys.argv[1]), int(sys.argv[2])
body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}]})
conn = http.client.HTTPConnection("127.0.0.1", port)
trips = []
for i in range(reps + 20):
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    json.loads(conn.getresponse().read())
    if i >= 20:  # after a warm-up
        trips.append(time.perf_counter() - start)
print(statistics.median(trips))
"""


def physical_floor(reps: int = 200) -> dict[str, float]:
    """One loopback HTTP round trip and one `bash -c true`, both from a separate process
    as an agent's would be: a kept-alive connection to the same scripted server, a small
    chat body, the JSON reply parsed; `bash -c true` spawned from Python."""
    with ScriptedServer(_floor_reply, model="bench") as server:
        out = subprocess.run(
            [sys.executable, "-c", _HTTP_CLIENT, str(server.port), str(reps)],
            capture_output=True,
            text=True,
            check=True,
        )
    spawns = []
    for _ in range(reps // 2):
        start = time.perf_counter()
        subprocess.run(["bash", "-c", "true"], check=True)
        spawns.append(time.perf_counter() - start)
    http_s, bash_s = float(out.stdout), median(spawns)
    return {"http": http_s, "bash": bash_s, "floor": http_s + bash_s}


def _floor_reply(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "content": "ok",
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def make_fixture_repo(path: Path, files: int = 30) -> Path:
    """A small git repository: a package with a counter the episodes edit, and filler."""
    (path / "pkg").mkdir(parents=True)
    (path / "pkg" / "__init__.py").write_text("")
    (path / "pkg" / "counter.py").write_text(
        '"""A counter the benchmark episode edits."""\n\nVALUE = 0\n\n\n'
        "def bump(n):\n    return n + VALUE\n"
    )
    for i in range(files):
        (path / "pkg" / f"mod{i:02d}.py").write_text(
            f'"""Filler module {i}."""\n\n\ndef f{i}(x):\n    return x * {i}\n'
        )
    (path / "README.md").write_text("# bench fixture\n")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@example.invalid",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@example.invalid",
    }
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "fixture"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True)
    return path
