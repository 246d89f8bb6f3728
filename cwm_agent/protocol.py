"""Reading the model's replies (both tool formats) and writing tool results back.

CWM format: reasoning, ``</think>``, then exactly one ``<tool: NAME>\\nBODY\\n</tool>``.
OpenAI format: native function calls (``ToolCall``), first one executed.

Where problems are reported, as in CWM's environment: anything wrong with the *shape* of
a reply (two ``</think>``, no call or several, an unknown tool, an unclosed tag, an empty
body) is a ``FormatError`` raised here, which the loop answers with a user message.  What
the body of a well-shaped call says (an edit body without its markers, a missing file, a
search text not found) is the tool's business: its error comes back as that tool's
result, with the budget (``tools.py``, ``editing.py``).  ``FormatError`` messages do not
carry the ``FormatError:`` prefix; the agent loop adds it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .editing import parse_edit_body
from .errors import FormatError, ToolError
from .types import TOOL_NAMES, Action, ToolCall

CHARS_PER_TOKEN = 4  # a rough estimate, used where no tokenizer or server count is at hand
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
TOOL_CLOSE = "</tool>"
# Lenient about white space around the name (CWM writes exactly one space); the name is
# checked later, so every reply CWM's own parser accepts opens a call here too.
_TOOL_OPEN = re.compile(r"<tool:\s*([^<>\n]{0,80}?)\s*>")

_SURROGATE = re.compile("[\ud800-\udfff]")

CALL_EXAMPLE = (
    "Expected format: your reasoning, then </think>, then exactly one tool call, e.g.\n"
    "<tool: bash>\nls -la\n</tool>\n"
    f"Available tools: {', '.join(TOOL_NAMES)}."
)
_EXAMPLES = {
    "create": "Expected create format:\n<tool: create>\npath/to/new_file.py\nfile content\n</tool>",
    "submit": "Expected submit format:\n<tool: submit>\nfix.patch\n</tool>",
}


def _format_error(problem: str, example: str = CALL_EXAMPLE) -> FormatError:
    return FormatError(f"{problem}\n\n{example}")


def _describe(text: str, limit: int = 60) -> str:
    """A short, printable quote of model text for error messages."""
    text = text if len(text) <= limit else text[:limit] + "..."
    return repr(text)


# --------------------------------------------------------------------------- CWM format


def parse_cwm_reply(text: str) -> tuple[str, Action | None]:
    """Split a CWM-format reply into (reasoning, action).

    Returns ``(reasoning, None)`` when the reply has no tool call: the caller decides
    whether that is the final summary or a format error.  Raises ``FormatError`` for
    two ``</think>``, an unclosed ``<think>``, several calls, an unknown tool, an
    unclosed tag or an empty body.  The body is the text between the line of the
    opening tag and the line of ``</tool>``, byte for byte.
    """
    reasoning, after = _split_think(text)
    opens = list(_TOOL_OPEN.finditer(after))
    if not opens:
        if TOOL_CLOSE in after or "<tool:" in after:
            raise _format_error("Found a malformed tool tag (no valid '<tool: NAME>' opening).")
        return reasoning, None
    if len(opens) > 1:
        names = ", ".join(_describe(m.group(1).strip(), 20) for m in opens[:5])
        raise _format_error(
            f"Found {len(opens)} tool calls ({names}); send exactly one tool call per reply."
        )
    opening = opens[0]
    close_at = after.find(TOOL_CLOSE, opening.end())
    if close_at < 0:
        raise _format_error("The tool call is not closed: '</tool>' is missing after the body.")
    name = opening.group(1).strip()
    if name not in TOOL_NAMES:
        raise _format_error(f"Unknown tool {_describe(name, 30)}.")
    body = _inner(after[opening.end() : close_at])
    if not body.strip():
        raise _format_error(
            f"The {name} call has an empty body.", _EXAMPLES.get(name, CALL_EXAMPLE)
        )
    return reasoning, Action(tool=name, args=body_to_args(name, body), body=body)


def _split_think(text: str) -> tuple[str, str]:
    """(reasoning, text after </think>); no think section means no reasoning."""
    closes = text.count(THINK_CLOSE)
    if closes > 1:
        raise _format_error(f"Found {closes} '{THINK_CLOSE}' tags; close your reasoning once.")
    if closes == 0:
        if text.lstrip().startswith(THINK_OPEN):
            raise _format_error(f"The reasoning was opened with {THINK_OPEN} but never closed.")
        return "", text
    reasoning, after = text.split(THINK_CLOSE, 1)
    reasoning = reasoning.strip()
    if reasoning.startswith(THINK_OPEN):
        reasoning = reasoning[len(THINK_OPEN) :].strip()
    return reasoning, after


def _inner(text: str) -> str:
    """The body: the line break after the opening tag and the one before ``</tool>`` go.

    Only a "\\n" ends the body (a "\\r" before it stays, as in CWM); after the opening
    tag a "\\r\\n" is tolerated too.
    """
    if text.startswith("\n"):
        text = text[1:]
    elif text.startswith("\r\n"):
        text = text[2:]
    return text[:-1] if text.endswith("\n") else text


def body_to_args(tool: str, body: str) -> dict[str, str]:
    """The named arguments (shared with the openai format) a CWM tool body stands for.

    Never raises: an edit body without its markers keeps the raw ``body`` (the edit
    tool reports the problem as its result); create and submit take the body as CWM's
    plugins do (first line the path; the whole body the path).
    """
    if tool == "bash":
        return {"command": body}
    if tool == "edit":
        try:
            return parse_edit_body(body)
        except ToolError:
            return {"path": body.split("\n", 1)[0].strip(), "body": body}
    if tool == "create":
        path, _, content = body.partition("\n")
        return {"path": path.strip(), "content": content}
    return {"path": body.strip()}  # submit


# ------------------------------------------------------------------------ OpenAI format

_REQUIRED = {
    "bash": ("command",),
    "edit": ("path", "search", "replace"),
    "create": ("path", "content"),
    "submit": (),
}


def parse_openai_calls(
    tool_calls: tuple[ToolCall, ...],
) -> tuple[Action | None, list[tuple[str, str]]]:
    """First native call -> Action; every other call (or a bad first one) -> error result.

    The error list holds ``(call_id, message)`` pairs the caller must answer as
    ``tool`` messages so that each ``tool_call_id`` gets a result.  ``(None, [])``
    means the reply had no calls at all (a final answer).
    """
    if not tool_calls:
        return None, []
    first, *extra = tool_calls
    errors = [
        (
            call.id,
            f"Error: only one tool call per reply is executed; this {call.name!r} call "
            "was skipped. Make it again in your next reply if you still need it.",
        )
        for call in extra
    ]
    try:
        action: Action | None = _call_to_action(first)
    except FormatError as exc:
        action = None
        errors.insert(0, (first.id, f"Error: {exc}"))
    return action, errors


def _call_to_action(call: ToolCall) -> Action:
    if call.name not in _REQUIRED:
        raise FormatError(f"unknown tool {call.name!r}; the tools are {', '.join(TOOL_NAMES)}.")
    try:
        raw: Any = json.loads(call.arguments or "{}")
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"the arguments of {call.name} are not valid JSON ({exc}).") from None
    if not isinstance(raw, dict):
        raise FormatError(f"the arguments of {call.name} must be a JSON object.")
    args: dict[str, str] = {}
    for key in _REQUIRED[call.name]:
        value = raw.get(key)
        if not isinstance(value, str):
            raise FormatError(
                f"{call.name} needs the string argument {key!r} "
                f"(required: {', '.join(_REQUIRED[call.name])})."
            )
        args[key] = value
    path = raw.get("path")
    if call.name == "submit" and isinstance(path, str) and path.strip():
        args["path"] = path.strip()
    return Action(tool=call.name, args=args, call_id=call.id)


# name -> (description, {argument: description}); required arguments come from _REQUIRED.
_TOOL_SPECS = {
    "bash": (
        "Run non-interactive bash in the persistent session (cd/export carry over).",
        {"command": "The command(s) to run."},
    ),
    "edit": (
        "Replace the one occurrence of a text in a file; it must start at the beginning of "
        "a line (indentation included) and may end within a line.",
        {
            "path": "File to edit (absolute, or relative to the shell's current directory).",
            "search": "Exact text to find, from the start of a line; must occur exactly once.",
            "replace": "Text to put in its place.",
        },
    ),
    "create": (
        "Create a new file (it must not exist; its directory must).",
        {"path": "File to create.", "content": "Full file content, written as given."},
    ),
    "submit": (
        "Submit a patch file in git diff format; without path, the working-tree diff.",
        {"path": "Patch file, e.g. made with `git diff > fix.patch`."},
    ),
}

OPENAI_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {k: {"type": "string", "description": v} for k, v in params.items()},
                "required": list(_REQUIRED[name]),
                "additionalProperties": False,
            },
        },
    }
    for name, (description, params) in _TOOL_SPECS.items()
]


# ------------------------------------------------------------------------- tool results


def clean_text(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD, so it always encodes as UTF-8.

    They come from JSON ``\\ud800`` escapes in a server's reply and from bytes that are
    not UTF-8 decoded with ``surrogateescape``; left in, they crash the next request
    and the trajectory write.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def render_tool_result(output: str, remaining_turns: int, remaining_tokens: int) -> str:
    """The content of a ``tool`` message: the output as it is, then the remaining budget.

    As in CWM, nothing is stripped: an output ending in a newline leaves a blank line
    before ``</output>``, an empty one an empty line.
    """
    return (
        f"<output>\n{output}\n</output>\n\n"
        f"<budget>\n* Remaining turns: {remaining_turns}\n"
        f"* Remaining tokens: {remaining_tokens}\n</budget>"
    )


def truncate_middle(text: str, limit: int) -> str:
    """Keep the head and the tail of ``text`` (about ``limit`` characters in all).

    Cuts fall on line boundaries when that keeps at least half of each side, so
    the model sees whole lines; the marker says how much was cut.
    """
    if len(text) <= limit:
        return text
    limit = max(limit, 0)
    head_end = _snap(text, limit // 2, forward=False)
    tail_start = _snap(text, len(text) - (limit - limit // 2), forward=True)
    tail_start = max(tail_start, head_end)
    cut = text[head_end:tail_start]
    marker = f"[... {len(cut):,} characters ({cut.count(chr(10)):,} lines) cut ...]"
    head, tail = text[:head_end], text[tail_start:]
    sep_before = "" if not head or head.endswith("\n") else "\n"
    return f"{head}{sep_before}{marker}\n{tail}"


def _snap(text: str, pos: int, forward: bool) -> int:
    """Move a cut position to a line boundary if one is near enough."""
    if forward:
        newline = text.find("\n", pos, pos + max((len(text) - pos) // 2, 1))
        return newline + 1 if newline >= 0 else pos
    newline = text.rfind("\n", pos // 2, pos)
    return newline + 1 if newline >= 0 else pos
