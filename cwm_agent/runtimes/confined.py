"""File access confined to the working copy, safe against a process racing it.

The agent's commands run beside the harness and may change the copy at any moment (swap
a directory with a symlink to a host folder while a file is being created, say). So no
path the model gives is checked and then opened by name: it is resolved one component
at a time from directory descriptors held open, each opened with ``O_NOFOLLOW``. A
symlink met on the way is read (``readlinkat``) and resolved here, against the
filesystem as the commands see it; ``..`` is taken from the stack of directories already
open, never from the disk. Whatever the path or the links say, resolution either stays
below the copy's root or ends in a refusal; the file itself is created with
``O_CREAT|O_EXCL|O_NOFOLLOW``, or opened without following a link to be overwritten,
and read or written only if it is a regular file (a FIFO cannot block us).

This is what ``openat2`` with ``RESOLVE_IN_ROOT`` does, done portably and with the
commands' whole filesystem as the root, plus a refusal of every step out of the copy
(the root's own ancestors may be passed through, so a link to ``../repo/x`` from the
copy's top still works, as it did when paths were checked by name).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from typing import TypeVar

from ..errors import ToolError
from ..types import FileTooLarge

T = TypeVar("T")
MAX_LINKS = 40  # symlinks followed resolving one path, as the kernel allows
_DIR = os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_PATH", os.O_RDONLY)
_FILE = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO must not block the harness


class _Outside(Exception):
    """The path (or a symlink on it) leads out of the copy."""


class _Link(Exception):
    """The final component is a symlink: resolve its target and go on."""


class Confined:
    """Read, write and test files below ``root`` (the copy as the commands see it), which
    this machine reaches at ``view`` (the same path, or one through ``/proc/PID/root``)."""

    def __init__(self, view: str, root: str) -> None:
        self.view = view
        self.root = root
        self._parts = [p for p in root.split("/") if p]

    def read(self, path: str, limit: int | None = None) -> bytes:
        """The regular file's bytes; ``FileTooLarge`` past ``limit`` bytes (its size told
        by ``fstat``, and never more than ``limit`` + 1 bytes read: it may be growing)."""

        def read_at(parent: int, name: str) -> bytes:
            fd = _open_final(parent, name, os.O_RDONLY)
            try:
                _regular(fd)
                return _read_all(fd, limit)
            finally:
                os.close(fd)

        return self._at(path, read_at, "read")

    def write(self, path: str, data: bytes) -> None:
        """Overwrite a regular file, or create it (its parent must exist)."""

        def write_at(parent: int, name: str) -> None:
            try:
                fd = _open_final(parent, name, os.O_WRONLY)
            except FileNotFoundError:  # created here, never through a link (O_EXCL)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE
                fd = os.open(name, flags, 0o666, dir_fd=parent)
            try:
                _regular(fd)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.ftruncate(fd, len(data))  # cheaper than O_TRUNC on a busy disk
            finally:
                os.close(fd)

        self._at(path, write_at, "write")

    def exists(self, path: str) -> bool:
        def exists_at(parent: int, name: str) -> bool:
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return False
            if stat.S_ISLNK(st.st_mode):
                raise _Link
            return True

        # A missing directory on the way, a file there or a loop: nothing to be found.
        return self._at(path, exists_at, "read", missing=False)

    def entry(self, path: str) -> tuple[object, ...] | None:
        """What git sees at ``path`` (relative to the root; no symlink followed anywhere
        on it, as git follows none): None when nothing is there, else its kind and its
        content, for comparing."""
        parts = _parts(path)
        if not parts or ".." in parts:
            return None
        stack = [self._open_root()]
        try:
            for part in parts[:-1]:
                stack.append(os.open(part, _DIR, dir_fd=stack[-1]))
            st = os.stat(parts[-1], dir_fd=stack[-1], follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                return ("link", os.readlink(parts[-1], dir_fd=stack[-1]))
            if not stat.S_ISREG(st.st_mode):
                return ("other", stat.S_IFMT(st.st_mode))
            fd = _open_final(stack[-1], parts[-1], os.O_RDONLY)
            stack.append(fd)
            _regular(fd)
            return ("file", bool(st.st_mode & 0o100), _digest(fd))  # memory flat, any size
        except (OSError, _Link):  # a link or a file on the way, gone, swapped: nothing
            return None
        finally:
            for fd in stack:
                os.close(fd)

    # -- resolution ---------------------------------------------------------------------
    def _at(
        self, path: str, final: Callable[[int, str], T], verb: str, missing: T | None = None
    ) -> T:
        """``final(parent_fd, name)`` on the last component of ``path`` (relative: to the
        root), every directory on the way opened without following links. An OSError is a
        ToolError that says what failed, or gives ``missing`` when that is not None."""
        if "\0" in path:
            raise ToolError(f"{path!r}: refused, not a valid file path (a NUL byte)")
        try:
            os.fsencode(path)
        except UnicodeError:  # lone surrogates that stand for no byte
            raise ToolError(f"{path!r}: refused, not a valid file path") from None
        try:
            return self._walk(path, final)
        except _Outside:
            raise ToolError(
                f"{path}: refused, the path is outside the repository ({self.root}); "
                "only files inside it can be read or written"
            ) from None
        except FileTooLarge:
            raise  # the reader says what its limit is for
        except OSError as exc:
            if missing is not None:
                return missing
            if verb == "write" and exc.errno in (errno.ENOENT, errno.ENOTDIR) and exc.filename:
                raise ToolError(
                    f"{path}: the parent directory does not exist; create it first"
                ) from None
            raise ToolError(f"{path}: cannot {verb}: {exc.strerror}") from None

    def _walk(self, path: str, final: Callable[[int, str], T]) -> T:
        pending = _parts(path)[::-1]
        # Outside the root, only the root's own ancestors can be passed through: ``depth``
        # is how many of the root's components the path has matched (None: inside).
        depth: int | None = 0 if path.startswith("/") else None
        stack: list[int] = []  # the open directories from the root down, when inside
        links = 0
        try:
            if depth is None:
                stack.append(self._open_root())
            while pending:
                part = pending.pop()
                if part == "..":
                    if depth is not None:
                        depth = max(0, depth - 1)
                    elif len(stack) > 1:
                        os.close(stack.pop())
                    else:  # above the root: only its ancestors can be named from here
                        os.close(stack.pop())
                        depth = len(self._parts) - 1
                    continue
                if depth is not None:  # outside: the next ancestor of the root, or refused
                    if depth >= len(self._parts) or part != self._parts[depth]:
                        raise _Outside
                    depth += 1
                    if depth == len(self._parts):
                        stack.append(self._open_root())
                        depth = None
                    continue
                if not pending:
                    try:
                        return final(stack[-1], part)
                    except _Link:
                        target = os.readlink(part, dir_fd=stack[-1])
                else:
                    try:
                        stack.append(os.open(part, _DIR, dir_fd=stack[-1]))
                        continue
                    except OSError as exc:
                        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                            raise
                        target = _link_or_raise(part, stack[-1], exc)
                links += 1
                if links > MAX_LINKS or not target:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                pending.extend(_parts(target)[::-1])
                if target.startswith("/"):  # absolute: from the filesystem's root again
                    while stack:
                        os.close(stack.pop())
                    depth = 0
            if depth is not None:  # the path ends on an ancestor of the root
                raise _Outside
            return final(stack[-1], ".")  # it ends on a directory ("src/..", "")
        finally:
            for fd in stack:
                os.close(fd)

    def _open_root(self) -> int:
        try:
            return os.open(self.view, _DIR)
        except OSError as exc:
            raise OSError(exc.errno, f"the working copy is gone ({exc.strerror})") from None


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def _open_final(parent: int, name: str, mode: int) -> int:
    """The file ``name`` in ``parent`` for reading or writing, never through a symlink."""
    try:
        return os.open(name, mode | _FILE, dir_fd=parent)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
    raise _Link


def _link_or_raise(name: str, parent: int, exc: OSError) -> str:
    """The target of the symlink ``name`` that could not be opened as a directory; the
    original error when it is no symlink (a file on the way: "Not a directory")."""
    try:
        return os.readlink(name, dir_fd=parent)
    except OSError:
        raise OSError(exc.errno, exc.strerror, name) from None


def _read_all(fd: int, limit: int | None = None) -> bytes:
    if limit is not None and (size := os.fstat(fd).st_size) > limit:
        raise FileTooLarge(size, limit)
    chunks, total = [], 0
    while chunk := os.read(fd, 1 << 20 if limit is None else min(1 << 20, limit + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if limit is not None and total > limit:
            raise FileTooLarge(max(total, os.fstat(fd).st_size), limit)
    return b"".join(chunks)


def _digest(fd: int) -> tuple[int, str]:
    """The file's size and SHA-256, read in pieces."""
    found, size = hashlib.sha256(), 0
    while chunk := os.read(fd, 1 << 20):
        found.update(chunk)
        size += len(chunk)
    return size, found.hexdigest()


def _regular(fd: int) -> None:
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "not a regular file")
