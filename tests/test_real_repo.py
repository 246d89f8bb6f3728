"""A real open-source project (the `unidiff` library's own source) with a real bug planted.

The scripted model reproduces the failure, fixes it, verifies and submits, in both tool
formats and with malformed replies mixed in; the stdout patch must apply to a pristine
clone and make the failing test pass there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import unidiff
from conftest import cwm, git, run_cli

from cwm_agent.scripted_server import ScriptedServer

DOC = '        """Return patch removed files as a list."""\n'
GOOD = DOC + "        return [f for f in self if f.is_removed_file]\n"
BAD = DOC + "        return [f for f in self if f.is_added_file]\n"

REGRESSION_TEST = '''\
import unittest

from unidiff import PatchSet

DELETION = """\\
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
index 257cc56..0000000
--- a/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-foo
"""


class RemovedFilesTest(unittest.TestCase):
    def test_removed_files_lists_deleted_files(self):
        patch = PatchSet(DELETION)
        self.assertEqual([f.path for f in patch.removed_files], ["gone.txt"])


if __name__ == "__main__":
    unittest.main()
'''

RUN_TEST = "python3 -m unittest tests.test_removed 2>&1 | tail -4"


@pytest.fixture
def unidiff_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "python-unidiff"
    shutil.copytree(
        Path(unidiff.__file__).parent, repo / "unidiff", ignore=shutil.ignore_patterns("*.pyc")
    )
    source = repo / "unidiff" / "patch.py"
    text = source.read_text()
    assert text.count(GOOD) == 1, "the unidiff version changed; pick another planted bug"
    source.write_text(text.replace(GOOD, BAD))
    (repo / "tests").mkdir()
    (repo / "tests" / "__init__.py").write_text("")
    (repo / "tests" / "test_removed.py").write_text(REGRESSION_TEST)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "unidiff with a bug in PatchSet.removed_files")
    return repo


def call(name: str, **arguments: str) -> dict:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def cwm_script(malformed: bool) -> list:
    noise = (
        ["Let me think about removed_files.", cwm("edit", "unidiff/patch.py")] if malformed else []
    )
    return [
        cwm("bash", RUN_TEST),
        *noise,
        cwm("bash", "grep -n 'def removed_files' -A 3 unidiff/patch.py"),
        cwm("edit", f"unidiff/patch.py\n<<<<<<< SEARCH\n{BAD}=======\n{GOOD}>>>>>>> REPLACE"),
        cwm("bash", f"{RUN_TEST} && git diff > fix.patch"),
        cwm("submit", "fix.patch"),
        "<think>done</think>\n## Issue Summary\nremoved_files listed added files.",
    ]


def openai_script(malformed: bool) -> list:
    noise = [{"content": "I will look at the code."}, call("edit", path="unidiff/patch.py")]
    return [
        call("bash", command=RUN_TEST),
        *(noise if malformed else []),
        call("edit", path="unidiff/patch.py", search=BAD, replace=GOOD),
        call("bash", command=RUN_TEST),
        call("submit"),
        {"content": "removed_files is fixed."},
    ]


@pytest.mark.parametrize("tool_format", ["cwm", "openai"])
@pytest.mark.parametrize("malformed", [False, True])
def test_fixes_a_real_bug_in_a_real_project(
    unidiff_repo, cli_env, tmp_path, tool_format, malformed
):
    failing = subprocess.run(
        [sys.executable, "-m", "unittest", "tests.test_removed"], cwd=unidiff_repo
    )
    assert failing.returncode != 0
    script = cwm_script(malformed) if tool_format == "cwm" else openai_script(malformed)
    with ScriptedServer(script) as server:
        result = run_cli(
            [
                "run",
                str(unidiff_repo),
                "--issue",
                "PatchSet.removed_files lists added files",
                "--base-url",
                server.base_url,
                "--model",
                "m",
                "--tool-format",
                tool_format,
            ],  # fmt: skip
            cli_env,
        )
    assert result.returncode == 0, result.stderr
    assert "format error" in result.stderr if malformed else "format error" not in result.stderr
    clone = tmp_path / "pristine"
    subprocess.run(["git", "clone", "-q", str(unidiff_repo), str(clone)], check=True)
    subprocess.run(["git", "apply", "-"], cwd=clone, input=result.stdout, text=True, check=True)
    passing = subprocess.run(
        [sys.executable, "-m", "unittest", "tests.test_removed"], cwd=clone, capture_output=True
    )
    assert passing.returncode == 0, passing.stderr
    assert result.stdout.count("diff --git") == 1
