"""Integration tests against a real OpenAI-compatible server (llama.cpp, `make integration`).

They run only when ``CWM_LLAMA_URL`` names a running server (``scripts/provision-llama.sh``
starts one and prints it); otherwise they are skipped, so plain ``make test`` never runs
them. Under ``CWM_REQUIRE_LLAMA=1`` (set by ``make integration``) a skip is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "buggy-calc"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs a real model server (CWM_LLAMA_URL); see make integration"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class Llama:
    url: str  # the /v1 base URL
    chat_model: str  # the GGUF file's own chat template
    tools_model: str  # the same file with llama.cpp's function-calling chat format


def _unavailable(message: str) -> None:
    if os.environ.get("CWM_REQUIRE_LLAMA") == "1":
        pytest.fail(f"CWM_REQUIRE_LLAMA=1 but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def llama() -> Llama:
    url = os.environ.get("CWM_LLAMA_URL", "").rstrip("/")
    if not url:
        _unavailable("CWM_LLAMA_URL is not set (run `make integration`)")
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=10) as reply:
            reply.read()
    except OSError as exc:
        _unavailable(f"the server at {url} does not answer GET /models: {exc}")
    return Llama(
        url,
        os.environ.get("CWM_LLAMA_MODEL", "smollm2"),
        os.environ.get("CWM_LLAMA_TOOLS_MODEL", "smollm2-fc"),
    )


@pytest.fixture
def example_repo(tmp_path: Path) -> Path:
    """A git copy of examples/buggy-calc (the repository `make demo` uses)."""
    repo = tmp_path / "buggy-calc"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "buggy calc"], cwd=repo, check=True)
    return repo


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(tmp_path: Path):
    """Run the real CLI in a subprocess, with a private home and no key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CWM_AGENT_"))}
    env["CWM_AGENT_HOME"] = str(tmp_path / "agent-home")

    def run(*args: str, timeout: float = 600) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "cwm_agent", *args],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run
