"""Symlinks a patch adds that point outside the repository: ``--apply`` and ``validate``
say so.

``git apply`` writes a symlink as the patch has it, so a patch can add ``notes -> ~/.ssh``
or ``cache -> ../../shared``; later writes through it (an editor, a build, the next run's
tools) land outside the repository. Such a link is not refused (one into ``/usr/share``
can be what the project wants), but the user hears of it before it matters.
"""

from __future__ import annotations

import posixpath
import re

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

_LINK_MODE = re.compile(r"^(?:new file mode|new mode|index \S+) 120000$")


def outside_links(patch: str, top: str) -> list[str]:
    """``PATH -> TARGET`` for each symlink ``patch`` creates or retargets whose target
    leaves the repository at ``top`` (absolute elsewhere, or ``..`` past its root)."""
    try:
        files = PatchSet(patch)
    except UnidiffParseError:
        return []  # validation says what is wrong with it
    found = []
    for changed in files:
        if not any(_LINK_MODE.match(line.rstrip("\n")) for line in changed.patch_info or ()):
            continue
        added = [line.value for hunk in changed for line in hunk if line.is_added]
        target = "".join(added).rstrip("\n")
        if target and _leaves(changed.path, target, top):
            found.append(f"{changed.path} -> {target}")
    return found


def warning(links: list[str]) -> str:
    shown = ", ".join(links[:5]) + (f" and {len(links) - 5} more" if len(links) > 5 else "")
    return (
        f"the patch adds {len(links)} symlink(s) pointing outside the repository: {shown}; "
        "what is written through them lands there"
    )


def _leaves(path: str, target: str, top: str) -> bool:
    if posixpath.isabs(target):
        root = posixpath.normpath(top)
        resolved = posixpath.normpath(target)
        return resolved != root and not resolved.startswith(root.rstrip("/") + "/")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return resolved == ".." or resolved.startswith("../")
