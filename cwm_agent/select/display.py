"""Selection progress on stderr: a rich live line on a terminal, one line per event
otherwise. Instances done, candidates after each stage, throughput and ETA.

Warnings are loud but not repeated: the first of each kind is shown with its instance, the
rest are counted, and the end of the run lists every kind with its count.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from cwm_agent.batch.display import clock
from cwm_agent.console import visible
from cwm_agent.select.summary import Tally, warning_kind
from cwm_agent.verification.cascade import Outcome

RECENT_LINES = 6
_LABELS = {
    "static": "after static",
    "group": "groups",
    "reward": "after reward",
    "execute": "after execute",
}


def outcome_line(outcome: Outcome) -> str:
    record = outcome.record
    funnel = record["funnel"]
    steps = [f"{funnel['candidates']} candidate(s)"]
    steps += [f"{funnel[s]} {label}" for s, label in _LABELS.items() if s in funnel]
    chosen = record["chosen"]
    end = f"#{chosen['candidate']} chosen ({chosen['decided_by']})" if chosen else "none chosen"
    seconds = record["cost"]["wall_seconds"]
    return f"{outcome.instance_id}: {' -> '.join(steps)} -> {end}, {seconds:.2f} s"


def headline(counts: dict[str, Any]) -> str:
    funnel = counts["funnel"]
    stages = " · ".join(f"{k} {v:,}" for k, v in funnel.items())
    return (
        f"done {counts['done']}/{counts['total']} · {stages or 'no candidates yet'} · "
        f"{counts['per_minute']:,.0f} candidates/min · warned {counts['warned']} · "
        f"elapsed {clock(counts['elapsed'])} · ETA {clock(counts['eta'])}"
    )


class _Warnings:
    def __init__(self) -> None:
        self.seen: set[str] = set()

    def first(self, text: str) -> bool:
        kind = warning_kind(text)
        new = kind not in self.seen
        self.seen.add(kind)
        return new


class PlainDisplay:
    def __init__(self, tally: Tally, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.tally = tally
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self._warnings = _Warnings()
        self._lock = threading.Lock()

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def ended(self, outcome: Outcome) -> None:
        counts = self.tally.counts()
        pace = f"{counts['per_minute']:,.0f} candidates/min, ETA {clock(counts['eta'])}"
        self.emit(f"[{counts['done']}/{counts['total']}, {pace}] {outcome_line(outcome)}")
        for text in outcome.warnings:
            if self._warnings.first(text):
                self.emit(f"WARNING {outcome.instance_id}: {text}", loud=True)

    def message(self, text: str) -> None:
        self.emit(text)

    def emit(self, text: str, loud: bool = False) -> None:
        if self.quiet and not loud:
            return
        with self._lock:
            self.stream.write(visible(text) + "\n")  # instance ids, paths, messages: not ours
            self.stream.flush()


class LiveDisplay:
    def __init__(self, tally: Tally, console: Console | None = None) -> None:
        self.tally = tally
        self.console = console or Console(stderr=True)
        self._recent: list[str] = []
        self._warnings = _Warnings()
        self._lock = threading.Lock()
        self._live = Live(self, console=self.console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveDisplay:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def ended(self, outcome: Outcome) -> None:
        with self._lock:
            self._recent = [*self._recent, outcome_line(outcome)][-RECENT_LINES:]
        for text in outcome.warnings:
            if self._warnings.first(text):
                self._live.console.print(
                    _text(f"WARNING {outcome.instance_id}: {text}", style="bold yellow")
                )

    def message(self, text: str) -> None:
        self._live.console.print(_text(text))

    def __rich__(self) -> Group:
        with self._lock:
            recent = [_text(line, overflow="ellipsis", no_wrap=True) for line in self._recent]
        return Group(Text(headline(self.tally.counts()), style="bold"), *recent)


def _text(text: str, **style: Any) -> Text:
    """What the live display prints: rich drops BEL but passes ESC, so text is made visible."""
    return Text(visible(text), **style)


def make_display(tally: Tally, quiet: bool) -> PlainDisplay | LiveDisplay:
    if quiet:
        return PlainDisplay(tally, quiet=True)
    return LiveDisplay(tally) if sys.stderr.isatty() else PlainDisplay(tally)
