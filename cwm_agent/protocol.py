"""Reading the model's replies (both tool formats) and writing tool results back.

CWM format: reasoning, ``</think>``, then exactly one ``<tool: NAME>\\nBODY\\n</tool>``.
OpenAI format: native function calls (``ToolCall``), first one executed.

Where problems are reported: anything wrong with the *shape* of a call (tags, tool
name, empty body, an edit body without a path, markers or with several blocks) is a
``FormatError`` raised here; problems that need the file system (missing file,
search text not found or ambiguous, empty search) are ``ToolError``s raised when
the tool runs (``tools.py``).  ``FormatError`` messages do not carry the
``FormatError:`` prefix; the agent loop adds it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import FormatError
from .types import TOOL_NAMES, Action, ToolCall

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
TOOL_CLOSE = "</tool>"
# Lenient about spaces inside the tag (CWM writes exactly one); the name is checked later.
_TOOL_OPEN = re.compile(r"<tool:[ \t]*([^<>\n]{0,80}?)[ \t]*>")

_SURROGATE = re.compile("[\ud800-\udfff]")

SEARCH_MARK = "<<<<<<< SEARCH"
DIVIDER_MARK = "======="
REPLACE_MARK = ">>>>>>> REPLACE"

CALL_EXAMPLE = (
    "Expected format: your reasoning, then </think>, then exactly one tool call, e.g.\n"
    "<tool: bash>\nls -la\n</tool>\n"
    f"Available tools: {', '.join(TOOL_NAMES)}."
)
EDIT_EXAMPLE = (
    "Expected edit format:\n<tool: edit>\npath/to/file.py\n"
    f"{SEARCH_MARK}\nexact lines to find\n{DIVIDER_MARK}\nlines to put instead\n"
    f"{REPLACE_MARK}\n</tool>"
)
_EXAMPLES = {
    "create": "Expected create format:\n<tool: create>\npath/to/new_file.py\nfile content\n</tool>",
    "submit": "Expected submit format:\n<tool: submit>\nfix.patch\n</tool>",
    "edit": EDIT_EXAMPLE,
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
    unclosed tag, an empty body or a malformed edit/create/submit body.
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
    body = _strip_one_newline(after[opening.end() : close_at])
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


def _strip_one_newline(body: str) -> str:
    """Drop the single newline after the open tag and before the close tag, nothing else."""
    return re.sub(r"\r?\n\Z", "", re.sub(r"\A\r?\n", "", body), count=1)


def body_to_args(tool: str, body: str) -> dict[str, str]:
    """Turn a CWM tool body into the named arguments shared with the openai format."""
    if tool == "bash":
        return {"command": body}
    if tool == "edit":
        return parse_edit_body(body)
    if tool == "create":
        path, _, content = body.partition("\n")
        path = path.strip()
        if not path:
            raise _format_error(
                "The create body must start with the file path.", _EXAMPLES["create"]
            )
        return {"path": path, "content": content}
    path = body.strip()  # submit
    if "\n" in path:
        raise _format_error("The submit body must be a single path.", _EXAMPLES["submit"])
    return {"path": path}


def parse_edit_body(body: str) -> dict[str, str]:
    """``PATH\\n<<<<<<< SEARCH\\n...\\n=======\\n...\\n>>>>>>> REPLACE`` -> args.

    ``search``/``replace`` hold whole lines, each ending in a newline ("" = no lines),
    so a deleted block and a single blank line stay distinguishable.
    """
    lines = body.split("\n")
    path = lines[0].strip()
    if not path or path == SEARCH_MARK:
        raise _format_error("The edit body must start with the file path.", EDIT_EXAMPLE)
    marks = [line.rstrip() for line in lines]
    searches = [i for i, m in enumerate(marks) if m == SEARCH_MARK]
    replaces = [i for i, m in enumerate(marks) if m == REPLACE_MARK]
    if not searches or not replaces:
        missing = SEARCH_MARK if not searches else REPLACE_MARK
        raise _format_error(f"The edit body has no '{missing}' line.", EDIT_EXAMPLE)
    if len(searches) > 1 or len(replaces) > 1:
        raise _format_error(
            f"The edit body has {max(len(searches), len(replaces))} SEARCH/REPLACE blocks; "
            "only one block per edit call is allowed (make one edit call per change).",
            EDIT_EXAMPLE,
        )
    start, end = searches[0], replaces[0]
    dividers = [i for i in range(start + 1, end) if marks[i] == DIVIDER_MARK]
    if end < start or not dividers:
        raise _format_error(
            f"The edit body needs '{SEARCH_MARK}', then '{DIVIDER_MARK}', then '{REPLACE_MARK}'.",
            EDIT_EXAMPLE,
        )
    if len(dividers) > 1:
        raise _format_error(
            f"The edit block has {len(dividers)} '{DIVIDER_MARK}' lines, so it is ambiguous where "
            "the search text ends; make the search text avoid such a line.",
            EDIT_EXAMPLE,
        )
    if any(line.strip() for line in lines[1:start] + lines[end + 1 :]):
        raise _format_error(
            "The edit body has text outside the SEARCH/REPLACE block.", EDIT_EXAMPLE
        )
    divider = dividers[0]
    return {
        "path": path,
        "search": _join_lines(lines[start + 1 : divider]),
        "replace": _join_lines(lines[divider + 1 : end]),
    }


def _join_lines(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


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
        "Replace one exact run of whole lines (indentation included) in a file.",
        {
            "path": "File to edit.",
            "search": "Exact consecutive lines to find; must occur exactly once.",
            "replace": "Lines to put in their place.",
        },
    ),
    "create": (
        "Create a new file (it must not exist; its directory must).",
        {"path": "File to create.", "content": "Full file content."},
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
    """The content of a ``tool`` message: the output plus the remaining budget."""
    return (
        f"<output>\n{output.rstrip(chr(10))}\n</output>\n\n"
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
