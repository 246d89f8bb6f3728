"""The run's record on disk: one JSON document, brought up to date after every step.

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
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

from cwm_agent.types import Action, Observation, Usage

FORMAT_VERSION = 1
MIN_GAP = 64 * 1024  # bytes of spaces kept after the messages array while a run goes on
_GROWING = ("messages", "steps")  # the append-only arrays, in this order in the file


def default_runs_dir() -> Path:
    """Where trajectories go without ``--traj``: ``$CWM_AGENT_HOME/runs`` or the XDG state dir."""
    home = os.environ.get("CWM_AGENT_HOME")
    if home:
        return Path(home) / "runs"
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(state) / "cwm-agent" / "runs"


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


class Trajectory:
    """Everything a run did, in the shape ``replay`` and ``--json`` read back.

    ``messages`` and ``steps`` are append-only: append to them, or replace the list or
    an item (noticed: the next save rewrites the file); never modify a saved record in
    place, or if you do, call ``save(full=True)``.
    """

    def __init__(self, path: Path, run_id: str, config: dict[str, Any], issue: str) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "run_id": run_id,
            "config": config,
            "issue": issue,
            "started_at": time.time(),
            "messages": [],
            "steps": [],
            "submissions": [],
            "usage": asdict(Usage()),
            "cost_usd": None,  # what the requests cost, where the model has a price
            "exit_status": "running",
            "exit_code": None,
            "reason": "",
            "patch": None,
            "working_tree_diff": None,
        }
        self._file = _AppendableDocument(path)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.data["messages"]

    def add_step(
        self,
        *,
        reply_content: str,
        action: Action | None,
        observation: Observation | None,
        format_error: str | None,
        model_seconds: float,
        tool_seconds: float,
        usage: Usage,
        finish_reason: str | None,
        hooks: dict[str, Any] | None = None,
    ) -> None:
        self.data["steps"].append(
            {
                "step": len(self.data["steps"]) + 1,
                "reply": reply_content,
                "action": None if action is None else _action_record(action),
                "observation": None if observation is None else asdict(observation),
                "format_error": format_error,
                "model_seconds": round(model_seconds, 6),
                "tool_seconds": round(tool_seconds, 6),
                "usage": asdict(usage),
                "finish_reason": finish_reason,
                "hooks": hooks or {},
            }
        )

    def set_usage(self, usage: Usage, cost_usd: float | None = None) -> None:
        self.data["usage"] = {**asdict(usage), "total_tokens": usage.total_tokens}
        self.data["cost_usd"] = None if cost_usd is None else round(cost_usd, 6)

    def finish(self, *, status: str, exit_code: int, reason: str, patch: str | None) -> None:
        self.data.update(
            exit_status=status,
            exit_code=exit_code,
            reason=reason,
            patch=patch,
            ended_at=time.time(),
        )
        self.data["wall_seconds"] = round(self.data["ended_at"] - self.data["started_at"], 3)

    def save(self, *, full: bool = False) -> None:
        """Bring the file up to date; it is a complete JSON document after every write.

        ``full`` rewrites it whole (after changing an already-saved record in place).
        A finished run (``exit_status`` no longer "running") is always written whole
        and compact.
        """
        running = self.data.get("exit_status") == "running"
        self._file.save(self.data, full=full or not running, gap=running)


def _action_record(action: Action) -> dict[str, Any]:
    return {"tool": action.tool, "args": dict(action.args), "call_id": action.call_id}


def load(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def mark_interrupted(path: Path, reason: str) -> bool:
    """Finish a trajectory whose run was abandoned while it was still ``running`` (its
    thread waits on the model and will not write again); True if it was."""
    try:
        data = load(path)
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("exit_status") != "running":
        return False
    data.update(exit_status="interrupted", exit_code=130, reason=reason, ended_at=time.time())
    started = data.get("started_at")
    if isinstance(started, (int, float)):
        data["wall_seconds"] = round(data["ended_at"] - started, 3)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".traj-", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(_encode(data))
    os.replace(tmp, path)
    return True


def tokens_in(path: Path) -> int:
    """Tokens a run spent, from its trajectory file (0 when it cannot be read)."""
    try:
        return int(load(path)["usage"].get("total_tokens") or 0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 0


def cost_in(path: Path) -> float | None:
    """What a run cost in USD, from its trajectory file (None: no price, or unreadable)."""
    try:
        cost = load(path).get("cost_usd")
    except (OSError, ValueError, AttributeError):
        return None
    return cost if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None


def _encode(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (bytes of non-UTF-8 files, kept by surrogateescape): \u escapes
        # keep them exact, so replay gets the same bytes back.
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _members(data: dict[str, Any], keys: list[str]) -> bytes:
    return b",".join(_encode(key) + b":" + _encode(data[key]) for key in keys)


class _AppendableDocument:
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
            self._rewrite(lambda handle: handle.write(_encode(data)), keep_open=False)
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
        chunk = (b"," if written else b"") + b",".join(map(_encode, items)) + b"]"
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
            body = (b"," if written else b"") + b",".join(map(_encode, items))
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
        handle.write(_encode(item))
