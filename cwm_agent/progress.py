"""What a run tells the user while it works: stderr only, never stdout."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _one_line(text: str, width: int = 100) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


class StderrProgress:
    """Plain one-line events; ``verbosity`` 0 = errors only, 1 = steps, 2 = also observations."""

    def __init__(self, verbosity: int = 1, stream: TextIO | None = None) -> None:
        self.verbosity = verbosity
        self.stream = stream or sys.stderr
        self.started = time.monotonic()

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if event == "warning":
            self._emit(f"warning: {data['message']}")
            return
        if self.verbosity < 1:
            return
        elapsed = time.monotonic() - self.started
        if event == "action":
            action = data["action"]
            summary = action.args.get("command") or action.args.get("path") or ""
            self._emit(f"[{elapsed:6.1f}s step {data['step']}] {action.tool}: {_one_line(summary)}")
        elif event == "format_error":
            self._emit(f"[{elapsed:6.1f}s] format error: {_one_line(data['problem'])}")
        elif event == "reply" and self.verbosity >= 2:
            reply = data["reply"]
            thinking = reply.reasoning or reply.content.split("</think>")[0].replace(
                "<think>", "", 1
            )
            self._emit("  thinking: " + "\n  ".join(thinking.strip().splitlines()[:30]))
        elif event == "observation" and self.verbosity >= 2:
            text = data["observation"].output
            self._emit("    " + "\n    ".join(text.splitlines()[:20]))

    def _emit(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
