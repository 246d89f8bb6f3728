"""What a run tells the user while it works: stderr only, never stdout.

``make_progress`` picks the display: a live status line (rich) when stderr is a terminal,
plain one-line events otherwise (logs, CI, pipes). ``verbosity`` 0 = errors and warnings
only, 1 = one line per step, 2 (``-v``) = also the model's reasoning and each observation.
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import Any, TextIO

from cwm_agent.console import visible
from cwm_agent.costs import usd

REASONING_LINES = 30
OBSERVATION_LINES = 20
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def make_progress(verbosity: int = 1, stream: TextIO | None = None) -> StderrProgress:
    """The progress callback for one run; use it as a context manager (stops the display)."""
    stream = stream or sys.stderr
    if verbosity >= 1 and _is_terminal(stream):
        return LiveProgress(verbosity, stream)
    return StderrProgress(verbosity, stream)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def _one_line(text: str, width: int = 100) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def action_summary(action: Any) -> str:
    """One line for an action: the command, or the path an edit/create/submit works on."""
    args = action.args
    fallback = "(working-tree diff)" if action.tool == "submit" else ""
    return args.get("command") or args.get("path") or fallback


def reasoning_of(reply: Any) -> str:
    return reply.reasoning or reply.content.split("</think>")[0].replace("<think>", "", 1)


def trimmed(text: str, lines: int) -> list[str]:
    """The first ``lines`` lines, plus a marker saying how many were left out."""
    all_lines = text.strip("\n").splitlines()
    if len(all_lines) <= lines:
        return all_lines
    return [*all_lines[:lines], f"… ({len(all_lines) - lines} more lines)"]


class StderrProgress:
    """Plain one-line events, the format logs and tests read."""

    def __init__(self, verbosity: int = 1, stream: TextIO | None = None) -> None:
        self.verbosity = verbosity
        self.stream = stream or sys.stderr
        self.started = time.monotonic()

    def __enter__(self) -> StderrProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to stop for plain output."""

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if event == "warning":
            self._emit(f"warning: {data['message']}")
            return
        if self.verbosity < 1:
            return
        elapsed = time.monotonic() - self.started
        if event == "action":
            action = data["action"]
            summary = _one_line(action_summary(action))
            self._emit(f"[{elapsed:6.1f}s step {data['step']}] {action.tool}: {summary}")
        elif event == "format_error":
            self._emit(f"[{elapsed:6.1f}s] format error: {_one_line(data['problem'])}")
        elif event == "reply" and self.verbosity >= 2:
            thinking = reasoning_of(data["reply"]).strip()
            self._emit("  thinking: " + "\n  ".join(trimmed(thinking, REASONING_LINES)))
        elif event == "observation" and self.verbosity >= 2:
            text = data["observation"].output
            self._emit("    " + "\n    ".join(trimmed(text, OBSERVATION_LINES)))

    def _emit(self, text: str) -> None:
        self.stream.write(visible(text) + "\n")
        self.stream.flush()


class LiveProgress(StderrProgress):
    """A live status line on a terminal: step N/limit, the current action, tokens, cost
    (where the model has a price), time.

    Finished steps scroll above it, one line each; ``-v`` adds reasoning and observations.
    """

    def __init__(self, verbosity: int = 1, stream: TextIO | None = None, console: Any = None):
        super().__init__(verbosity, stream)
        from rich.console import Console  # lazy: rich costs ~50 ms, plain runs never pay it
        from rich.live import Live

        self.console = console or Console(file=self.stream, highlight=False)
        self.step = 0
        self.max_steps = 0
        self.doing = "setting up the runtime"
        self.tokens = 0
        self.context = 0
        self.cost: float | None = None  # USD so far, where the model has a price
        self._live = Live(
            get_renderable=self._status,
            console=self.console,
            transient=True,
            refresh_per_second=8,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    def close(self) -> None:
        self._live.stop()

    def _status(self) -> Any:
        """The live line, rebuilt at every refresh (the clock and the spinner move)."""
        from rich.text import Text

        now = time.monotonic()
        elapsed = int(now - self.started)
        text = Text()
        text.append(_SPINNER[int(now * 10) % len(_SPINNER)] + " ", style="cyan")
        if self.max_steps:
            text.append(f"step {self.step}/{self.max_steps}", style="bold")
            text.append(f" · {_tokens(self.tokens)} tokens (context {_tokens(self.context)})")
            if self.cost is not None:
                text.append(f" · {usd(self.cost)}")
        text.append(f" · {elapsed // 60}:{elapsed % 60:02d} · ", style="dim")
        text.append(self.doing)
        text.truncate(max(20, self.console.width - 1), overflow="ellipsis")
        return text

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if event == "warning":
            self._print(f"warning: {data['message']}", "yellow")
        elif event == "step":
            self.step, self.max_steps = data["step"], data["max_steps"]
            self.doing = "waiting for the model"
        elif event == "reply":
            usage = data["reply"].usage
            self.tokens += usage.total_tokens
            self.context = usage.total_tokens or self.context
            self.cost = data.get("cost_usd", self.cost)
            if self.verbosity >= 2:
                thinking = reasoning_of(data["reply"]).strip()
                for line in trimmed(thinking, REASONING_LINES):
                    self._print("  " + line, "dim italic")
        elif event == "action":
            action = data["action"]
            line = f"{action.tool}: {_one_line(action_summary(action), 200)}"
            self.doing = "running " + visible(line)
            self._print(f"step {data['step']:>3} {line}", "bold")
        elif event == "observation":
            observation = data["observation"]
            self.doing = "waiting for the model"
            if self.verbosity >= 2:
                style = "" if observation.ok else "red"
                for line in trimmed(observation.output, OBSERVATION_LINES):
                    self._print("    " + line, style)
        elif event == "format_error":
            self._print(f"step {self.step:>3} format error: {_one_line(data['problem'])}", "yellow")

    def _print(self, text: str, style: str) -> None:
        from rich.text import Text

        self.console.print(Text(visible(text), style=style), no_wrap=True, overflow="ellipsis")


def _tokens(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f}M"
    return f"{count / 1000:.1f}k" if count >= 1000 else str(count)
