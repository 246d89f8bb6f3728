"""edit / create / submit never reach outside the private copy (local runtime).

Only the file tools are fenced: bash runs with the user's own rights (the local
runtime is not a sandbox; --runtime docker is). Every refusal is an observation the
model reads, never an exception, and nothing outside the copy changes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import git
from test_reliability_support import small_repo

from cwm_agent.runtimes.local import LocalRuntime
from cwm_agent.tools import execute, submit_patch
from cwm_agent.types import Action

OUTSIDE = "refused, the path is outside the repository"


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory):
    """A user repository holding symlinks that point out, and a file outside it."""
    tmp_path = tmp_path_factory.mktemp("paths")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("do not touch\n")
    repo = small_repo(tmp_path / "repo")
    os.symlink(outside, repo / "out-dir")
    os.symlink(outside / "secret.txt", repo / "out-file")
    os.symlink(outside / "not-yet.txt", repo / "out-dangling")
    os.symlink("pkg/mod.py", repo / "in-link")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "links")
    runtime = LocalRuntime.create(repo)
    yield runtime, outside
    runtime.close()


@pytest.fixture
def world(shared_world):
    """The shared world; after each test, nothing outside the copy has changed."""
    yield shared_world
    outside = shared_world[1]
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "do not touch\n"


def edit(path: str, search: str = "do not touch", replace: str = "touched") -> Action:
    return Action("edit", {"path": path, "search": search + "\n", "replace": replace + "\n"})


def create(path: str, content: str = "x") -> Action:
    return Action("create", {"path": path, "content": content})


def run(runtime, action):
    return execute(action, runtime, timeout=10, max_output=4000)


ESCAPES = [
    "../outside/secret.txt",
    "pkg/../../outside/secret.txt",
    "out-dir/secret.txt",  # a symlinked directory pointing out
    "out-file",  # a symlinked file pointing out
    "/etc/hostname",
    "/",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_edit_outside_is_refused(world, path):
    runtime, outside = world
    path = path.replace("../outside", f"../../{outside.parent.name}/outside")
    result = run(runtime, edit(path))
    assert not result.ok and OUTSIDE in result.output
    assert result.output.startswith(path)  # names the path it refused


@pytest.mark.parametrize(
    "path",
    [
        "../escape.txt",
        "pkg/../../escape.txt",
        "out-dir/new.txt",
        "out-dangling",  # creating would write the symlink's target outside
        "/tmp/cwm-agent-escape-test.txt",
    ],
)
def test_create_outside_is_refused(world, path):
    runtime, _ = world
    result = run(runtime, create(path))
    assert not result.ok and OUTSIDE in result.output
    assert not os.path.exists("/tmp/cwm-agent-escape-test.txt")
    assert not os.path.exists(Path(runtime.root).parent / "escape.txt")


def test_absolute_outside_path_through_the_real_root(world):
    runtime, outside = world
    result = run(runtime, edit(str(outside / "secret.txt")))
    assert not result.ok and OUTSIDE in result.output


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (create("a\x00b.py"), "not a valid file path"),
        (edit("pkg/mod\x00.py"), "not a valid file path"),
        (create("pkg/"), "names a directory"),
        (create(""), "the path is empty"),
        (edit("pkg"), "cannot read"),
    ],
)
def test_malformed_paths_are_refused_with_a_message(world, action, message):
    runtime, _ = world
    result = run(runtime, action)
    assert not result.ok and message in result.output


def test_paths_that_stay_inside_are_allowed(world):
    runtime, _ = world
    root = runtime.root
    assert run(runtime, edit("in-link", "    return 1", "    return 2")).ok  # inside -> inside
    assert run(runtime, edit(f"{root}/pkg/mod.py", "    return 2", "    return 3")).ok
    assert run(runtime, edit("pkg/../pkg/./mod.py", "    return 3", "    return 4")).ok
    assert run(runtime, create(f"{root}/pkg/new_inside.py")).ok
    assert runtime.read_file("pkg/mod.py").endswith(b"return 4\n")


@pytest.mark.parametrize("path", ["../../outside/secret.txt", "/etc/hostname", "out-file"])
def test_submit_outside_is_rejected_not_read(world, path):
    runtime, _ = world
    observation, patch = submit_patch(runtime, path, runtime.base_dir, runtime.base)
    assert patch is None and not observation.ok
    assert observation.output.startswith("Submission rejected:")
    assert "do not touch" not in observation.output
