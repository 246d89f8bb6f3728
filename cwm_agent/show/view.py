"""A trajectory document read into the records both views (terminal, HTML) display.

Tolerant by design: a trajectory of a run still in progress, of an older format or with
fields missing still shows what it has.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from cwm_agent.costs import usd

THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class StepView:
    number: int
    reasoning: str
    text: str  # the reply outside reasoning and tool call (the final summary, a bad reply)
    tool: str | None
    args: dict[str, str]
    observation: dict[str, Any] | None
    format_error: str | None
    model_seconds: float
    tool_seconds: float
    usage: dict[str, int]
    finish_reason: str | None
    hooks: dict[str, Any]

    @property
    def summary(self) -> str:
        """One line for indexes: the command or path, the format error, or the final text."""
        if self.tool:
            body = self.args.get("command") or self.args.get("path") or ""
            if self.tool == "submit" and not body:
                body = "(working-tree diff)"
            return " ".join(body.split())
        if self.format_error:
            return "format error: " + " ".join(self.format_error.split())
        return " ".join(self.text.split()) or "(empty reply)"

    @property
    def kind(self) -> str:
        return self.tool or ("format-error" if self.format_error else "final")

    @property
    def tokens(self) -> int:
        return int(self.usage.get("prompt_tokens", 0)) + int(self.usage.get("completion_tokens", 0))

    @property
    def outcome(self) -> str:
        """`exit 0`, `exit 1`, `timed out`, `failed`, or '' for steps without a result."""
        obs = self.observation
        if obs is None:
            return ""
        if obs.get("timed_out"):
            return "timed out"
        if obs.get("exit_code") is not None:
            return f"exit {obs['exit_code']}"
        return "ok" if obs.get("ok", True) else "failed"


@dataclass(frozen=True)
class RunView:
    run_id: str
    issue: str
    facts: list[tuple[str, str]]  # (label, value) for the header
    status: str
    exit_code: int | None
    reason: str
    steps: list[StepView]
    patch: str | None
    working_tree_diff: str | None
    submissions: int
    usage: dict[str, int] = field(default_factory=dict)


def split_reply(content: str) -> tuple[str, str]:
    """(reasoning, the rest) of a CWM-style reply; no ``</think>`` means no reasoning."""
    if THINK_CLOSE not in content:
        return "", content.strip()
    reasoning, _, rest = content.partition(THINK_CLOSE)
    return reasoning.replace("<think>", "", 1).strip(), rest.strip()


def cut_long_lines(text: str, limit: int) -> str:
    """Each line longer than ``limit`` keeps its head and tail around a marker saying how
    much was cut: one 5 MB line would otherwise fill a terminal or stall a browser."""
    if len(text) <= limit:  # no line can be longer: the common case costs one len()
        return text
    head, tail = limit * 3 // 4, limit // 4
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if len(line) > limit:
            cut = len(line) - head - tail
            lines[i] = (
                f"{line[:head]} … {cut:,} characters cut (--full keeps them) … {line[-tail:]}"
            )
    return "\n".join(lines)


def _cut_all(value: Any, limit: int) -> Any:
    """Every string inside ``value`` (dicts, lists) with its long lines cut."""
    if isinstance(value, str):
        return cut_long_lines(value, limit)
    if isinstance(value, dict):
        return {key: _cut_all(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut_all(item, limit) for item in value]
    return value


def load_view(data: dict[str, Any], max_line: int | None = None) -> RunView:
    """The view of a trajectory; with ``max_line``, lines longer than that are cut."""
    if max_line is not None:
        data = _cut_all(data, max_line)
    assistant = [m for m in data.get("messages", []) if m.get("role") == "assistant"]
    steps = [
        _step(raw, assistant[i] if i < len(assistant) else {})
        for i, raw in enumerate(data.get("steps", []))
    ]
    usage = data.get("usage") or {}
    return RunView(
        run_id=str(data.get("run_id", "?")),
        issue=str(data.get("issue", "")),
        facts=_facts(data, len(steps), usage),
        status=str(data.get("exit_status", "unknown")),
        exit_code=data.get("exit_code"),
        reason=str(data.get("reason", "")),
        steps=steps,
        patch=data.get("patch"),
        working_tree_diff=data.get("working_tree_diff"),
        submissions=len(data.get("submissions") or []),
        usage=usage,
    )


def _step(raw: dict[str, Any], message: dict[str, Any]) -> StepView:
    reasoning, rest = split_reply(str(raw.get("reply") or ""))
    reasoning = str(message.get("reasoning_content") or "") or reasoning
    action = raw.get("action") or {}
    tool = action.get("tool")
    return StepView(
        number=int(raw.get("step", 0)),
        reasoning=reasoning,
        text="" if tool else rest,
        tool=tool,
        args={str(k): str(v) for k, v in (action.get("args") or {}).items()},
        observation=raw.get("observation"),
        format_error=raw.get("format_error"),
        model_seconds=float(raw.get("model_seconds") or 0.0),
        tool_seconds=float(raw.get("tool_seconds") or 0.0),
        usage=raw.get("usage") or {},
        finish_reason=raw.get("finish_reason"),
        hooks=raw.get("hooks") or {},
    )


def _facts(data: dict[str, Any], steps: int, usage: dict[str, Any]) -> list[tuple[str, str]]:
    config = data.get("config") or {}
    model = config.get("model") or {}
    agent = config.get("agent") or {}
    runtime = str(config.get("runtime", "?"))
    if config.get("image"):
        runtime += f" ({config['image']})"
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    facts = [
        ("model", str(model.get("name", "?"))),
        ("endpoint", str(model.get("base_url") or "(SDK default)")),
        ("tool format", str(agent.get("tool_format", "?"))),
        ("runtime", runtime),
        ("repository", str(config.get("repo", "?"))),
        ("steps", f"{steps} of {agent.get('max_steps', '?')}"),
        ("tokens", f"{prompt:,} prompt + {completion:,} completion" + _cached(usage)),
    ]
    if isinstance(data.get("cost_usd"), (int, float)):
        facts.append(("cost", _cost(data["cost_usd"], model)))
    if data.get("started_at"):
        started = dt.datetime.fromtimestamp(float(data["started_at"]))
        facts.append(("started", started.strftime("%Y-%m-%d %H:%M:%S")))
    if data.get("wall_seconds") is not None:
        facts.append(("wall time", f"{float(data['wall_seconds']):.1f} s"))
    return facts


def _cached(usage: dict[str, Any]) -> str:
    cached = usage.get("cached_tokens")
    return f" ({cached:,} prompt tokens cached)" if isinstance(cached, int) and cached else ""


def _cost(cost: float, model: dict[str, Any]) -> str:
    """The run's cost and the prices it was counted at (USD per million tokens)."""
    prices = [
        f"{label} {model[key]:g}"
        for label, key in (
            ("input", "price_input"),
            ("output", "price_output"),
            ("cached input", "price_cached_input"),
        )  # fmt: skip
        if isinstance(model.get(key), (int, float))
    ]
    return f"{usd(cost)} (USD per 1M tokens: {', '.join(prices)})" if prices else usd(cost)


def hook_parts(record: Any) -> tuple[str, str, list[tuple[str, str]], str]:
    """A hook record as (headline, summary, scalar rows, the nested rest as JSON).

    Hook records (trace consultation, ...) are free-form JSON: a ``headline`` string leads,
    a ``summary`` string follows as text, scalar fields become rows, nested values JSON.
    """
    if not isinstance(record, dict):
        return "", "", [], json.dumps(record, indent=1, ensure_ascii=False, default=str)
    texts = {
        key: record[key] for key in ("headline", "summary") if isinstance(record.get(key), str)
    }
    rows: list[tuple[str, str]] = []
    nested: dict[str, Any] = {}
    for key, value in record.items():
        if key in texts:
            continue
        if isinstance(value, (dict, list)):
            nested[key] = value
        else:
            rows.append((str(key), "-" if value is None else str(value)))
    rest = json.dumps(nested, indent=1, ensure_ascii=False, default=str) if nested else ""
    return texts.get("headline", ""), texts.get("summary", ""), rows, rest


def diff_lines(patch: str) -> list[tuple[str, str]]:
    """(css class, line) per line of a unified diff: add, del, hunk, meta or ctx."""
    lines = []
    for line in patch.splitlines():
        if line.startswith(("+++ ", "--- ", "diff --git", "index ", "new file", "deleted file")):
            kind = "meta"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        lines.append((kind, line))
    return lines


def edit_diff(args: dict[str, str]) -> str:
    """An edit action's SEARCH/REPLACE shown as -/+ lines (a malformed one: its body)."""
    if "search" not in args and "body" in args:
        return args["body"]
    old = [f"-{line}" for line in args.get("search", "").splitlines()]
    new = [f"+{line}" for line in args.get("replace", "").splitlines()]
    return "\n".join(old + new)
