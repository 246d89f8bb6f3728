"""What killed local runs leave behind in the temp folder, found and cleared.

A local run keeps its working copy, base repository and shell files in a folder
``cwm-agent-*`` under the temp directory and removes it when it ends. A run killed
outright (SIGKILL, the out-of-memory killer, a crash of the interpreter) cannot: the
folder stays. ``claim`` writes who owns a fresh folder (``reaper.owner``); ``clear``
removes the folders whose owner no longer runs, after killing any process of theirs
still working inside (the watchdog normally got them already).
"""

from __future__ import annotations

import glob
import os
import tempfile
from dataclasses import dataclass

from .reaper import kill_inside, owner, owner_state
from .snapshot import remove_tree

PREFIX = "cwm-agent-"
OWNER_FILE = ".owner"  # in the folder: reaper.owner() of the process that made it


def claim(folder: str) -> None:
    """Record this process as the owner of ``folder`` (a fresh ``PREFIX`` folder)."""
    with open(os.path.join(folder, OWNER_FILE), "w", encoding="utf-8") as f:
        f.write(owner() + "\n")


@dataclass(frozen=True)
class Cleared:
    removed: list[str]  # folders of runs that are gone
    kept: list[str]  # of runs still going (or made before a reboot, or on another machine)
    unknown: list[str]  # no owner recorded (another version, or not ours): kept


def clear(temp_dir: str | None = None) -> Cleared:
    """Remove the ``PREFIX`` folders in ``temp_dir`` (the temp directory) whose owner is gone."""
    done = Cleared([], [], [])
    pattern = os.path.join(temp_dir or tempfile.gettempdir(), PREFIX + "*")
    for folder in sorted(glob.glob(pattern)):
        if not os.path.isdir(folder) or os.path.islink(folder):
            continue
        try:
            with open(os.path.join(folder, OWNER_FILE), encoding="utf-8") as f:
                recorded = f.read().strip()
        except (OSError, UnicodeDecodeError):
            done.unknown.append(folder)
            continue
        if owner_state(recorded) != "gone":  # alive, or made on another machine
            done.kept.append(folder)
            continue
        kill_inside(os.path.realpath(folder))
        remove_tree(folder)
        done.removed.append(folder)
    return done
