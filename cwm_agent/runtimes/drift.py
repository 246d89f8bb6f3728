"""The user's working tree changing under a run that works on an overlay of it.

The overlay's lower layer is the user's live tree: a file the user edits during the run
shows in the agent's copy at once (overlayfs leaves changes to a lower layer undefined;
in practice they show). Copying the tree at the start would freeze it, at the cost the
overlay exists to avoid; instead the changes are found and kept out of the agent's patch:

- ``user_changes``: the paths where the user's tree differs now from the base, which was
  made from that tree at the start (the base's index holds its stat data, so this costs
  a ``git status``, and reads nothing of the agent's);
- ``classify``: of those, the ones the agent's copy shows exactly as the user's tree has
  them are the user's alone (``foreign``: never in the agent's patch); the others the
  agent changed as well (``shared``: in its patch, against the tree as it was at the
  start, so they may not apply to the tree as it is now). Both are told to the user.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from ..errors import RuntimeFailure
from ..types import TreeDrift
from .baseline import Base
from .confined import Confined
from .gitcmd import run_git


def user_changes(top: str, base: Base, scratch: str) -> list[str]:
    """Paths (relative to ``top``) that differ between the user's tree and the base:
    changed, deleted, or new and not ignored. ``scratch``: a folder for a throw-away index.
    (No git command here writes an object, so none can touch the user's store.)"""
    fd, index = tempfile.mkstemp(prefix="drift-", dir=scratch)
    os.close(fd)
    try:
        shutil.copy2(base.index, index)  # its mtime too: git's racy-entry check needs it
        env = {
            "GIT_DIR": os.path.join(base.repo, ".git"),
            "GIT_WORK_TREE": top,
            "GIT_INDEX_FILE": index,
        }
        try:  # touched but unchanged files are not changes
            run_git(top, "update-index", "-q", "--refresh", env=env)
        except RuntimeFailure:  # "needs update": exactly what diff-files lists next
            pass
        changed = run_git(top, "diff-files", "--name-only", "-z", env=env)
        new = run_git(top, "ls-files", "-z", "--others", "--exclude-standard", env=env)
    finally:
        os.unlink(index)
    names = {os.fsdecode(n) for n in (changed + new).split(b"\0") if n}
    return sorted(n for n in names if not n.endswith("/"))  # not nested repositories


def classify(paths: list[str], copy: Confined, tree: Confined) -> TreeDrift:
    """Split the user's changed ``paths``: those the agent's ``copy`` shows as the user's
    ``tree`` has them (absent from both included) are the user's alone."""
    foreign = [p for p in paths if copy.entry(p) == tree.entry(p)]
    shared = [p for p in paths if p not in foreign]
    return TreeDrift(tuple(foreign), tuple(shared))


def notices(drift: TreeDrift, told: set[str]) -> list[str]:
    """What the user should hear about ``drift`` that ``told`` does not hold yet (updated)."""
    said = []
    foreign = [p for p in drift.foreign if p not in told]
    if foreign:
        said.append(
            f"your working tree changed during the run ({_listed(foreign)}): the agent's "
            "copy, an overlay of your tree, showed these changes, but they are yours, not "
            "the agent's, and are left out of its patch"
        )
    shared = [p for p in drift.shared if p not in told]
    if shared:
        said.append(
            f"{_listed(shared)} changed in your working tree during the run and the agent "
            "changed them too: its patch is against your tree as it was at the start, so "
            "these files may not apply to it as it is now"
        )
    told.update(foreign + shared)
    return said


def _listed(paths: list[str]) -> str:
    return ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")
