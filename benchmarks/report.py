"""Markdown for the figures, and the block of BENCHMARKS.md that `make bench` refreshes."""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from harness import ROOT

START, END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"
MD = ROOT / "BENCHMARKS.md"
MINI = "mini-swe-agent"


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return (
        f"{cpu or platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def revision() -> str:
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return proc.stdout.strip()

    measured = ("cwm_agent", "prompts", "benchmarks", "cwm_agent/scripted_server.py")  # not figures
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--", *measured) else ""
    return (git("rev-parse", "--short", "HEAD") or "unknown") + dirty


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def _x(ratio: float) -> str:
    return f"{ratio:.1f}×"


def _check(ok: bool) -> str:
    return "met" if ok else "**not met**"


def render(res: dict[str, Any]) -> str:
    out = [
        f"Measured {res['date']} on {res['machine']}.",
        f"Command: `{res['command']}` ({res['elapsed']:.0f} s). cwm-agent at {res['revision']}; "
        f"peer: {res['mini_versions'] or 'not run'}.",
        "Every figure is a median: over steps within a run, then over runs "
        f"({res['reps']} per harness, interleaved).",
        "",
    ]
    out += _per_step(res) + _startup(res) + _memory(res) + _docker(res) + _scaling(res)
    out += _targets(res)
    return "\n".join(out).rstrip() + "\n"


def _per_step(res: dict[str, Any]) -> list[str]:
    if "per_step" not in res:
        return []
    ps, fl = res["per_step"], res["floor"]
    floor, efloor = fl["floor"] * 1e3, fl["episode"] * 1e3
    mini = ps.get(MINI, {}).get("step_ms")
    rows = [
        [
            "physical floor: 1 HTTP round trip + 1 `bash -c true`",
            f"{_ms(floor)} ({_ms(fl['http'] * 1e3)} + {_ms(fl['bash'] * 1e3)})",
            "",
            "",
            "1.0×",
            "",
            "",
        ],
        [
            "episode floor: 1 HTTP round trip + the step's own command via `bash -c`",
            _ms(efloor),
            "",
            "",
            _x(efloor / floor),
            "1.0×",
            "",
        ],
    ]
    for name, row in ps.items():
        rows.append(
            [
                name,
                _ms(row["step_ms"]),
                _ms(row["wall_per_step_ms"]),
                _ms(row["end_ms"]),
                _x(row["step_ms"] / floor),
                _x(row["step_ms"] / efloor),
                _x(row["step_ms"] / mini) if mini else "",
            ]
        )
    out = [
        f"### 1. Per-step overhead ({res['steps']}-step episode, zero-delay scripted server)",
        "",
    ]
    out += _table(
        [
            "",
            "per step",
            "wall / steps (with start-up)",
            "last request → exit",
            "vs floor",
            "vs episode floor",
            "vs mini-swe-agent",
        ],
        rows,
    )
    out += [
        "",
        "Per step = time between two consecutive model requests as the server sees "
        "them: the whole loop (reply parsing, the tool, the record, the next request).",
        "",
    ]
    split = [
        [name, _ms(r["model_ms"]), _ms(r["tool_ms"]), _ms(r["rest_ms"])]
        for name, r in ps.items()
        if "model_ms" in r
    ]
    if split:
        out += [
            "Where cwm-agent's step goes (its trajectory's `model_seconds`, `tool_seconds`; "
            "the rest is the harness's own work):",
            "",
        ]
        out += _table(["", "model call (HTTP, server included)", "tool", "rest"], split) + [""]
    return out


def _startup(res: dict[str, Any]) -> list[str]:
    if "startup" not in res:
        return []
    rows = [[name, f"{value * 1e3:.0f} ms"] for name, value in res["startup"].items()]
    out = ["### 2. Start-up", ""] + _table(["", "median"], rows) + [""]
    if res.get("imports"):
        out += [
            "Largest top-level imports of `cwm-agent run` before its first request "
            "(`-X importtime`, which inflates them):",
            "",
        ]
        out += _table(
            ["module", "cumulative"], [[f"`{m}`", _ms(s * 1e3)] for m, s in res["imports"]]
        )
        out += [""]
    return out


def _memory(res: dict[str, Any]) -> list[str]:
    if "memory" not in res:
        return []
    mem = res["memory"]
    marks = list(next(iter(mem.values()))["rss_mib"])
    header = [
        "",
        "peak RSS",
        *[f"RSS at step {m}" for m in marks],
        "conversation at the last step",
        "RSS growth / conversation growth",
        "step (first 16 → last 16)",
    ]
    rows = []
    for name, m in mem.items():
        rows.append(
            [
                name,
                f"{m['peak_mib']:.0f} MiB",
                *[f"{v:.0f} MiB" for v in m["rss_mib"].values()],
                f"{list(m['conversation_mib'].values())[-1]:.1f} MiB",
                _x(m["growth_per_conversation"]),
                f"{_ms(m['step_ms_first'])} → {_ms(m['step_ms_last'])}",
            ]
        )
    out = [f"### 3. Memory ({res['memory_steps']} steps, 30,000-character observations)", ""]
    out += _table(header, rows)
    out += [
        "",
        "Conversation = the characters of all message contents the harness sends at "
        "that step (each harness cuts long observations its own way).",
        "",
    ]
    return out


def _docker(res: dict[str, Any]) -> list[str]:
    out = ["### 4. Docker runtime", ""]
    d = res.get("docker")
    if not isinstance(d, dict):
        return out + [f"Skipped: {d or 'not run'}.", ""]
    rows = [
        ["raw `exec` round trip (`container.exec_run(['true'])`)", _ms(d["exec_ms"])],
        [f"cwm-agent per step on docker ({d['image']})", _ms(d["step_ms"])],
        ["  of which tool", _ms(d["tool_ms"])],
        ["  of which model call", _ms(d["model_ms"])],
    ]
    if "first_ms" in d:
        rows.append(["cwm-agent run on docker: launch to first model request", _ms(d["first_ms"])])
    return out + _table(["", "median"], rows) + [""]


def _scaling(res: dict[str, Any]) -> list[str]:
    if "scaling" not in res:
        return []
    sc = res["scaling"]
    windows = [k for k in next(iter(sc.values())) if k != "context_kib"]
    rows = []
    for name, s in sc.items():
        first, last = s[windows[0]], s[windows[-1]]
        rows.append(
            [
                name,
                *[_ms(s[w]) for w in windows],
                _x(last / first),
                " → ".join(f"{s['context_kib'][w]:.0f}" for w in windows),
            ]
        )
    header = ["", *[f"steps {w}" for w in windows], "last / first", "context sent (KiB)"]
    out = [
        f"### 5. Scaling ({res['scaling_steps']}-step episode): median step time by step number",
        "",
    ]
    return out + _table(header, rows) + [""]


def _targets(res: dict[str, Any]) -> list[str]:
    lines = ["### Targets", ""]
    ps = res.get("per_step", {})
    cwm = ps.get("cwm-agent", {}).get("step_ms")
    if cwm is not None:
        floor, efloor = res["floor"]["floor"] * 1e3, res["floor"]["episode"] * 1e3
        if MINI in ps:
            mini = ps[MINI]["step_ms"]
            ok = _check(cwm < mini)
            lines.append(f"- per step below mini-swe-agent's: {_ms(cwm)} vs {_ms(mini)}: {ok}")
        ok, eok = _check(cwm <= 3 * floor), _check(cwm <= 3 * efloor)
        lines.append(
            f"- per step within 3× the physical floor: {_x(cwm / floor)}: {ok}; "
            f"within 3× the episode floor: {_x(cwm / efloor)}: {eok}"
        )
    st = res.get("startup", {})
    if "cwm-agent --help" in st:
        v = st["cwm-agent --help"]
        lines.append(f"- `cwm-agent --help` under 0.3 s: {v:.2f} s: {_check(v < 0.3)}")
    first = st.get("cwm-agent run: launch to first model request")
    if first is not None:
        lines.append(
            f"- first model request under 0.5 s after launch: {first:.2f} s: {_check(first < 0.5)}"
        )
    mem = res.get("memory", {}).get("cwm-agent")
    if mem:
        g = mem["growth_per_conversation"]
        lines.append(
            f"- memory flat apart from the conversation: RSS grows {_x(g)} as much as the "
            f"conversation: {_check(g <= 4)} (at most 4×: the messages and the step records "
            "hold each observation once each, and the request in flight holds the conversation "
            "as JSON text and as bytes)"
        )
    return lines + [""]


def write(markdown: str, path: Path = MD) -> None:
    block = f"{START}\n{markdown}{END}"
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START in text and END in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
