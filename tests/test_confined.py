"""The file tools' resolver (runtimes/confined.py) on a real directory tree.

The copy is ``/repo`` inside a fake filesystem root, the way the harness reaches the
sandbox's copy through ``/proc/PID/root``: links are resolved against that root, never
against this machine's, and nothing outside ``/repo`` can be read or written.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from cwm_agent.errors import ToolError
from cwm_agent.runtimes.confined import MAX_LINKS, Confined

OUTSIDE = "outside the repository"


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """``tmp_path/root`` stands for the commands' ``/``: ``/repo`` is the copy, ``/etc`` and
    ``/secret`` are outside it."""
    root = tmp_path / "root"
    repo = root / "repo"
    (repo / "src" / "pkg").mkdir(parents=True)
    (repo / "src" / "app.py").write_text("app\n")
    (repo / "src" / "pkg" / "mod.py").write_text("mod\n")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("outside\n")
    (root / "secret").write_text("outside\n")
    return root


@pytest.fixture
def files(fake_root: Path) -> Confined:
    return Confined(str(fake_root / "repo"), "/repo")


def link(fake_root: Path, name: str, target: str) -> None:
    os.symlink(target, fake_root / "repo" / name)


def test_plain_paths_relative_and_absolute(files: Confined, fake_root: Path) -> None:
    assert files.read("src/app.py") == b"app\n"
    assert files.read("/repo/src/pkg/mod.py") == b"mod\n"
    assert files.read("src/./pkg/../app.py") == b"app\n"
    assert files.read("/repo/../repo/src/app.py") == b"app\n"  # through the root's parent
    files.write("src/new.py", b"new\n")
    files.write("src/app.py", b"x")  # overwritten and cut to its new length
    assert (fake_root / "repo" / "src" / "new.py").read_bytes() == b"new\n"
    assert (fake_root / "repo" / "src" / "app.py").read_bytes() == b"x"
    assert files.exists("src") and files.exists("/repo") and not files.exists("src/nope")


def test_links_inside_are_followed_as_the_commands_see_them(
    files: Confined, fake_root: Path
) -> None:
    link(fake_root, "rel", "src/app.py")
    link(fake_root, "abs", "/repo/src/pkg")  # absolute: /repo is the copy in the fake root
    link(fake_root, "back-in", "../repo/src")  # leaves the root by name and comes back
    link(fake_root, "dangling", "src/created.py")
    assert files.read("rel") == b"app\n"
    assert files.read("abs/mod.py") == b"mod\n"
    assert files.read("abs/../app.py") == b"app\n"  # `..` of the link's target, physically
    assert files.read("back-in/app.py") == b"app\n"
    assert not files.exists("dangling")
    files.write("dangling", b"made\n")  # a dangling link inside: its target is created
    assert (fake_root / "repo" / "src" / "created.py").read_bytes() == b"made\n"
    assert os.path.islink(fake_root / "repo" / "dangling")


@pytest.mark.parametrize(
    "path",
    ["../secret", "/etc/passwd", "/", "/repo/..", "src/../../secret", "/repo/../etc/passwd"],
)
def test_dot_dot_and_absolute_paths_out_of_the_root_are_refused(files: Confined, path: str) -> None:
    for call in (files.read, files.exists, lambda p: files.write(p, b"x")):
        with pytest.raises(ToolError, match=OUTSIDE):
            call(path)


@pytest.mark.parametrize(
    "target", ["/etc", "/etc/passwd", "..", "../secret", "../../../../secret", "/secret"]
)
def test_links_out_of_the_root_are_refused(files: Confined, fake_root: Path, target: str) -> None:
    link(fake_root, "out", target)
    for path in ("out", "out/passwd", "src/../out/x"):
        with pytest.raises(ToolError, match=OUTSIDE):
            files.write(path, b"pwned")
        with pytest.raises(ToolError, match=OUTSIDE):
            files.read(path)
    assert (fake_root / "secret").read_text() == "outside\n"
    assert (fake_root / "etc" / "passwd").read_text() == "outside\n"
    assert sorted(os.listdir(fake_root)) == ["etc", "repo", "secret"]


def test_a_link_is_resolved_against_the_commands_root_not_this_machines(
    files: Confined, fake_root: Path
) -> None:
    """/etc exists on this machine too: a link to it must reach the fake root's /etc
    (refused: outside), and a link to /repo must work although this machine has none."""
    link(fake_root, "etc-link", "/etc/hostname")
    with pytest.raises(ToolError, match=OUTSIDE):
        files.read("etc-link")
    link(fake_root, "repo-link", "/repo/src/app.py")
    assert files.read("repo-link") == b"app\n"


def test_loops_and_long_chains_end_in_an_error(files: Confined, fake_root: Path) -> None:
    link(fake_root, "a", "b")
    link(fake_root, "b", "a")
    link(fake_root, "self", "self/x")
    for path in ("a", "self", "a/x"):
        with pytest.raises(ToolError, match="Too many levels of symbolic links"):
            files.read(path)
        assert not files.exists(path)
    for n in range(MAX_LINKS + 1):  # l0 -> l1 -> ... -> l40 -> src/app.py
        link(fake_root, f"l{n}", f"l{n + 1}" if n < MAX_LINKS else "src/app.py")
    assert files.read(f"l{2}") == b"app\n"  # 39 links: fine
    with pytest.raises(ToolError, match="Too many levels"):
        files.read("l0")  # 41 links


def test_what_is_not_a_regular_file(files: Confined, fake_root: Path) -> None:
    os.mkfifo(fake_root / "repo" / "fifo")
    result: list[BaseException | bytes] = []

    def read_fifo() -> None:  # a FIFO with no writer must not block the harness
        try:
            result.append(files.read("fifo"))
        except ToolError as exc:
            result.append(exc)

    thread = threading.Thread(target=read_fifo, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive() and "not a regular file" in str(result[0])
    with pytest.raises(ToolError, match="not a regular file|No such device"):  # no reader
        files.write("fifo", b"x")
    with pytest.raises(ToolError, match="Is a directory"):
        files.read("src")
    with pytest.raises(ToolError, match="Is a directory"):
        files.write("src/pkg/..", b"x")
    with pytest.raises(ToolError, match="parent directory does not exist"):
        files.write("nodir/new.py", b"x")
    with pytest.raises(ToolError, match="parent directory does not exist"):
        files.write("src/app.py/new.py", b"x")  # a file on the way
    with pytest.raises(ToolError, match="cannot read: No such file"):
        files.read("src/missing.py")


@pytest.mark.parametrize("path", ["a\0b", "bad\udc80\ud800"])
def test_malformed_paths(files: Confined, path: str) -> None:
    with pytest.raises(ToolError, match="not a valid file path"):
        files.exists(path)


def test_a_directory_replaced_after_it_was_opened_keeps_the_file_inside(
    files: Confined, fake_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the fd walk is for: once ``d`` is open, swapping it for a link to the outside
    cannot move the file there (here the swap happens at the worst moment, by hand)."""
    repo = fake_root / "repo"
    (repo / "d").mkdir()
    os.symlink("/etc", repo / "l")
    real_open = os.open

    def swapping_open(path, flags, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        if path == "d":  # d is open: now make "d" a link out of the copy
            os.rename(repo / "d", repo / "d-moved")
            os.rename(repo / "l", repo / "d")
        return fd

    monkeypatch.setattr(os, "open", swapping_open)
    files.write("d/f", b"stays inside\n")
    monkeypatch.undo()
    assert (repo / "d-moved" / "f").read_bytes() == b"stays inside\n"
    assert sorted(os.listdir(fake_root / "etc")) == ["passwd"]


def test_a_read_limit_is_told_by_the_size_and_holds_for_a_growing_file(
    files: Confined, fake_root: Path
) -> None:
    from cwm_agent.types import FileTooLarge

    assert files.read("src/app.py", limit=4) == b"app\n"
    with pytest.raises(FileTooLarge) as refused:
        files.read("src/app.py", limit=3)
    assert (refused.value.size, refused.value.limit) == (4, 3)
    with open(fake_root / "repo" / "huge", "wb") as sparse:
        sparse.truncate(1 << 40)  # a terabyte that takes no disk: told, never read
    with pytest.raises(FileTooLarge):
        files.read("huge", limit=1 << 20)
    # A file that grows after its size was taken (here a pipe, whose size is 0): no more
    # than limit + 1 bytes are read.
    from cwm_agent.runtimes.confined import _read_all

    reader, writer = os.pipe()
    try:
        os.write(writer, b"x" * 100)
        with pytest.raises(FileTooLarge):
            _read_all(reader, 10)
        assert len(os.read(reader, 1000)) == 89  # the rest was never read
    finally:
        os.close(reader)
        os.close(writer)
