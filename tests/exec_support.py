"""Helpers for the execution-stage tests (no tests here): workspaces, groups, and a
repository with candidates built to be nasty to a runtime that is reused.

The repository ``calc`` has a bug (``add`` subtracts), two tests that pass on the base
(``test_sub``; ``test_clean_tree``, a sentinel that fails when anything a candidate may
have left behind is there) and one that fails (``test_add``). Every nasty candidate fixes
the bug and, when its module is imported, does one bad thing; its own sentinel fails
then, and a later candidate's must not.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import git

from cwm_agent.factory import open_runtime
from cwm_agent.settings import RuntimeSettings
from cwm_agent.verification.records import Candidate, Group, Origin, ReproScript

BUGGY = "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n"
TESTS = """\
from calc.ops import add, sub


def test_add():
    assert add(2, 3) == 5


def test_sub():
    assert sub(5, 3) == 2
"""
SENTINEL = """\
import os
import stat
import subprocess

from calc import ops  # noqa: F401  (imported: the nasty side effects run first)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_clean_tree():
    data = os.path.join(ROOT, "calc", "data.txt")
    assert open(data).read() == "42\\n"
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o644
    found = [f for top, _, files in os.walk(ROOT) for f in files
             if f.startswith(("junk", "stray")) and "/.git" not in top]
    assert found == []
    assert not os.path.exists(os.path.join(ROOT, "build"))
    evil = subprocess.run(["git", "config", "--get", "cwm.evil"], cwd=ROOT, capture_output=True)
    assert evil.returncode == 1
    assert subprocess.run(["git", "branch", "--list", "evil"], cwd=ROOT,
                          capture_output=True, text=True).stdout == ""
"""
REPRO = """\
from calc.ops import add

print("Issue resolved" if add(2, 3) == 5 else "Issue reproduced")
"""
FIX = BUGGY.replace("return a - b", "return a + b", 1)
# What each nasty candidate's module does when imported (after the fix).
NASTY = {
    "deletes": """
        import os
        os.remove(os.path.join(os.path.dirname(__file__), "data.txt"))
        os.remove(os.path.join(os.path.dirname(__file__), "__init__.py"))
    """,
    "litters": """
        import os
        root = os.path.dirname(os.path.dirname(__file__))
        open(os.path.join(root, "junk.txt"), "w").write("untracked")
        open(os.path.join(root, "junk.log"), "w").write("ignored")
        os.makedirs(os.path.join(root, "build", "deep"), exist_ok=True)
        open(os.path.join(root, "build", "deep", "junk.o"), "w").write("ignored too")
    """,
    "modes": """
        import os
        os.chmod(os.path.join(os.path.dirname(__file__), "data.txt"), 0o600)
        os.chmod(os.path.join(os.path.dirname(__file__), "ops.py"), 0o755)
    """,
    "lingers": """
        import os, subprocess, sys
        root = os.path.dirname(os.path.dirname(__file__))
        open(os.path.join(root, "stray-0.txt"), "w").write("first")
        subprocess.Popen(
            [sys.executable, "-c", "import time\\nfor n in range(1, 10**6):\\n"
             "    open('stray-%d.txt' % n, 'w').close(); time.sleep(0.05)"],
            cwd=root, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    """,
    "edits-git": """
        import os, subprocess
        root = os.path.dirname(os.path.dirname(__file__))
        subprocess.run(["git", "config", "cwm.evil", "yes"], cwd=root, check=True)
        subprocess.run(["git", "branch", "-f", "evil"], cwd=root, check=True)
        open(os.path.join(root, ".git", "description"), "w").write("edited")
    """,
}


def make_calc_repo(path: Path) -> Path:
    (path / "calc").mkdir(parents=True)
    (path / "tests").mkdir()
    (path / "calc" / "__init__.py").write_text("")
    (path / "calc" / "ops.py").write_text(BUGGY)
    (path / "calc" / "data.txt").write_text("42\n")
    (path / "tests" / "test_ops.py").write_text(TESTS)
    (path / "tests" / "test_env.py").write_text(SENTINEL)
    (path / ".gitignore").write_text("*.log\nbuild/\n__pycache__/\n")
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    return path


def patch_for(repo: Path, files: dict[str, str]) -> str:
    """The diff that writes ``files`` (path -> text) into ``repo``, which is left as it was."""
    for name, text in files.items():
        (repo / name).write_text(text)
    try:
        return git(repo, "diff")
    finally:
        git(repo, "checkout", "--", ".")


def nasty_module(kind: str) -> str:
    return FIX + textwrap.dedent(NASTY[kind])


def group(key: str, patch: str) -> Group:
    origin = Origin("test", model=key)
    return Group(key, (Candidate("calc-1", patch, origin),), verify_patch=patch)


def repro_script() -> ReproScript:
    return ReproScript("repro-1", REPRO)


@dataclass
class LocalWorkspace:
    """Fresh local runtimes (sandboxed unless ``sandbox`` says otherwise) of ``repo``."""

    repo: Path
    sandbox: str = "bwrap"
    record: dict[str, Any] = field(default_factory=dict)
    instance_id: str = "calc-1"
    opened: int = 0

    def open(self, label: str) -> Any:
        self.opened += 1
        return open_runtime(RuntimeSettings(sandbox=self.sandbox), self.repo, f"test-{label}")


@dataclass
class DockerWorkspace:
    """Fresh containers of ``image``: ``repo`` copied in, or the image's own /testbed."""

    image: str
    repo: Path | None = None
    record: dict[str, Any] = field(default_factory=dict)
    shell_init: str | None = None
    instance_id: str = "calc-1"
    opened: int = 0

    def open(self, label: str) -> Any:
        self.opened += 1
        settings = RuntimeSettings(
            runtime="docker",
            image=self.image,
            workdir="/repo" if self.repo else "/testbed",
            repo_in_image=self.repo is None,
            memory="1g",
            pids_limit=256,
            shell_init=self.shell_init,
        )
        return open_runtime(settings, self.repo, f"test-exec-{label}")


def rows(report: Any) -> dict[str, tuple[Any, ...]]:
    """The verdicts as comparable rows (status, counts, regressions)."""
    return {
        key: (
            v.status,
            v.existing_passed,
            v.existing_total,
            v.repro_passed,
            v.repro_total,
            v.regressions,
        )  # fmt: skip
        for key, v in report.verdicts.items()
    }
