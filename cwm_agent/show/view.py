"""A trajectory document read into the records both views (terminal, HTML) display.

Tolerant by design: a trajectory of a run still in progress, of an older format or with
fields missing still shows what it has; a field of the wrong type is ``NotATrajectory``
(``fields.py``). Every string is made visible (escape and bidirectional controls spelled
out) before either view gets it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from cwm_agent.console import visible
from cwm_agent.costs import usd
from cwm_agent.patch_size import human_size
from cwm_agent.show import fields

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
    diff_file: str = ""  # where a working-tree diff too large for the record went
    diff_note: str = ""  # what to say about it


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


def _cleaned(value: Any, limit: int | None) -> Any:
    """Every string inside ``value`` (keys too) made visible (``console.visible``: a
    trajectory is untrusted text) and, with ``limit``, its long lines cut."""
    if isinstance(value, str):
        value = visible(value)
        return value if limit is None else cut_long_lines(value, limit)
    if isinstance(value, dict):
        return {_cleaned(key, None): _cleaned(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [_cleaned(item, limit) for item in value]
    return value


def load_view(data: dict[str, Any], max_line: int | None = None) -> RunView:
    """The view of a trajectory; with ``max_line``, lines longer than that are cut.

    Raises ``NotATrajectory`` naming a field of the wrong type.
    """
    data = _cleaned(data, max_line)
    messages = [
        fields.entry(m, f"messages[{i}]") for i, m in enumerate(fields.items(data, "messages", ""))
    ]
    assistant = [m for m in messages if m.get("role") == "assistant"]
    raw_steps = fields.items(data, "steps", "")
    steps = [
        _step(fields.entry(raw, f"step {i + 1}"), assistant[i] if i < len(assistant) else {}, i + 1)
        for i, raw in enumerate(raw_steps)
    ]
    usage = fields.counts(data, "usage", "")
    return RunView(
        run_id=fields.label(data, "run_id"),
        issue=fields.label(data, "issue", ""),
        facts=_facts(data, len(steps), usage),
        status=fields.label(data, "exit_status", "unknown"),
        exit_code=fields.integer(data, "exit_code", ""),
        reason=fields.label(data, "reason", ""),
        steps=steps,
        patch=fields.text(data, "patch", ""),
        working_tree_diff=fields.text(data, "working_tree_diff", ""),
        submissions=len(fields.items(data, "submissions", "")),
        usage=usage,
        diff_file=fields.text(data, "working_tree_diff_file", "") or "",
        diff_note=_diff_note(data),
    )


def _diff_note(data: dict[str, Any]) -> str:
    """What to say of a working-tree diff kept beside the trajectory (``--max-patch-kb``)."""
    size = fields.integer(data, "working_tree_diff_bytes", "") or 0
    return (
        f"no patch; the working-tree diff at the end ({human_size(size)}, more than a "
        "trajectory keeps) is in this file:"
    )


def _step(raw: dict[str, Any], message: dict[str, Any], position: int) -> StepView:
    where = f"step {position}: "
    reasoning, rest = split_reply(fields.label(raw, "reply", ""))
    reasoning = fields.label(message, "reasoning_content", "") or reasoning
    action = fields.obj(raw, "action", where)
    tool = fields.text(action, "tool", where + "action.")
    return StepView(
        number=fields.integer(raw, "step", where) or position,
        reasoning=reasoning,
        text="" if tool else rest,
        tool=tool,
        args={str(k): str(v) for k, v in fields.obj(action, "args", where + "action.").items()},
        observation=_observation(raw, where),
        format_error=fields.text(raw, "format_error", where),
        model_seconds=fields.number(raw, "model_seconds", where) or 0.0,
        tool_seconds=fields.number(raw, "tool_seconds", where) or 0.0,
        usage=fields.counts(raw, "usage", where),
        finish_reason=fields.text(raw, "finish_reason", where),
        hooks=fields.obj(raw, "hooks", where),
    )


def _observation(raw: dict[str, Any], where: str) -> dict[str, Any] | None:
    """The step's observation with every member the views use of a usable type."""
    if raw.get("observation") is None:
        return None
    found = fields.obj(raw, "observation", where)
    where += "observation."
    return {
        "output": fields.label(found, "output", ""),
        "ok": bool(found.get("ok", True)),
        "exit_code": fields.integer(found, "exit_code", where),
        "timed_out": bool(found.get("timed_out")),
        "duration": fields.number(found, "duration", where),
    }


def _facts(data: dict[str, Any], steps: int, usage: dict[str, int]) -> list[tuple[str, str]]:
    config = fields.obj(data, "config", "")
    model = fields.obj(config, "model", "config.")
    agent = fields.obj(config, "agent", "config.")
    runtime = fields.label(config, "runtime")
    if config.get("image"):
        runtime += f" ({config['image']})"
    prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    facts = [
        ("model", fields.label(model, "name")),
        ("endpoint", fields.label(model, "base_url", "(SDK default)")),
        ("tool format", fields.label(agent, "tool_format")),
        ("runtime", runtime),
        ("repository", fields.label(config, "repo")),
        ("steps", f"{steps} of {fields.label(agent, 'max_steps')}"),
        ("tokens", f"{prompt:,} prompt + {completion:,} completion" + _cached(usage)),
    ]
    cost = fields.number(data, "cost_usd", "")
    if cost is not None:
        facts.append(("cost", _cost(cost, model)))
    started = fields.number(data, "started_at", "")
    if started:
        when = dt.datetime.fromtimestamp(started) if 0 < started < 1e11 else None
        facts.append(("started", when.strftime("%Y-%m-%d %H:%M:%S") if when else str(started)))
    wall = fields.number(data, "wall_seconds", "")
    if wall is not None:
        facts.append(("wall time", f"{wall:.1f} s"))
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
