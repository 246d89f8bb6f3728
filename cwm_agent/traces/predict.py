"""The model's predicted trace: CWM's raw-completion protocol, or a chat prompt for others.

Raw mode (`/v1/completions`) sends `format.build_prompt` (the source with the entry marked
`# << START_OF_TRACE`, optionally seeded with known frames, e.g. the real call frame) and
either lets the model run to `<|end_of_text|>` in one request, or asks for one frame at a
time (stop at `<|frame_sep|>`, append, ask again). Chat mode renders `prompts/trace_chat.j2`,
which asks for the same frames as plain text, and parses the reply with `format.parse_trace`.
Both are bounded by a frame limit and a token budget; usage and latency are recorded.
Given a ``Meter`` (a run's, for `--trace-prediction`), every reply counts there as it comes
back, and step-by-step prediction stops once one of its budgets is spent.
"""

from __future__ import annotations

import ast
import copy
import posixpath
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cwm_agent.costs import Meter
from cwm_agent.types import ModelReply, Usage

from .format import (
    END_OF_TEXT,
    FRAME_SEP,
    STOP_TOKENS,
    TRACE_CONTEXT_START,
    Frame,
    build_prompt,
    mark_entry,
    parse_trace,
    render_trace,
)

APIS = ("completions", "chat")
DEFAULT_MAX_FRAMES = 200
DEFAULT_MAX_TOKENS = 8192
FRAME_TOKENS = 1024  # budget of one request in step-by-step mode
# vLLM strips special tokens from completions unless told not to; the frame separators
# are special tokens in CWM's vocabulary, so without this the reply is unparseable.
# Keep CWM's separator tokens in the reply, and do not add a second <|begin_of_text|>
# (the prompt carries its own).
RAW_EXTRA_BODY = {"skip_special_tokens": False, "add_special_tokens": False}


@dataclass(frozen=True)
class Prediction:
    """A predicted trace (seed frames included) and what it cost."""

    frames: tuple[Frame, ...]
    ended: bool  # the model ended the trace itself (not cut by a limit)
    api: str
    step_by_step: bool
    requests: int
    usage: Usage
    seconds: float
    text: str = ""  # what the model generated, as received (frames only, prompt excluded)
    cut: str | None = None  # max_frames | max_tokens | budget when a limit stopped it
    problems: tuple[str, ...] = ()
    seeded: int = 0  # how many leading frames were given, not predicted

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": [f.to_dict() for f in self.frames],
            "ended": self.ended,
            "api": self.api,
            "step_by_step": self.step_by_step,
            "requests": self.requests,
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "seconds": round(self.seconds, 6),
            "cut": self.cut,
            "problems": list(self.problems),
            "seeded": self.seeded,
        }


@dataclass
class _Progress:
    requests: int = 0
    usage: Usage = field(default_factory=Usage)
    meter: Meter | None = None  # where each reply also counts (a run's tokens and budgets)

    def add(self, reply: ModelReply) -> ModelReply:
        self.requests += 1
        self.usage = self.usage + reply.usage
        if self.meter is not None:
            self.meter.add(reply.usage)
        return reply

    def spent(self) -> bool:
        return self.meter is not None and self.meter.exhausted() is not None


def predict_trace(
    model: Any,
    source: str,
    entry: str,
    *,
    seed: Sequence[Frame] = (),
    api: str = "completions",
    step_by_step: bool = False,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    temperature: float | None = 0.0,
    call: str | None = None,
    extra_sources: Sequence[tuple[str, str]] = (),
    meter: Meter | None = None,
) -> Prediction:
    """Ask `model` (an OpenAIModel or anything with `complete_text` / `complete`) for the
    trace of `entry` (a function name, `Class.method` allowed) defined in `source`.

    `extra_sources` are (path, text) pairs put before `source` in the context (the code the
    entry calls). Model errors propagate (ModelError); a malformed reply does not raise:
    whatever frames could be read are returned, with `problems`. `meter`: every reply
    counts there (as it comes back, so a failed prediction's requests count too).
    """
    if api not in APIS:
        raise ValueError(f"api must be one of {', '.join(APIS)}, got {api!r}")
    started = time.monotonic()
    progress = _Progress(meter=meter)
    if api == "chat":
        text, frames, ended, cut, problems = _chat(
            model, source, entry, seed, call, extra_sources, max_tokens, progress
        )
    else:
        prompt = build_prompt(source, entry, seed)
        extra = _context_prefix(extra_sources)
        prompt = prompt.replace(TRACE_CONTEXT_START, TRACE_CONTEXT_START + extra, 1)
        raw = _raw_model(model)
        if step_by_step:
            depth = sum({"call": 1, "return": -1}.get(f.event, 0) for f in seed)
            text, ended, cut = _steps(
                raw, prompt, depth, max_frames, max_tokens, temperature, progress
            )
        else:
            text, ended, cut = _whole(raw, prompt, max_tokens, temperature, progress)
        parsed = parse_trace(text, source)
        frames, problems = list(parsed.frames), list(parsed.problems)
        ended = ended or parsed.ended
        if ended:  # the end token is not in the text when the server treats it as EOS
            problems = [p for p in problems if not p.startswith("no end token")]
    if len(frames) > max_frames:
        frames, cut, ended = frames[:max_frames], "max_frames", False
    return Prediction(
        frames=tuple(seed) + tuple(frames),
        ended=ended,
        api=api,
        step_by_step=step_by_step and api == "completions",
        requests=progress.requests,
        usage=progress.usage,
        seconds=time.monotonic() - started,
        text=text,
        cut=cut,
        problems=tuple(problems),
        seeded=len(seed),
    )


def _raw_model(model: Any) -> Any:
    """A shallow copy of an OpenAIModel whose completions keep special tokens in the text."""
    extra = getattr(model, "extra_body", None)
    if not isinstance(extra, dict) or all(k in extra for k in RAW_EXTRA_BODY):
        return model
    clone = copy.copy(model)  # shares the HTTP client (connection reuse)
    clone.extra_body = {**RAW_EXTRA_BODY, **extra}
    return clone


def _whole(
    model: Any, prompt: str, max_tokens: int, temp: float | None, p: _Progress
) -> tuple[str, bool, str | None]:
    reply = p.add(
        model.complete_text(prompt, stop=[END_OF_TEXT], max_tokens=max_tokens, temperature=temp)
    )
    text, found_end = _cut_at_end(reply.content)
    if reply.finish_reason == "length" and not found_end:
        return text, False, "max_tokens"
    return text, True, None


def _steps(
    model: Any,
    prompt: str,
    depth: int,
    max_frames: int,
    max_tokens: int,
    temp: float | None,
    p: _Progress,
) -> tuple[str, bool, str | None]:
    """One frame per request. The trace ends when the model's next frame is empty (it
    produced the end token) or a `return` brings the call depth (`depth` after the seed
    frames) back to zero. An exception frame may or may not end a scope, so it never ends
    the trace by itself: the model's next (empty) reply does."""
    text = ""
    for _ in range(max_frames):
        budget = max_tokens - p.usage.completion_tokens
        if budget <= 0:
            return text, False, "max_tokens"
        if p.spent():  # the run's budget: no request past it
            return text, False, "budget"
        reply = p.add(
            model.complete_text(
                prompt + text,
                stop=list(STOP_TOKENS),
                max_tokens=min(FRAME_TOKENS, budget),
                temperature=temp,
            )
        )
        chunk, found_end = _cut_at_end(reply.content)
        chunk = chunk.split(FRAME_SEP, 1)[0]  # a server that ignored the stop string
        if not chunk.strip():
            return text, True, None
        text += chunk + FRAME_SEP
        new = parse_trace(chunk + FRAME_SEP).frames
        event = new[0].event if new else None
        depth += {"call": 1, "return": -1}.get(event or "", 0)
        if found_end or (event == "return" and depth <= 0):
            return text, True, None
        if reply.finish_reason == "length":
            return text, False, "max_tokens"
    return text, False, "max_frames"


def _cut_at_end(text: str) -> tuple[str, bool]:
    head, sep, _ = text.partition(END_OF_TEXT)
    return head, bool(sep)


def _chat(
    model: Any,
    source: str,
    entry: str,
    seed: Sequence[Frame],
    call: str | None,
    extra_sources: Sequence[tuple[str, str]],
    max_tokens: int,
    p: _Progress,
) -> tuple[str, list[Frame], bool, str | None, list[str]]:
    from cwm_agent.prompts import render

    context = _context_prefix(extra_sources) + mark_entry(source, entry)
    prompt = render(
        "trace_chat",
        context=context,
        entry=entry,
        call=call,
        seed=render_trace(seed, end=False) if seed else "",
    )
    reply = p.add(model.complete([{"role": "user", "content": prompt}], max_tokens=max_tokens))
    text = reply.content.rsplit("</think>", 1)[-1]
    parsed = parse_trace(text, source)
    frames, problems = list(parsed.frames), list(parsed.problems)
    if seed and len(frames) >= len(seed) and all(map(_same_step, frames, seed)):
        frames = frames[len(seed) :]  # the model repeated the frames it was given
    cut = "max_tokens" if reply.finish_reason == "length" and not parsed.ended else None
    return text, frames, parsed.ended, cut, problems


def _same_step(a: Frame, b: Frame) -> bool:
    return a.event == b.event and a.source.strip() == b.source.strip()


def _context_prefix(extra_sources: Sequence[tuple[str, str]]) -> str:
    parts = []
    for path, text in extra_sources:
        parts.append(f"# file: {path}\n{text.rstrip()}\n\n")
    return "".join(parts)


def import_candidates(source: str, path: str) -> list[str]:
    """Repository-relative files that may hold the modules `source` (at `path`) imports:
    `a/b.py` and `a/b/__init__.py` for `import a.b`, plus `a/b/c.py` for `from a.b import
    c`, relative imports resolved against the file's folder. Best effort, in source order."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    here = posixpath.dirname(path)
    found: list[str] = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name.replace(".", "/") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (node.module or "").replace(".", "/")
            if node.level:
                up = here
                for _ in range(node.level - 1):
                    up = posixpath.dirname(up)
                base = posixpath.join(up, base) if base else up
            modules = [base] if base else []
            modules += [posixpath.join(base, a.name) for a in node.names if a.name != "*"]
        for module in modules:
            for candidate in (f"{module}.py", f"{module}/__init__.py"):
                if candidate not in found and candidate != path:
                    found.append(candidate)
    return found
