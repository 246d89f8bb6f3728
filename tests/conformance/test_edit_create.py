"""edit and create against CWM's own plugin scripts, run as CWM runs them
(``python3 edit.py <<'EOF'`` with the body, in the session's directory) on a copy of the
same files: the same outcome, and wherever CWM succeeds the same bytes.

Known, documented differences are kept out of the generated cases and tested on their
own below: a CRLF file (CWM rewrites it as LF), an empty search text (CWM inserts at the
top of a file without a newline; cwm-agent refuses).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cwm_agent import tools
from cwm_agent.factory import open_runtime
from cwm_agent.protocol import parse_cwm_reply
from cwm_agent.settings import RuntimeSettings

from .conftest import PLUGINS

HEREDOC = "EOF_938176592"  # the delimiter CWM's plugin runner uses
LINES = ["a", "b", "  a", "def add(a, b):", "    return a - b", "", "x = 1", "a b", "\t"]
REPLACEMENT_LINES = [*LINES, "=======", "new", "    new"]


def run_plugin(name: str, body: str, cwd: Path) -> bool:
    """CWM's plugin on ``body``, as its tool runner invokes it; True on success."""
    script = f"{sys.executable} {PLUGINS / f'{name}.py'} <<'{HEREDOC}'\n{body}\n{HEREDOC}"
    proc = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, timeout=30)
    return proc.returncode == 0


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    repo = tmp_path_factory.mktemp("edit-conformance") / "repo"
    (repo / "t").mkdir(parents=True)
    (repo / "t" / "keep").write_text("")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    runtime = open_runtime(RuntimeSettings(), repo, "edit-conformance")
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def theirs(tmp_path_factory):
    """CWM's side: a plain folder with the same layout."""
    return tmp_path_factory.mktemp("cwm-side")


def reset(runtime, theirs: Path, files: dict[str, str], in_subdir: bool) -> Path:
    """Both sides hold exactly ``files`` (ours through the runtime: the commands may see
    the copy elsewhere than this machine does); both sessions sit in the root or in t/."""
    shutil.rmtree(theirs / "t", ignore_errors=True)
    (theirs / "t").mkdir()
    runtime.run(f"cd {runtime.root} && rm -rf t && mkdir t", 10)
    for name, text in files.items():
        (theirs / name).write_bytes(text.encode())
        runtime.write_file(name, text.encode())
    runtime.run(f"cd {runtime.root}/t" if in_subdir else f"cd {runtime.root}", 10)
    return theirs / "t" if in_subdir else theirs


def ours_run(runtime, tool: str, body: str):
    _, action = parse_cwm_reply(f"</think>\n<tool: {tool}>\n{body}\n</tool>")
    assert action is not None and action.tool == tool
    return tools.execute(action, runtime, timeout=30, max_output=100_000)


def same_tree(runtime, theirs: Path) -> None:
    listing = runtime.run(f"cd {runtime.root} && find t -type f | sort", 10).output
    mine = {name: runtime.read_file(name) for name in listing.split()}
    cwms = {
        str(p.relative_to(theirs)): p.read_bytes()
        for p in sorted((theirs / "t").rglob("*"))
        if p.is_file()
    }
    assert mine == cwms


texts = st.lists(st.sampled_from(LINES), min_size=1, max_size=8).map("\n".join)


@st.composite
def edits(draw):
    content = draw(texts) + draw(st.sampled_from(["", "\n", "\n\n"]))
    if draw(st.booleans()):  # a search that starts a line of the file and may end anywhere
        starts = [0] + [i + 1 for i, c in enumerate(content) if c == "\n"]
        start = draw(st.sampled_from(starts))
        end = draw(st.integers(start, len(content)))
        search = content[start:end]
    else:
        search = draw(texts)
    replace = draw(st.lists(st.sampled_from(REPLACEMENT_LINES), max_size=4).map("\n".join))
    return content, search, replace, draw(st.booleans())


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edits())
def test_edit_does_what_cwms_edit_does(runtime, theirs, case):
    content, search, replace, in_subdir = case
    where = reset(runtime, theirs, {"t/f.txt": content}, in_subdir)
    path = "f.txt" if in_subdir else "t/f.txt"
    body = f"{path}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE"
    cwm_ok = run_plugin("edit", body, where)
    observation = ours_run(runtime, "edit", body)
    if search == "":  # documented: an empty search text is refused here
        assert not observation.ok and "the search text is empty" in observation.output
        return
    assert observation.ok == cwm_ok, (body, content, observation.output)
    same_tree(runtime, theirs)


BODIES = [
    "t/f.txt\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE",
    "t/f.txt\n<<<<<<< SEARCH\na\n=======\n>>>>>>> REPLACE",  # no replacement line: both refuse
    "Here:\nt/f.txt\n<<<<<<< SEARCH\nb\n=======\nc\n>>>>>>> REPLACE trailing\nthanks",
    "t/f.txt\n<<<<<<< SEARCH\na\n=======\nX\n>>>>>>> REPLACE\nt/f.txt\n<<<<<<< SEARCH\nb\n"
    "=======\nY\n>>>>>>> REPLACE",  # two blocks: both refuse
    "t/f.txt\n<<<<<<< SEARCH\n\n=======\nZ\n>>>>>>> REPLACE",  # one empty line: both refuse
    "t/nope.txt\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE",
    "t/f.txt\n<<<<<<< SEARCH\na\nb\n=======\nab\n>>>>>>> REPLACE",
    "t/f.txt\n<<<<<<< SEARCH\nb\n\n=======\nB\n>>>>>>> REPLACE",
]


@pytest.mark.parametrize("body", BODIES)
def test_edit_bodies_as_cwm_reads_them(runtime, theirs, body):
    where = reset(runtime, theirs, {"t/f.txt": "a\nb\nc\n"}, False)
    assert ours_run(runtime, "edit", body).ok == run_plugin("edit", body, where)
    same_tree(runtime, theirs)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.sampled_from(["t/new.txt", "t/f.txt", "t/missing/new.txt", "new.txt", "t/"]),
    st.lists(st.sampled_from([*LINES, "\n"]), max_size=5).map("\n".join),
    st.booleans(),
)
def test_create_does_what_cwms_create_does(runtime, theirs, path, content, in_subdir):
    where = reset(runtime, theirs, {"t/f.txt": "old\n"}, in_subdir)
    if in_subdir:
        path = path.removeprefix("t/") or "."
    body = f"{path}\n{content}"
    cwm_ok = run_plugin("create", body, where)
    observation = ours_run(runtime, "create", body)
    assert observation.ok == cwm_ok, (body, observation.output)
    same_tree(runtime, theirs)


def test_documented_difference_crlf_stays_crlf(runtime, theirs):
    where = reset(runtime, theirs, {"t/f.txt": "a\r\nb\r\n"}, False)
    body = "t/f.txt\n<<<<<<< SEARCH\nb\n=======\nB\n>>>>>>> REPLACE"
    assert run_plugin("edit", body, where) and ours_run(runtime, "edit", body).ok
    assert (theirs / "t/f.txt").read_bytes() == b"a\nB\n"  # CWM: every line turned LF
    assert runtime.read_file("t/f.txt") == b"a\r\nB\r\n"  # here: kept


def test_documented_difference_empty_search(runtime, theirs):
    where = reset(runtime, theirs, {"t/f.txt": "only line"}, False)
    body = "t/f.txt\n<<<<<<< SEARCH\n\n=======\nfirst\n>>>>>>> REPLACE"
    assert run_plugin("edit", body, where)
    assert (theirs / "t/f.txt").read_text() == "firstonly line"  # CWM inserts at the top
    observation = ours_run(runtime, "edit", body)
    assert not observation.ok and "the search text is empty" in observation.output
