"""Shared fixtures: real git repositories in temp dirs and the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cwm_agent.types import ModelReply, Usage

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

SECRET_KEY = "sk-test-SECRET-7f3a9c"


def _shared_data() -> Path:
    """Read-only data beside the checkout (CRUXEval, SWE-bench records, real patches):
    $CWM_SHARED_DATA, else ../shared/data. Tests using it skip when it is absent (those of
    CWM's oracle fail instead under CWM_REQUIRE_ORACLE=1); it is never copied in."""
    if os.environ.get("CWM_SHARED_DATA"):
        return Path(os.environ["CWM_SHARED_DATA"])
    return TESTS.parents[1] / "shared" / "data"


SHARED_DATA = _shared_data()


def require_sandbox(what: str = "these tests") -> None:
    """Skip unless bubblewrap's sandbox works here (fail instead under
    CWM_REQUIRE_SANDBOX=1). Asked when a test runs, not when its module is imported: a
    machine may get bubblewrap while the suite is being collected."""
    from cwm_agent.runtimes import sandbox

    why_not = sandbox.works()
    if why_not is None:
        return
    message = f"{what} need bubblewrap: {why_not} (apt-get install bubblewrap)"
    if os.environ.get("CWM_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"CWM_REQUIRE_SANDBOX=1 but {message}", pytrace=False)
    pytest.skip(message)


BUGGY_MODULE = '''\
def add(a, b):
    """Return the sum of a and b."""
    return a - b


def scale(values, factor):
    return [v * factor for v in values]
'''

TEST_MODULE = """\
from mathlib.ops import add


def test_add():
    assert add(2, 3) == 5
"""


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def git(repo: Path, *args: str, input: bytes | None = None) -> str:
    """Run git in ``repo`` with a fixed identity; its stdout (bytes that are not UTF-8 kept
    as surrogate escapes). A failure raises ``CalledProcessError``."""
    proc = subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **GIT_IDENTITY},
        input=input,
        capture_output=True,
        check=True,
    )
    return proc.stdout.decode("utf-8", "surrogateescape")


# -- model replies --------------------------------------------------------------------


def cwm(tool: str, body: str, thought: str = "Next step.") -> str:
    """A well-formed CWM reply: reasoning, ``</think>``, one tool call."""
    return f"<think>\n{thought}\n</think>\n<tool: {tool}>\n{body}\n</tool>"


def native(name: str, **arguments: str) -> dict[str, Any]:
    """A scripted-server entry with one native (openai format) tool call."""
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def summary(text: str = "Fixed it.") -> str:
    """The final reply after a valid submission: reasoning and no tool call."""
    return f"<think>\nDone.\n</think>\n## Issue Summary\n{text}"


class FakeModel:
    """An in-process ``types.TextModel`` for unit tests of the loop and the tracer's callers.

    Hands out ``replies`` in order, then ``default`` for every later call (a str becomes a
    reply with usage 100 + 10 tokens; an exception is raised); records every call in
    ``calls``. Each chat request must be what an HTTP client could send: valid UTF-8 JSON.
    """

    def __init__(self, replies: list[Any] | None = None, default: Any = None) -> None:
        self.replies = list(replies or [])
        self.default = ModelReply("Done.") if default is None else default
        self.calls: list[dict[str, Any]] = []
        self.extra_body: dict[str, Any] = {"chat_template_kwargs": {"x": 1}}

    def _next(self) -> ModelReply:
        reply = self.replies.pop(0) if self.replies else self.default
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, str):
            reply = ModelReply(reply, usage=Usage(100, 10), finish_reason="stop")
        return reply

    def complete(self, messages, tools=None, *, max_tokens=None) -> ModelReply:
        json.dumps(messages, ensure_ascii=False).encode("utf-8")
        self.calls.append(dict(messages=list(messages), tools=tools, max_tokens=max_tokens))
        return self._next()

    def complete_text(self, prompt, *, stop=None, max_tokens=None, temperature=None):
        self.calls.append(dict(prompt=prompt, stop=stop, max_tokens=max_tokens))
        return self._next()

    @property
    def prompts(self) -> list[str]:
        return [call["prompt"] for call in self.calls if "prompt" in call]


@pytest.fixture
def buggy_repo(tmp_path: Path) -> Path:
    """A small package whose add() subtracts, with a failing test."""
    return make_buggy_repo(tmp_path / "user-repo")


def make_buggy_repo(repo: Path) -> Path:
    """``buggy_repo`` at any path (for fixtures of a wider scope)."""
    (repo / "mathlib").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "mathlib" / "__init__.py").write_text("")
    (repo / "mathlib" / "ops.py").write_text(BUGGY_MODULE)
    (repo / "tests" / "test_ops.py").write_text(TEST_MODULE)
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


def snapshot(repo: Path) -> dict[str, bytes]:
    """Every file of the repository, .git included, to prove it was not touched."""
    files = {}
    for path in sorted(repo.rglob("*")):
        if path.is_file():
            files[str(path.relative_to(repo))] = path.read_bytes()
    return files


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["OPENAI_API_KEY"] = SECRET_KEY
    env["CWM_AGENT_HOME"] = str(tmp_path / "agent-home")
    env.pop("OPENAI_BASE_URL", None)
    env.pop("CWM_AGENT_MODEL", None)
    return env


def run_cli(args: list[str], env: dict[str, str], stdin: str = "", timeout: float = 120):
    proc = subprocess.run(
        [sys.executable, "-m", "cwm_agent", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
