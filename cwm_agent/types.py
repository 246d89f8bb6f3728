"""Frozen records that the components exchange (no raw dicts across module borders)."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

TOOL_NAMES = ("bash", "edit", "create", "submit")


@dataclass(frozen=True)
class Action:
    """One tool call the model asked for.

    ``args`` holds the tool's named arguments, the same in both tool formats:
    bash(command), edit(path, search, replace), create(path, content), submit(path?).
    ``body`` is the raw text between the CWM tool tags (empty for the openai format).
    """

    tool: str
    args: Mapping[str, str]
    body: str = ""
    call_id: str | None = None


@dataclass(frozen=True)
class Observation:
    """What a tool returned: text for the model plus facts for the trajectory."""

    output: str
    ok: bool = True
    exit_code: int | None = None
    timed_out: bool = False
    duration: float = 0.0


@dataclass(frozen=True)
class CommandResult:
    """Outcome of one command in a runtime's shell session."""

    output: str
    exit_code: int | None
    timed_out: bool = False
    cut_bytes: int = 0
    duration: float = 0.0
    session_restarted: bool = False


@dataclass(frozen=True)
class Usage:
    """Tokens of one or more model requests. ``cached_tokens`` is the part of
    ``prompt_tokens`` the server read from its prompt cache (where it says so: OpenAI's
    ``prompt_tokens_details.cached_tokens``); it is priced apart (``costs.py``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
        )


@dataclass(frozen=True)
class ToolCall:
    """A native (openai format) function call as the server returned it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token, its log-probability, and the alternatives the server listed."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class ModelReply:
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str = ""
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    latency: float = 0.0
    logprobs: tuple[TokenLogprob, ...] | None = None  # asked for and given by the server


@dataclass(frozen=True)
class TreeDrift:
    """Files of the user's working tree that changed while the run worked on a live view
    of it (the local runtime's overlay): ``foreign`` ones the agent's copy shows as the
    user left them (the user's changes: never part of the agent's patch), ``shared`` ones
    the agent changed too."""

    foreign: tuple[str, ...] = ()
    shared: tuple[str, ...] = ()


class FileTooLarge(OSError):
    """A file is larger than its reader allows (``Runtime.read_file``'s ``limit``); it was
    not read, so a huge file cannot take the harness's memory."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(errno.EFBIG, f"the file is {size} bytes, more than {limit}")
        self.size, self.limit = size, limit


class Runtime(Protocol):
    """Where the agent's commands run and its files live (local copy or container).

    ``root`` is the repository inside the runtime; ``cwd`` the shell session's current
    directory after its last command (CWM's tools resolve relative paths against it);
    ``base`` the commit the patch is made against, held in the git repository ``base_dir``
    on this machine (out of the commands' reach); ``description`` names the shell for the
    system prompt; ``notices`` are facts about the set-up the user should hear once
    (a missing sandbox, a repository checked out elsewhere than expected, ...).
    """

    root: str
    description: str
    notices: list[str]

    @property
    def cwd(self) -> str: ...

    @property
    def base(self) -> str: ...

    @property
    def base_dir(self) -> str: ...

    def run(self, command: str, timeout: float) -> CommandResult: ...

    def read_file(self, path: str, limit: int | None = None) -> bytes:
        """The file's bytes; ``FileTooLarge`` for one of more than ``limit`` bytes (told
        by its size, never read past ``limit`` + 1 bytes)."""
        ...

    def write_file(self, path: str, data: bytes) -> None: ...

    def exists(self, path: str) -> bool: ...

    def diff(self, exclude: tuple[str, ...] = ()) -> str: ...

    def outside_changes(self) -> TreeDrift:
        """What changed in the user's tree during the run, as the agent's copy shows it
        (a runtime whose copy does not follow the user's tree: nothing)."""
        ...

    def close(self) -> None: ...


class Model(Protocol):
    """A chat model the agent loop asks for its next reply."""

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        max_tokens: int | None = None,
    ) -> ModelReply: ...


class TextModel(Model, Protocol):
    """A model that also answers raw completions (trace prediction's special tokens)."""

    def complete_text(
        self,
        prompt: str,
        *,
        stop: list[str] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ModelReply: ...
