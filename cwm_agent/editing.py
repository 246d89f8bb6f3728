"""The file tools, edit and create, with the semantics of CWM's own plugins.

edit: the body is ``PATH``, a ``<<<<<<< SEARCH`` line, the search text, a ``=======``
line, the replacement, a ``>>>>>>> REPLACE`` line. As in CWM, the search text ends at
the first ``=======`` line after it and the replacement at the first line that starts
with ``>>>>>>> REPLACE``; the path is the line right before ``<<<<<<< SEARCH``, and text
before it or after the block is not looked at. The search text must occur exactly once
*starting at the beginning of a line* (indentation included); it may end within a line,
so ``def add(a, b)`` finds ``def add(a, b):``. The replacement takes its place, byte for
byte. Where CWM would fail, the errors here say more (which marker is missing, the line
numbers of every match, a hint when only the indentation differs).

Deliberate differences (docs/CWM.md): a CRLF file stays CRLF (CWM's text-mode rewrite
turns it to LF), bytes that are not UTF-8 survive, binary files and an empty search text
are refused, and a path's surrounding white space is dropped.

create: the first line of the body is the path, the rest the content, written exactly as
given (no final newline is added).

Relative paths are relative to the shell session's current directory (CWM's tools run
inside the session); the runtime still refuses anything outside the repository.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Callable

from .errors import ToolError
from .patch_size import human_size
from .types import FileTooLarge, Runtime

SEARCH_MARK = "<<<<<<< SEARCH"
DIVIDER_MARK = "======="
REPLACE_MARK = ">>>>>>> REPLACE"
SNIPPET_CONTEXT = 8  # lines shown before and after an edited region, as CWM shows
MAX_LISTED = 10  # line numbers listed in an error before "..."
# The largest file `edit` reads: it holds the file, its text and the new text at once, so a
# file of gigabytes a command wrote must not reach it (sources are far below this).
MAX_EDIT_BYTES = 16 << 20

EDIT_EXAMPLE = (
    "Expected edit format:\n<tool: edit>\npath/to/file.py\n"
    f"{SEARCH_MARK}\nexact text to find, from the start of a line\n{DIVIDER_MARK}\n"
    f"text to put instead\n{REPLACE_MARK}\n</tool>"
)


# ----------------------------------------------------------------------------- the body


def parse_edit_body(body: str) -> dict[str, str]:
    """``{"path", "search", "replace"}`` from a CWM edit body; ``ToolError`` says why not."""
    lines = body.split("\n") + [""]  # the plugin reads the body plus a final newline
    blocks = []
    start = 1  # the first block needs a path line before its SEARCH line
    while (block := _next_block(lines, start)) is not None:
        blocks.append(block)
        start = block[2] + 1
    if not blocks:
        raise ToolError(f"No change was made: {_what_is_missing(lines)}\n\n{EDIT_EXAMPLE}")
    if len(blocks) > 1:
        raise ToolError(
            f"No change was made: the edit body has {len(blocks)} SEARCH/REPLACE blocks; "
            "only one block per edit call is allowed (make one edit call per change)."
            f"\n\n{EDIT_EXAMPLE}"
        )
    search_at, divider, replace_at = blocks[0]
    return {
        "path": lines[search_at - 1].strip(),
        "search": "\n".join(lines[search_at + 1 : divider]),
        "replace": "\n".join(lines[divider + 1 : replace_at]),
    }


def _next_block(lines: list[str], start: int) -> tuple[int, int, int] | None:
    """Line indexes (SEARCH, divider, REPLACE) of the first complete block from ``start``.

    The divider is the first ``=======`` line at least two lines below SEARCH (the text
    between is the search text, so an empty one is one empty line); the REPLACE line
    likewise at least two lines below the divider.
    """
    last = len(lines) - 1  # lines[last] is what follows the final newline
    for s in range(start, last):
        if lines[s] != SEARCH_MARK:
            continue
        divider = _first(lines, s + 2, last, lambda line: line == DIVIDER_MARK)
        if divider is None:
            return None  # no later SEARCH line can have a divider either
        end = _first(lines, divider + 2, last + 1, lambda line: line.startswith(REPLACE_MARK))
        return None if end is None else (s, divider, end)
    return None


def _first(lines: list[str], start: int, stop: int, test: Callable[[str], bool]) -> int | None:
    return next((i for i in range(start, stop) if test(lines[i])), None)


def _what_is_missing(lines: list[str]) -> str:
    marks = [line.rstrip() for line in lines]
    if SEARCH_MARK not in marks:
        return f"the edit body has no '{SEARCH_MARK}' line."
    first = marks.index(SEARCH_MARK)
    if first == 0 and SEARCH_MARK not in marks[1:]:
        return f"the edit body must start with the file path, then the '{SEARCH_MARK}' line."
    if lines[first] != SEARCH_MARK:
        return f"the '{SEARCH_MARK}' line must have nothing after the marker."
    if DIVIDER_MARK not in marks[first + 1 :]:
        return f"the edit body has no '{DIVIDER_MARK}' line after '{SEARCH_MARK}'."
    if not any(m.startswith(REPLACE_MARK) for m in marks[first + 1 :]):
        return f"the edit body has no '{REPLACE_MARK}' line after '{DIVIDER_MARK}'."
    return (
        f"the edit body needs '{SEARCH_MARK}', the search text, '{DIVIDER_MARK}', the "
        f"replacement and '{REPLACE_MARK}', each marker on a line of its own (a search text "
        "or replacement of nothing at all is written as one empty line)."
    )


# ---------------------------------------------------------------------------- edit


def edit_file(runtime: Runtime, path: str, search: str, replace: str) -> str:
    """Replace the one occurrence of ``search`` that starts a line; return the success text."""
    path = path.strip()
    target = in_session(runtime, path)
    raw = read_text(runtime, path, target)
    # A file whose every line ends in CRLF is matched and rewritten as LF text, then
    # turned back: the model writes LF, and the diff must not touch every line.
    crlf = "\r\n" in raw and raw.count("\r\n") == raw.count("\n")
    text = raw.replace("\r\n", "\n") if crlf else raw
    if crlf:
        search, replace = search.replace("\r\n", "\n"), replace.replace("\r\n", "\n")
    if not search:
        raise ToolError(
            "No change was made: the search text is empty. Put the exact text of "
            f"{path} to replace between '{SEARCH_MARK}' and '{DIVIDER_MARK}'."
        )
    found = line_starts_of(text, search)
    if not found:
        raise ToolError(_not_found(path, text, search))
    if len(found) > 1:
        numbers = _numbers([text.count("\n", 0, at) + 1 for at in found])
        raise ToolError(
            f"No change was made: the search text occurs {len(found)} times in {path} "
            f"(at lines {numbers}). Add neighbouring lines to the search text so that it "
            "matches exactly once."
        )
    at = found[0]
    new = text[:at] + replace + text[at + len(search) :]
    write_text(runtime, path, target, new.replace("\n", "\r\n") if crlf else new)
    line = text.count("\n", 0, at) + 1
    last = line + search.rstrip("\n").count("\n")
    span = f"line {line}" if last == line else f"lines {line}-{last}"
    first_shown = max(1, line - SNIPPET_CONTEXT)
    last_shown = line + SNIPPET_CONTEXT + replace.count("\n")
    shown = new.split("\n")[first_shown - 1 : last_shown]
    snippet = "\n".join(f"{n:6d}\t{s}" for n, s in enumerate(shown, first_shown))
    return f"Edited {path}: replaced the text at {span}. The region now reads:\n{snippet}"


def line_starts_of(text: str, search: str) -> list[int]:
    """Every offset where ``search`` occurs in ``text`` at the start of a line."""
    found = [0] if text.startswith(search) else []
    at = text.find("\n" + search)
    while at >= 0:
        found.append(at + 1)
        at = text.find("\n" + search, at + 1)
    return found


def _not_found(path: str, text: str, search: str) -> str:
    message = f"No change was made: the search text was not found in {path}."
    lines = text.split("\n")
    keys = [line.strip() for line in lines]
    wanted = [line.strip() for line in search.split("\n")]
    loose = [
        i + 1
        for i in range(len(keys) - len(wanted) + 1)
        if keys[i : i + len(wanted) - 1] == wanted[:-1]
        and keys[i + len(wanted) - 1].startswith(wanted[-1])
    ]
    if loose:
        return (
            f"{message} It matches at line {_numbers(loose)} only when indentation and "
            "surrounding whitespace are ignored: copy those lines exactly, including their "
            f"indentation (see `cat -n {shlex.quote(path)}`)."
        )
    inside = text.find(search)
    if inside >= 0:
        return (
            f"{message} It occurs within line {text.count(chr(10), 0, inside) + 1}, but the "
            "search text must start at the beginning of a line: include the start of that "
            "line, indentation included."
        )
    first = next((w for w in wanted[:-1] if w), "")
    hits = [i + 1 for i, key in enumerate(keys) if first and key == first]
    if hits:
        return (
            f"{message} Its first line appears at line {_numbers(hits)}, but the lines "
            "after it differ; view the file and copy the lines exactly."
        )
    return f"{message} Check the current content (`grep -n`, `cat -n`) and copy lines exactly."


def _numbers(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:MAX_LISTED])
    return shown + (", ..." if len(numbers) > MAX_LISTED else "")


# -------------------------------------------------------------------------- create


def create_file(runtime: Runtime, path: str, content: str) -> str:
    path = path.strip()
    if not path:
        raise ToolError("No file was created: the path is empty.")
    if path.endswith("/"):
        raise ToolError(f"No file was created: {path} names a directory; give a file path.")
    target = in_session(runtime, path)
    if runtime.exists(target):
        raise ToolError(
            f"No file was created: {path} already exists. Change it with edit, "
            "or remove it with bash first."
        )
    parent = posixpath.dirname(path.rstrip("/"))
    if parent and not runtime.exists(posixpath.dirname(target)):
        raise ToolError(
            f"No file was created: the directory {parent} does not exist{_where(runtime, path)}. "
            f"Create it first (`mkdir -p {shlex.quote(parent)}`)."
        )
    write_text(runtime, path, target, content)
    count = content.count("\n") + (1 if content and not content.endswith("\n") else 0)
    ending = "" if not content or content.endswith("\n") else ", no newline at the end"
    return f"Created {path} ({count} line{'s' if count != 1 else ''}{ending})."


# ------------------------------------------------------------------------ paths, I/O


def in_session(runtime: Runtime, path: str) -> str:
    """``path`` as the session sees it: relative ones start at the shell's current directory.

    The runtime then resolves it and refuses anything outside the repository.
    """
    if not path or posixpath.isabs(path) or runtime.cwd == runtime.root:
        return path  # the runtime resolves it against the root itself (and says so)
    return posixpath.join(runtime.cwd, path)


def _where(runtime: Runtime, path: str) -> str:
    """Where a relative path was looked for, when that is not the repository root."""
    if posixpath.isabs(path) or runtime.cwd == runtime.root:
        return ""
    return f" (relative to the current directory {runtime.cwd})"


def read_text(runtime: Runtime, path: str, target: str) -> str:
    if not path:
        raise ToolError("No change was made: the path is empty.")
    if not runtime.exists(target):
        raise ToolError(
            f"No change was made: the path {path} does not exist{_where(runtime, path)}."
        )
    try:
        data = runtime.read_file(target, MAX_EDIT_BYTES)
    except FileTooLarge as exc:  # read whole, searched and rewritten: memory is the bound
        raise ToolError(
            f"No change was made: {path} is {human_size(exc.size)}, more than the "
            f"{human_size(MAX_EDIT_BYTES)} edit reads; change it with a command instead "
            "(sed, python)."
        ) from None
    except OSError as exc:
        raise ToolError(
            f"No change was made: cannot read {path} ({exc.strerror or exc})."
        ) from None
    if b"\0" in data:
        raise ToolError(f"No change was made: {path} is a binary file; edit only changes text.")
    # surrogateescape: a stray non-UTF-8 byte elsewhere in the file survives the rewrite.
    return data.decode("utf-8", "surrogateescape")


def write_text(runtime: Runtime, path: str, target: str, text: str) -> None:
    try:
        runtime.write_file(target, text.encode("utf-8", "surrogateescape"))
    except OSError as exc:
        raise ToolError(f"Cannot write {path} ({exc.strerror or exc}).") from None
