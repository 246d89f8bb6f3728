"""The working-tree diff sees an edit made within the same second as the baseline.

git trusts a file's stat data (mtime in whole seconds, size) unless the entry is
"racily clean": as recent as the index file itself. LocalRuntime.diff stages in a
copy of the index; a copy with a fresh mtime made git trust stale stat data, and a
same-size edit (``a - b`` -> ``a + b``) made right after the baseline vanished from
the diff (seen about once in 40 scripted runs). The state is built here on purpose:
entry, index and edited file all in one second, long ago.
"""

from __future__ import annotations

import os

import pytest
from conftest import git
from test_reliability_support import small_repo

from cwm_agent.runtimes.local import LocalRuntime

LONG_AGO = 978_307_200 * 10**9 + 500_000_000  # 2001-01-01 00:00:00.5, in ns


@pytest.mark.parametrize("mode", ["auto", "none"])
def test_same_second_same_size_edit_is_in_the_diff(tmp_path, mode):
    repo = small_repo(tmp_path / "repo")
    os.utime(repo / "pkg" / "mod.py", ns=(LONG_AGO, LONG_AGO))
    git(repo, "add", "-A")  # the user's index records that mtime
    with LocalRuntime.create(repo, sandbox=mode) as runtime:
        path = os.path.join(runtime.view, "pkg", "mod.py")
        # The diff's index starts from the base's, written "that second" too.
        index = runtime.baseline.index
        os.utime(index, ns=(LONG_AGO + 1000, LONG_AGO + 1000))
        runtime.write_file("pkg/mod.py", b"def f():\n    return 2\n")  # same size
        os.utime(path, ns=(LONG_AGO + 2000, LONG_AGO + 2000))  # ... and edited that second
        assert "+    return 2" in runtime.diff()
