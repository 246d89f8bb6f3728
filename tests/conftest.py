"""Shared fixtures: real git repositories in temp dirs and the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

SECRET_KEY = "sk-test-SECRET-7f3a9c"


def _shared_data() -> Path:
    """Read-only data beside the checkout (CRUXEval, SWE-bench records, real patches):
    $CWM_SHARED_DATA, else ../shared/data, else /work/shared/data. Tests using it skip
    when it is absent; it is never copied into the project."""
    if os.environ.get("CWM_SHARED_DATA"):
        return Path(os.environ["CWM_SHARED_DATA"])
    beside = TESTS.parents[1] / "shared" / "data"
    return beside if beside.is_dir() else Path("/work/shared/data")


SHARED_DATA = _shared_data()

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


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    proc = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    return proc.stdout


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
