"""Batch progress on stderr: a rich live table on a terminal, one line per event otherwise.

Both read the shared ``Tally``; workers call ``started`` / ``ended`` from their threads.
An instance's own step-by-step lines go to its ``stderr.log``, not here.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cwm_agent.batch.instances import Instance
from cwm_agent.batch.summary import Tally, first_line
from cwm_agent.console import visible
from cwm_agent.costs import usd

RECENT_LINES = 6  # finished-instance lines kept under the live table


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def outcome_line(instance: Instance, doc: dict[str, Any] | None) -> str:
    """One finished instance; its id (the input's) and error (a server's) shown inertly."""
    return visible(_outcome(instance, doc))


def _outcome(instance: Instance, doc: dict[str, Any] | None) -> str:
    if doc is None:
        return f"{instance.instance_id}: interrupted (will run again on resume)"
    usage = doc.get("usage") or {}
    status = doc.get("status")
    if doc.get("error"):
        reason = first_line(doc["error"].get("message"))[:160]
        return f"{instance.instance_id}: FAILED {status} (exit {doc.get('exit_code')}): {reason}"
    patch = "patch" if doc.get("patch") else "no patch"
    cost = doc.get("cost_usd")
    spent = f"{usage.get('total_tokens', 0):,} tokens"
    spent += f", {usd(cost)}" if cost is not None else ""
    return (
        f"{instance.instance_id}: {status} ({patch}, exit {doc.get('exit_code')}, "
        f"{doc.get('steps')} steps, {spent}, {doc.get('attempt_seconds', 0):.1f} s)"
    )


def headline(counts: dict[str, Any]) -> str:
    done = counts["finished"] + counts["failed"]
    cost = counts.get("cost_usd")
    return (
        f"done {done}/{counts['total']} · running {len(counts['running'])} · "
        f"failed {counts['failed']} · tokens {counts['tokens']:,} · "
        + (f"cost {usd(cost)} · " if cost is not None else "")
        + f"elapsed {clock(counts['elapsed'])} · ETA {clock(counts['eta'])}"
    )


class PlainDisplay:
    """One line per event, for logs and pipes."""

    def __init__(self, tally: Tally, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.tally = tally
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self._lock = threading.Lock()

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def started(self, instance: Instance) -> None:
        self._emit(f"start {instance.instance_id}")

    def step(self, instance: Instance, step: int) -> None:
        pass  # too chatty for a log; steps are in the instance's stderr.log

    def ended(self, instance: Instance, doc: dict[str, Any] | None) -> None:
        counts = self.tally.counts()
        done = counts["finished"] + counts["failed"]
        self._emit(f"[{done}/{counts['total']}] {outcome_line(instance, doc)}")

    def message(self, text: str) -> None:
        self._emit(text)

    def warning(self, text: str) -> None:
        """A warning: said even with -q."""
        self._emit(text, loud=True)

    def _emit(self, text: str, loud: bool = False) -> None:
        if self.quiet and not loud:
            return
        elapsed = self.tally.counts()["elapsed"]
        with self._lock:
            self.stream.write(f"[{elapsed:7.1f}s] {visible(text)}\n")  # stderr unless a test says
            self.stream.flush()


class LiveDisplay:
    """A table of running instances under a one-line headline, redrawn by rich."""

    def __init__(self, tally: Tally, console: Console | None = None) -> None:
        self.tally = tally
        self.console = console or Console(stderr=True)
        self._recent: list[str] = []
        self._lock = threading.Lock()
        # rich calls __rich__ from its refresh thread: the view is always current.
        self._live = Live(self, console=self.console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveDisplay:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def started(self, instance: Instance) -> None:
        pass  # the table shows it on the next refresh

    def step(self, instance: Instance, step: int) -> None:
        pass  # the tally holds the step; the table shows it

    def ended(self, instance: Instance, doc: dict[str, Any] | None) -> None:
        with self._lock:
            self._recent = [*self._recent, outcome_line(instance, doc)][-RECENT_LINES:]

    def message(self, text: str) -> None:
        self._live.console.print(Text(visible(text)))  # no markup, no escapes

    def warning(self, text: str) -> None:
        self.message(text)

    def __rich__(self) -> Group:
        counts = self.tally.counts()
        table = Table(expand=False)
        table.add_column("running instance")
        table.add_column("step", justify="right")
        table.add_column("tokens", justify="right")
        table.add_column("cost", justify="right")
        table.add_column("elapsed", justify="right")
        for iid, state in sorted(counts["running"].items()):
            since = counts["elapsed"] - (state["started"] - self.tally.started)
            tokens = f"{state['tokens']:,}" if "tokens" in state else "-"
            cost = usd(state.get("cost_usd"))
            table.add_row(
                Text(visible(iid)), str(state["step"] or "setup"), tokens, cost, clock(since)
            )
        with self._lock:
            recent = [Text(line, overflow="ellipsis", no_wrap=True) for line in self._recent]
        parts = [table] if counts["running"] else []  # an empty table is just noise
        return Group(Text(headline(counts), style="bold"), *parts, *recent)
