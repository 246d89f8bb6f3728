"""How large a patch is, and whether it may be carried (``--max-patch-kb``).

A command can write a file of any size, and ``git diff`` puts all of it into the patch:
a 200 MB file once cost 2.1 GB of memory and a 549 MB trajectory. A patch over the limit
is refused before anything parses it, with the files that make it large named, so the
model can leave them out; the working-tree diff of such a run goes beside the
trajectory (``Trajectory.keep_working_tree_diff``).
"""

from __future__ import annotations

import re
from typing import AnyStr

from .errors import PatchError


class PatchTooLarge(PatchError):
    """The patch holds more than a patch may (``--max-patch-kb``)."""


def check_size(patch: str | bytes, max_bytes: int) -> None:
    """``PatchTooLarge`` when ``patch`` (text, or a file's bytes) is more than ``max_bytes``
    bytes, naming the files that make it large. Linear, and no copy of a large patch."""
    size = len(patch)  # for text, characters: never more than its bytes
    if isinstance(patch, str) and size <= max_bytes:
        size = len(patch.encode("utf-8", "surrogateescape"))  # small enough to encode
    if size <= max_bytes:
        return
    largest = sorted(file_sizes(patch), key=lambda item: -item[1])[:3]
    files = "; its largest files: " + ", ".join(f"{p} ({human_size(n)})" for p, n in largest)
    raise too_large(size, max_bytes, files if largest else "")


def too_large(size: int, max_bytes: int, files: str = "", what: str = "the patch") -> PatchTooLarge:
    """The refusal of a patch (or a patch file, never read: ``what``) of ``size`` bytes."""
    return PatchTooLarge(
        f"{what} is {human_size(size)}, more than the {human_size(max_bytes)} a patch "
        f"may hold (--max-patch-kb {max_bytes // 1024}){files}",
        "leave generated, data and build files out of the patch (delete them, or "
        "`git rm --cached` them if you staged them), then make the patch again",
    )


def file_sizes(patch: str | bytes) -> list[tuple[str, int]]:
    """(path, size) of each file's diff in a git patch, in order (characters for text)."""
    if isinstance(patch, bytes):
        found = _sizes(patch, rb"^diff --git ", b"\n", b" b/")
        return [(path.decode("utf-8", "replace"), size) for path, size in found]
    return _sizes(patch, r"^diff --git ", "\n", " b/")


def _sizes(
    patch: AnyStr, header: AnyStr, newline: AnyStr, new_side: AnyStr
) -> list[tuple[AnyStr, int]]:
    starts: list[int] = [m.start() for m in re.finditer(header, patch, re.MULTILINE)]
    found: list[tuple[AnyStr, int]] = []
    for start, end in zip(starts, [*starts[1:], len(patch)], strict=True):
        stop = patch.find(newline, start, end)
        line = patch[start : stop if stop != -1 else end]
        path = line.rsplit(new_side, 1)[-1] if new_side in line else line[len("diff --git ") :]
        found.append((path, end - start))
    return found


def human_size(size: int) -> str:
    """1536 -> "1.5 KiB"; 3 * 2**20 -> "3.0 MiB"."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
