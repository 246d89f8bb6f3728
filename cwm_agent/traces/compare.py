"""Where a predicted trace first departs from the real one, plus summary figures.

Frames are aligned by position. A frame matches when its event, its source line (ignoring
surrounding whitespace), its locals with ".." resolved, and its return/exception value are
equal. ".." is resolved by carrying the last value shown in the same scope: looking back
through the frames of an uninterrupted run, stopping at a call (a scope starts) or a return
(the scope changed), which is how CWM's reference debugger reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .format import UNCHANGED, Frame


@dataclass(frozen=True)
class Divergence:
    """The first frame where prediction and reality differ."""

    index: int
    kind: str  # event | action | state | value | missing (prediction ended) | extra
    event: str
    line: int | None
    source: str
    variable: str | None = None
    predicted: str | None = None
    actual: str | None = None

    def describe(self) -> str:
        where = f"frame {self.index} ({self.event}"
        where += f", line {self.line})" if self.line is not None else ")"
        code = f" `{self.source.strip()}`" if self.source.strip() else ""
        if self.kind == "state":
            if self.predicted is None:
                return f"{where}{code}: `{self.variable}` = {self.actual} was not predicted"
            if self.actual is None:
                return (
                    f"{where}{code}: predicted `{self.variable}` = {self.predicted}, "
                    "which does not exist"
                )
            return f"{where}{code}: `{self.variable}` was {self.actual}, not {self.predicted}"
        if self.kind == "missing":
            return f"{where}{code}: the prediction ended before this frame"
        if self.kind == "extra":
            return f"{where}{code}: predicted a frame after the real trace ended"
        return f"{where}{code}: predicted {self.kind} {self.predicted}, actual {self.actual}"


@dataclass(frozen=True)
class Comparison:
    predicted_frames: int
    real_frames: int
    matched_prefix: int  # frames equal before the first divergence
    frames_matched: int  # frames equal at the same position, anywhere
    state_matched: int
    state_total: int
    action_matched: int
    action_total: int
    return_match: bool | None  # None when the real trace was cut
    predicted_outcome: str | None
    actual_outcome: str | None
    divergence: Divergence | None

    @property
    def state_match_rate(self) -> float:
        return self.state_matched / self.state_total if self.state_total else 1.0

    @property
    def action_match_rate(self) -> float:
        return self.action_matched / self.action_total if self.action_total else 1.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state_match_rate"] = round(self.state_match_rate, 4)
        data["action_match_rate"] = round(self.action_match_rate, 4)
        return data

    def headline(self) -> str:
        """One line for an agent observation, e.g. `predicted: returns 3; actual: raises ...`."""
        text = f"predicted: {self.predicted_outcome or 'no outcome'}; "
        text += f"actual: {self.actual_outcome or 'no outcome (trace cut)'}"
        if self.divergence is not None:
            text += f"; first divergence at {self.divergence.describe()}"
        return text

    def summary(self) -> str:
        lines = [
            f"frames: predicted {self.predicted_frames}, real {self.real_frames}, "
            f"matching prefix {self.matched_prefix}, matching overall {self.frames_matched}",
            f"state exact match: {self.state_match_rate:.1%} "
            f"({self.state_matched}/{self.state_total})",
            f"action exact match: {self.action_match_rate:.1%} "
            f"({self.action_matched}/{self.action_total})",
            f"outcome: predicted {self.predicted_outcome or '-'}; "
            f"actual {self.actual_outcome or '- (trace cut)'}; "
            + {True: "match", False: "MISMATCH", None: "unknown"}[self.return_match],
            "first divergence: "
            + (self.divergence.describe() if self.divergence else "none (identical)"),
        ]
        return "\n".join(lines)


def resolve_locals(frames: Sequence[Frame]) -> list[dict[str, str]]:
    """Full locals for every frame (empty for return/exception frames)."""
    resolved: list[dict[str, str]] = []
    last: dict[str, str] = {}  # values of the current run of one scope
    for frame in frames:
        if frame.event == "call":
            last = {}
        elif frame.event == "return":
            resolved.append({})
            last = {}
            continue
        elif frame.event == "exception":
            resolved.append({})
            continue
        full = {}
        for name, value in frame.locals.items():
            full[name] = last.get(name, UNCHANGED) if value == UNCHANGED else value
        last = full
        resolved.append(full)
    return resolved


def outcome(frames: Sequence[Frame], complete: bool = True) -> str | None:
    """How the traced call ended: `returns V` / `raises E at line N`, or None if unknown."""
    if not complete or not frames or not frames[-1].is_exit:
        return None
    last = frames[-1]
    if last.event == "return":
        return f"returns {last.value}"
    at = f" at line {last.line}" if last.line is not None else ""
    return f"raises {last.value}{at}"


def compare_traces(
    predicted: Sequence[Frame], real: Sequence[Frame], real_complete: bool = True
) -> Comparison:
    pred_full, real_full = resolve_locals(predicted), resolve_locals(real)
    divergence: Divergence | None = None
    frames_matched = state_matched = action_matched = 0
    for i, actual in enumerate(real):
        guess = predicted[i] if i < len(predicted) else None
        if guess is None:
            divergence = divergence or _divergence(i, "missing", actual)
            continue
        action_ok = guess.event == actual.event and _same_source(guess, actual)
        state_ok = not actual.has_locals or (guess.has_locals and pred_full[i] == real_full[i])
        value_ok = not actual.is_exit or guess.value == actual.value
        action_matched += action_ok
        state_matched += actual.has_locals and state_ok
        frames_matched += action_ok and state_ok and value_ok
        if divergence is None and not (action_ok and state_ok and value_ok):
            divergence = _first_difference(i, guess, actual, pred_full[i], real_full[i])
    if divergence is None and len(predicted) > len(real):
        extra = predicted[len(real)]
        divergence = Divergence(len(real), "extra", extra.event, extra.line, extra.source)
    predicted_outcome = outcome(predicted)
    actual_outcome = outcome(real, real_complete)
    return Comparison(
        predicted_frames=len(predicted),
        real_frames=len(real),
        matched_prefix=divergence.index if divergence else len(real),
        frames_matched=frames_matched,
        state_matched=state_matched,
        state_total=sum(f.has_locals for f in real),
        action_matched=action_matched,
        action_total=len(real),
        return_match=None if actual_outcome is None else _same_exit(predicted, real),
        predicted_outcome=predicted_outcome,
        actual_outcome=actual_outcome,
        divergence=divergence,
    )


def _same_source(a: Frame, b: Frame) -> bool:
    return a.source.strip() == b.source.strip()


def _same_exit(predicted: Sequence[Frame], real: Sequence[Frame]) -> bool:
    if not predicted or not predicted[-1].is_exit:
        return False
    guess, actual = predicted[-1], real[-1]
    return guess.event == actual.event and guess.value == actual.value


def _divergence(i: int, kind: str, real: Frame, **details: Any) -> Divergence:
    return Divergence(i, kind, real.event, real.line, real.source, **details)


def _first_difference(
    i: int, guess: Frame, actual: Frame, guess_locals: dict[str, str], real_locals: dict[str, str]
) -> Divergence:
    if guess.event != actual.event:
        return _divergence(i, "event", actual, predicted=guess.event, actual=actual.event)
    if not _same_source(guess, actual):
        return _divergence(
            i, "action", actual, predicted=guess.source.strip(), actual=actual.source.strip()
        )
    if actual.has_locals:
        names = list(real_locals) + [n for n in guess_locals if n not in real_locals]
        for name in names:
            if guess_locals.get(name) != real_locals.get(name):
                return _divergence(
                    i,
                    "state",
                    actual,
                    variable=name,
                    predicted=guess_locals.get(name),
                    actual=real_locals.get(name),
                )
    return _divergence(i, "value", actual, predicted=guess.value, actual=actual.value)
