"""The trajectory's file: one JSON document, appended to in place, valid after every write.

Rewriting the whole document every step costs O(N) per step, O(N^2) over a run. So the
file is laid out for appending: ``{HEAD,"messages":[...]<spaces>,"steps":[...],TAIL}``.
A save writes only what is new: the new messages into the run of spaces (JSON
whitespace) after the messages array, then the new steps plus the re-encoded small
TAIL (usage, status, ...) at the end of the file. Each of those is one ``pwrite`` that
turns a valid document into a valid document, so a crash or Ctrl-C between or after
them leaves a usable file. When the spaces run out, or anything already written
changed, the whole document is rewritten atomically (temp file + rename) with a gap as
large as the messages so far: rewrites get rarer as the run grows (O(N) in all). The
finished run's document is rewritten once more without the gap. (A reader racing a
write of a run in progress may get a torn read: read again. Every record is encoded
once, by the C encoder of one-shot ``json.dumps``; ``json.dump`` to a file uses the
pure-Python one.)
"""

from __future__ import annotations

import json
import os
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

MIN_GAP = 64 * 1024  # bytes of spaces kept after the messages array while a run goes on
_GROWING = ("messages", "steps")  # the append-only arrays, in this order in the file


def encode(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (bytes of non-UTF-8 files, kept by surrogateescape): \u escapes
        # keep them exact, so replay gets the same bytes back.
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _members(data: dict[str, Any], keys: list[str]) -> bytes:
    return b",".join(encode(key) + b":" + encode(data[key]) for key in keys)


class AppendableDocument:
    """The file behind a Trajectory, and what is known to be in it (see module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._closer: weakref.finalize | None = None
        self._head = b""  # the encoded members before "messages"
        # For "messages" and "steps": the list saved from, and the items in the file.
        self._written: dict[str, tuple[list[Any], list[Any]]] = {}
        self._messages_end = 0  # offset of the "]" closing the messages array
        self._gap = 0  # spaces after it
        self._steps_end = 0  # offset of the "]" closing the steps array
        self._end = 0  # where the document ends (only spaces may follow)

    def save(self, data: dict[str, Any], *, full: bool, gap: bool) -> None:
        layout = _layout(data)
        if layout is None:  # not the usual shape: a plain document, no appending
            self._rewrite(lambda handle: handle.write(encode(data)), keep_open=False)
            return
        head_keys, tail_keys = layout
        head = _members(data, head_keys)
        new = [self._new_items(key, data[key]) for key in _GROWING]
        if full or self._fd is None or head != self._head or None in new:
            self._rewrite_appendable(data, head, tail_keys, gap)
            return
        new_messages, new_steps = new[0] or [], new[1] or []
        try:
            if new_messages and not self._append_messages(new_messages):
                self._rewrite_appendable(data, head, tail_keys, gap)
                return
            self._append_steps(new_steps, _members(data, tail_keys))
        except BaseException:
            self._close()  # what is in the file is no longer known: rewrite it next time
            raise

    def _new_items(self, key: str, items: list[Any]) -> list[Any] | None:
        """The items appended since the last save, or None if saved ones were replaced."""
        if key not in self._written:
            return None
        saved_list, written = self._written[key]
        if items is not saved_list or len(items) < len(written):
            return None
        if any(a is not b for a, b in zip(items, written, strict=False)):
            return None
        return items[len(written) :]

    def _append_messages(self, items: list[Any]) -> bool:
        written = self._written["messages"][1]
        chunk = (b"," if written else b"") + b",".join(map(encode, items)) + b"]"
        if len(chunk) > self._gap + 1:  # + 1: the old "]" is overwritten too
            return False
        os.pwrite(self._fd, chunk, self._messages_end)  # type: ignore[arg-type]
        self._messages_end += len(chunk) - 1
        self._gap -= len(chunk) - 1
        written.extend(items)
        return True

    def _append_steps(self, items: list[Any], tail: bytes) -> None:
        written = self._written["steps"][1]
        body = b""
        if items:
            body = (b"," if written else b"") + b",".join(map(encode, items))
        chunk = body + b"]" + (b"," + tail if tail else b"") + b"}"
        end = self._steps_end + len(chunk)
        padding = b" " * max(0, self._end - end)  # never truncate: no state is torn
        os.pwrite(self._fd, chunk + padding, self._steps_end)  # type: ignore[arg-type]
        self._steps_end += len(body)
        self._end = end
        written.extend(items)

    def _rewrite_appendable(
        self, data: dict[str, Any], head: bytes, tail_keys: list[str], gap: bool
    ) -> None:
        messages, steps = data["messages"], data["steps"]
        offsets: list[int] = []

        def write(handle: BinaryIO) -> None:  # streamed: no second copy of the run in memory
            handle.write(b"{" + head + (b"," if head else b"") + b'"messages":[')
            _write_items(handle, messages)
            gap_size = max(MIN_GAP, handle.tell()) if gap else 0
            offsets.extend((handle.tell(), gap_size))
            handle.write(b"]" + b" " * gap_size + b',"steps":[')
            _write_items(handle, steps)
            offsets.append(handle.tell())
            tail = _members(data, tail_keys)
            handle.write(b"]" + (b"," + tail if tail else b"") + b"}")
            offsets.append(handle.tell())

        self._rewrite(write, keep_open=gap)
        self._head = head
        self._written = {"messages": (messages, list(messages)), "steps": (steps, list(steps))}
        self._messages_end, self._gap, self._steps_end, self._end = offsets

    def _rewrite(self, write: Callable[[BinaryIO], object], *, keep_open: bool) -> None:
        """Write atomically (temp file + rename): a crash mid-write never leaves a broken file."""
        self._close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".traj-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb", closefd=False) as handle:
                write(handle)
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        if keep_open:  # the same file, now at self.path: later saves write through it
            self._fd = fd
            self._closer = weakref.finalize(self, os.close, fd)
        else:
            os.close(fd)

    def _close(self) -> None:
        if self._closer is not None:
            self._closer()
        self._fd, self._closer, self._written = None, None, {}


def _layout(data: dict[str, Any]) -> tuple[list[str], list[str]] | None:
    """The keys before "messages" and after "steps", if those two lists sit side by side."""
    keys = list(data)
    if not all(isinstance(data.get(key), list) for key in _GROWING):
        return None
    at = keys.index("messages")
    if keys[at + 1 : at + 2] != ["steps"]:
        return None
    return keys[:at], keys[at + 2 :]


def _write_items(handle: BinaryIO, items: list[Any]) -> None:
    for i, item in enumerate(items):
        if i:
            handle.write(b",")
        handle.write(encode(item))
