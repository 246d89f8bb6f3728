"""Helpers for the batch tests (no tests here): repositories with a base commit, scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import cwm, git

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED_UPSTREAM = "def add(a, b):\n    return a + b  # fixed upstream, after the base commit\n"
MODEL_ERROR = {"status": 500, "headers": {"x-should-retry": "false"}}  # fails fast, no retries


def fix_script(module: str = "calc.py", delay: float = 0.0) -> list[Any]:
    edit = f"{module}\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE"
    replies = [cwm("edit", edit), cwm("bash", "git diff > fix.patch"), cwm("submit", "fix.patch")]
    replies.append("<think>\nDone.\n</think>\nFixed add().")
    return [{"content": r, "delay": delay} if delay else r for r in replies]


def busy_script(steps: int, delay: float) -> list[Any]:
    """An agent that keeps working (for interrupting it)."""
    return [{"content": cwm("bash", "sleep 0.05; echo working"), "delay": delay}] * steps


def make_repo(path: Path, module: str = "calc.py") -> str:
    """A repository whose base commit has the bug; a later commit (HEAD) fixed it upstream.

    Returns the base commit: a patch made at HEAD would not apply there, and vice versa.
    """
    path.mkdir(parents=True)
    (path / module).write_text(BUGGY)
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    base = git(path, "rev-parse", "HEAD").strip()
    (path / module).write_text(FIXED_UPSTREAM)
    git(path, "commit", "-q", "-am", "upstream fix")
    return base


def issue(key: str) -> str:
    return f"[{key}] add() subtracts instead of adding."


class Scripts:
    """Replies keyed by the ``[key]`` marker in the issue; the step = assistant turns so far.

    Stateless per request, so parallel workers each follow their own instance's script.
    """

    def __init__(self, scripts: dict[str, list[Any]]) -> None:
        self.scripts = scripts

    def key(self, body: dict[str, Any]) -> str | None:
        messages = body.get("messages") or []
        user = messages[1]["content"] if len(messages) > 1 else ""
        return next((k for k in self.scripts if f"[{k}]" in user), None)

    def __call__(self, body: dict[str, Any]) -> Any:
        key = self.key(body)
        if key is None:
            return None
        step = sum(m["role"] == "assistant" for m in body["messages"])
        script = self.scripts[key]
        return script[step] if step < len(script) else None


def requests_by_key(server: Any, scripts: Scripts) -> dict[str, int]:
    counts: dict[str, int] = {}
    for request in server.requests:
        if request.method == "POST":
            key = scripts.key(request.body or {})
            counts[key or "?"] = counts.get(key or "?", 0) + 1
    return counts


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_preds(outdir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (outdir / "preds.jsonl").read_text().splitlines()]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def batch_args(server: Any, input_path: Path, outdir: Path, *extra: str) -> list[str]:
    args = ["batch", str(input_path), "-o", str(outdir), "--model", "m"]
    return [*args, "--base-url", server.base_url, "--max-steps", "6", *extra]


def start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cwm_agent", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the batch")
        time.sleep(0.02)


def count_lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0
