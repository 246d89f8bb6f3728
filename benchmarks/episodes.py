"""The scripted episodes and the two harnesses that run them, each in its own action format.

Step k's action depends only on k, so any harness gets the same work: cheap commands, each
one external program like the floor's `bash -c true` (``ls``, ``cat -n``, ``grep``, ``wc``),
and an edit every fifth step (cwm-agent's ``edit`` tool; a ``sed -i`` for mini-swe-agent,
which has only bash), or, for the memory episode, a 30,000-character random observation
every step.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import ROOT

ISSUE = "Bump the counter in pkg/counter.py, one step at a time."
BIG_OUTPUT = "head -c 22500 /dev/urandom | base64 -w 0"  # 30,000 characters
CHEAP = [
    "ls -la pkg",
    "cat -n pkg/counter.py",
    None,
    "grep -n VALUE pkg/counter.py",
    "wc -l pkg/mod01.py",
]


def action(step: int, big: bool) -> tuple[str, str | int]:
    """("bash", command) or ("edit", n): set VALUE from n-1 to n."""
    if big:
        return "bash", BIG_OUTPUT
    command = CHEAP[(step - 1) % len(CHEAP)]
    return ("edit", (step - 1) // len(CHEAP) + 1) if command is None else ("bash", command)


def thought(step: int) -> str:
    return f"Step {step}: next, look at the package and move the counter along."


def cwm_reply(step: int, big: bool) -> dict[str, Any]:
    kind, arg = action(step, big)
    if kind == "edit":
        n = int(arg)
        block = f"<<<<<<< SEARCH\nVALUE = {n - 1}\n=======\nVALUE = {n}\n>>>>>>> REPLACE"
        body = f"pkg/counter.py\n{block}"
        tool = "edit"
    else:
        body, tool = str(arg), "bash"
    return {"content": f"<think>\n{thought(step)}\n</think>\n<tool: {tool}>\n{body}\n</tool>"}


def mini_reply(step: int, big: bool) -> dict[str, Any]:
    kind, arg = action(step, big)
    if kind == "edit":
        n = int(arg)
        command = f"sed -i 's/^VALUE = {n - 1}$/VALUE = {n}/' pkg/counter.py"
    else:
        command = str(arg)
    call = {"id": f"call_{step}", "name": "bash", "arguments": {"command": command}}
    return {"content": thought(step), "tool_calls": [call]}


@dataclass(frozen=True)
class Harness:
    """How to launch one agent on an episode: argv for a server URL, environment, replies."""

    name: str
    argv: Callable[[str, Path, int, Path, bool], list[str]]  # (url, repo, steps, traj, big)
    env: dict[str, str]
    reply: Callable[[int, bool], dict[str, Any]]
    traj_kind: str  # "cwm" trajectories carry per-step timings


def cwm_harness(home: Path, src: Path | None = None, name: str = "cwm-agent") -> Harness:
    exe = str(ROOT / ".venv" / "bin" / "cwm-agent")
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench", "CWM_AGENT_HOME": str(home)}
    env.pop("CWM_AGENT_MODEL", None)
    env.pop("OPENAI_BASE_URL", None)
    if src is not None:  # another source tree of the package (an A/B comparison)
        env["PYTHONPATH"] = str(src)

    def argv(url: str, repo: Path, steps: int, traj: Path, big: bool) -> list[str]:
        return [
            exe,
            "run",
            str(repo),
            "--issue",
            ISSUE,
            "--base-url",
            url,
            "--model",
            "bench",
            "--max-steps",
            str(steps),
            "--traj",
            str(traj),
            "--max-context",
            str(10**9 if big else 131_072),
        ]

    return Harness(name, argv, env, cwm_reply, "cwm")


def mini_harness(mini_exe: Path, home: Path) -> Harness:
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-bench",
        "MSWEA_CONFIGURED": "true",  # no first-run set-up dialogue
        "MSWEA_SILENT_STARTUP": "1",
        "MSWEA_GLOBAL_CONFIG_DIR": str(home / "mini-config"),
        "MSWEA_COST_TRACKING": "ignore_errors",  # a local model has no price
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the price list at import
    }

    def argv(url: str, repo: Path, steps: int, traj: Path, big: bool) -> list[str]:
        return [
            str(mini_exe),
            "-m",
            "openai/bench",
            "-t",
            ISSUE,
            "-y",
            "--exit-immediately",
            "-c",
            "mini.yaml",
            "-c",
            f"model.model_kwargs.api_base={url}",
            "-c",
            f"agent.step_limit={steps}",
            "-o",
            str(traj),
        ]

    return Harness("mini-swe-agent", argv, env, mini_reply, "mini")
