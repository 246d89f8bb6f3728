"""CWM trace frames: the record, its token-text rendering, the prompt, JSON, and a parser.

Facts carried over from CWM's public prompting guide and debugger demo:
- a frame is `<|EVENT_sep|>LOCALS<|action_sep|>SOURCE<|frame_sep|>`; return and exception
  frames carry no locals and end `SOURCE<|arg_sep|>VALUE<|frame_sep|>`;
- LOCALS is `json.dumps` of a dict of repr strings, VALUE is `json.dumps` of a repr string;
- the entry function's `def` line ends with `  # << START_OF_TRACE` in the context;
- the trace ends with `<|end_of_text|>` when the entry scope is left;
- SOURCE is the raw source line with its indentation and its newline (the reference
  debugger strips a trailing newline from what the model emits). `Frame.source` holds the
  line without the newline; rendering adds it back.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BEGIN_OF_TEXT = "<|begin_of_text|>"
END_OF_TEXT = "<|end_of_text|>"
TRACE_CONTEXT_START = "<|trace_context_start|>"
FRAME_SEP = "<|frame_sep|>"
ACTION_SEP = "<|action_sep|>"
ARG_SEP = "<|arg_sep|>"
EVENT_TOKENS = {
    "call": "<|call_sep|>",
    "line": "<|line_sep|>",
    "return": "<|return_sep|>",
    "exception": "<|exception_sep|>",
}
EVENTS = tuple(EVENT_TOKENS)
STOP_TOKENS = (FRAME_SEP, END_OF_TEXT)
START_MARKER = "  # << START_OF_TRACE"
UNCHANGED = ".."

_TOKEN_EVENTS = {token: event for event, token in EVENT_TOKENS.items()}
_EVENT_RE = re.compile("|".join(re.escape(t) for t in EVENT_TOKENS.values()))
_END_RE = re.compile(re.escape(END_OF_TEXT) + "|<\\|eot_id\\|>")
_PAIR_RE = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Frame:
    """One step of a trace. `locals` holds repr strings or ".." (unchanged in this scope)."""

    event: str
    line: int | None
    source: str
    locals: Mapping[str, str] = field(default_factory=dict, hash=False)
    value: str | None = None

    @property
    def has_locals(self) -> bool:
        return self.event in ("call", "line")

    @property
    def is_exit(self) -> bool:
        return self.event in ("return", "exception")

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "line": self.line,
            "source": self.source,
            "locals": dict(self.locals),
            "value": self.value,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Frame:
        event = data.get("event")
        if event not in EVENT_TOKENS:
            raise ValueError(f"frame event must be one of {', '.join(EVENTS)}, got {event!r}")
        line = data.get("line")
        value = data.get("value")
        return cls(
            event=event,
            line=int(line) if line is not None else None,
            source=str(data.get("source") or ""),
            locals={str(k): str(v) for k, v in (data.get("locals") or {}).items()},
            value=None if value is None else str(value),
        )


@dataclass(frozen=True)
class ParsedTrace:
    """What the parser recovered: frames, whether the end token was seen, and any problems."""

    frames: tuple[Frame, ...]
    ended: bool
    problems: tuple[str, ...] = ()
    context: str | None = None


# ---------------------------------------------------------------- rendering


def render_frame(frame: Frame) -> str:
    parts = [EVENT_TOKENS[frame.event]]
    if frame.has_locals:
        parts.append(json.dumps(dict(frame.locals)))
    parts += [ACTION_SEP, frame.source, "\n"]
    if frame.is_exit:
        parts += [ARG_SEP, json.dumps(frame.value if frame.value is not None else "None")]
    parts.append(FRAME_SEP)
    return "".join(parts)


def render_trace(frames: Iterable[Frame], end: bool = True) -> str:
    """Frames as CWM token text; `end=False` for a cut (or still growing) trace."""
    text = "".join(render_frame(f) for f in frames)
    return text + END_OF_TEXT if end else text


def mark_entry(source: str, entry: str) -> str:
    """`source` with `# << START_OF_TRACE` after the entry's `def` line.

    `entry` is a function name, optionally qualified (`Class.method`); decorators are
    skipped. Raises ValueError when no such function is defined in `source`.
    """
    lines = source.splitlines(keepends=True)
    index = _def_line(source, entry) - 1
    line = lines[index]
    body = line.rstrip("\r\n")
    lines[index] = body + START_MARKER + line[len(body) :]
    return "".join(lines)


def build_prompt(source: str, entry: str, frames: Sequence[Frame] = ()) -> str:
    """The raw-completion prompt: context, then any frames already known (e.g. the real call
    frame, so the model starts from the actual arguments). Complete it with stop tokens
    STOP_TOKENS to go frame by frame, or with END_OF_TEXT only to get the whole trace."""
    context = mark_entry(source, entry)
    return BEGIN_OF_TEXT + TRACE_CONTEXT_START + context + FRAME_SEP + render_trace(frames, False)


def _def_line(source: str, entry: str) -> int:
    tree = ast.parse(source)
    path = entry.split(".")
    scope: list[ast.stmt] = tree.body
    found: ast.AST | None = None
    for name in path:  # qualified lookup through classes and functions
        found = next((n for n in scope if _defines(n, name)), None)
        if found is None:
            break
        scope = getattr(found, "body", [])
    if found is None:  # fall back to the first definition with that bare name anywhere
        found = next((n for n in ast.walk(tree) if _defines(n, path[-1])), None)
    if not isinstance(found, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        raise ValueError(f"no function named {entry!r} in the source")
    return found.lineno  # 3.8+: the `def` line itself, not the first decorator


def _defines(node: ast.AST, name: str) -> bool:
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return isinstance(node, kinds) and node.name == name


# ---------------------------------------------------------------- JSON


def frames_to_json(frames: Iterable[Frame]) -> list[dict[str, Any]]:
    return [f.to_dict() for f in frames]


def frames_from_json(data: Any) -> list[Frame]:
    """Frames from a JSON list of frame objects, or a tracer document with a "frames" key."""
    if isinstance(data, Mapping):
        data = data.get("frames")
    if not isinstance(data, list):
        raise ValueError("expected a JSON list of frames (or an object with a 'frames' list)")
    return [Frame.from_dict(item) for item in data]


def load_frames(text: str, context: str | None = None) -> tuple[list[Frame], bool]:
    """Frames from either JSON or CWM token text (numbered against `context` when given);
    also says whether the trace is complete."""
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            pass
        else:
            cut = isinstance(data, Mapping) and bool(data.get("cut"))
            return frames_from_json(data), not cut
    parsed = parse_trace(text, context)
    return list(parsed.frames), parsed.ended


# ---------------------------------------------------------------- parsing model output


def parse_trace(text: str, context: str | None = None) -> ParsedTrace:
    """Best-effort frames from model output; never raises.

    Accepts a bare trace or one that still carries its prompt (the context is then taken
    from it and used to number lines), empty locals written as nothing, values written as
    bare JSON, a truncated last frame and a missing end token.
    """
    problems: list[str] = []
    text = text.replace(BEGIN_OF_TEXT, "")
    if TRACE_CONTEXT_START in text:
        _, _, rest = text.partition(TRACE_CONTEXT_START)
        prompt_context, sep, text = rest.partition(FRAME_SEP)
        context = prompt_context if sep else context
        text = text if sep else ""
    end = _END_RE.search(text)
    if end:
        text = text[: end.start()]
    starts = list(_EVENT_RE.finditer(text))
    if starts and text[: starts[0].start()].replace(FRAME_SEP, "").strip():
        problems.append("text before the first frame was ignored")
    frames: list[Frame] = []
    lines = _context_lines(context)
    for i, match in enumerate(starts):
        stop = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        body = text[match.end() : stop]
        event = _TOKEN_EVENTS[match.group()]
        try:
            frame = _parse_frame(event, body, problems, i)
        except Exception as exc:  # noqa: BLE001 - the parser must survive anything
            problems.append(f"frame {i}: unreadable ({type(exc).__name__})")
            continue
        if frame is not None:
            line = _line_number(lines, frame, frames)
            frames.append(Frame(frame.event, line, frame.source, frame.locals, frame.value))
    if not end:
        problems.append("no end token: the trace may be incomplete")
    return ParsedTrace(tuple(frames), bool(end), tuple(problems), context)


def _parse_frame(event: str, body: str, problems: list[str], i: int) -> Frame | None:
    complete = FRAME_SEP in body
    body = body.split(FRAME_SEP, 1)[0]
    if not complete:
        problems.append(f"frame {i}: truncated")
    head, sep, rest = body.partition(ACTION_SEP)
    if not sep:
        problems.append(f"frame {i}: no {ACTION_SEP}, dropped")
        return None
    value: str | None = None
    if event in ("return", "exception"):
        source, arg_sep, raw = rest.partition(ARG_SEP)
        value = _parse_value(raw) if arg_sep else None
        local_values: dict[str, str] = {}
    else:
        source = rest.split(ARG_SEP, 1)[0]
        local_values = _parse_locals(head, problems, i)
    return Frame(event, None, normalize_source(source), local_values, value)


def normalize_source(source: str) -> str:
    """A source line as recorded: no newline, no START_OF_TRACE marker."""
    source = source.rstrip("\r\n")
    if source.rstrip().endswith(START_MARKER.strip()):
        source = source.rstrip()[: -len(START_MARKER.strip())].rstrip()
    return source


def _parse_locals(text: str, problems: list[str], i: int) -> dict[str, str]:
    text = text.strip()
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    problems.append(f"frame {i}: locals are not a JSON object; kept the readable pairs")
    found = {}
    for match in _PAIR_RE.finditer(text):
        try:
            found[json.loads(f'"{match.group(1)}"')] = json.loads(f'"{match.group(2)}"')
        except ValueError:
            continue
    return found


def _parse_value(raw: str) -> str:
    raw = raw.strip()
    try:
        data = json.loads(raw)
    except ValueError:
        return raw
    return data if isinstance(data, str) else json.dumps(data)


def _context_lines(context: str | None) -> list[str]:
    if not context:
        return []
    return [normalize_source(line) for line in context.splitlines()]


def _line_number(lines: list[str], frame: Frame, earlier: list[Frame]) -> int | None:
    """Where `frame.source` sits in the context. Among equal lines: a return or exception
    stays on the previous frame's line; otherwise execution mostly moves forward, and a
    loop jumps back to the nearest line above."""
    wanted = frame.source.strip()
    if not wanted or not lines:
        return None
    hits = [n for n, line in enumerate(lines, 1) if line.strip() == wanted]
    if len(hits) <= 1:
        return hits[0] if hits else None
    previous = next((f.line for f in reversed(earlier) if f.line is not None), 0)
    if frame.is_exit and previous in hits:
        return previous
    after = [n for n in hits if n > previous]
    return after[0] if after else max(n for n in hits if n <= previous)
