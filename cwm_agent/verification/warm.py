"""A warm runtime: one per instance, put back exactly between candidates, and checked.

Starting a container or a sandboxed copy per candidate costs more than most test runs.
Here the base is snapshotted once (``warm_scripts.py``: a private git repository beside
the repository's own ``.git``); after each candidate the tree is put back (processes the
runs left killed, ``.git`` restored, every file, mode and new path undone) and the
fingerprint taken again. Only a fingerprint equal to the snapshot's lets the next
candidate run there; otherwise the runtime is closed and a fresh one opened, and the
reason is kept (``Warm.fallbacks``): a candidate never sees another's leftovers.

Outside the repository the reset restores nothing, but it looks at the box's Python
environments (``site_packages``: every user of ``Warm`` watches them by default), where
an install of the project lands: a change there cannot be put back, so it costs a fresh
runtime instead of a verified reset.

Independent of how commands run: a ``Box`` is anything with ``run``, ``read_file``,
``write_file`` and ``close`` (a ``Runtime``, or evaluate's grading container).
"""

from __future__ import annotations

import posixpath
import secrets
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cwm_agent.errors import CwmError, Interrupted, RuntimeFailure
from cwm_agent.types import CommandResult

from . import warm_scripts as scripts

SCRIPT_TIMEOUT = 600.0  # seconds for a snapshot or a reset (hashing a large tree once)
_PARTS = {
    "T": "file contents",
    "L": "paths or modes",
    "G": ".git",
    "W": "watched folders outside the repository",
}
# The site-packages folders of the box's Pythons: the one its shell finds (a runtime's
# session has the environment activated: SWE-bench's testbed), the user's (watched even
# before it exists: a `pip install --user` makes it), and every conda env's (a grading
# container's plain `bash -c` finds conda's base Python, not the testbed env).
SITE_PACKAGES = r"""
for py in python3 python; do
  command -v "$py" >/dev/null 2>&1 || continue
  "$py" -c 'import site
for p in site.getsitepackages() + [site.getusersitepackages()]: print(p)' 2>/dev/null
done
ls -d /opt/miniconda3/envs/*/lib/python*/site-packages 2>/dev/null
true
"""


class Box(Protocol):
    """What the warm runtime needs of a runtime."""

    root: str

    def run(self, command: str, timeout: float) -> CommandResult: ...

    def read_file(self, path: str) -> bytes: ...

    def write_file(self, path: str, data: bytes) -> None: ...

    def close(self) -> None: ...


class WarmError(RuntimeFailure):
    """The snapshot could not be taken, or the tree could not be put back (the reason): a
    runtime failure, which the execution stage turns into its loud "execution stopped"."""


@dataclass(frozen=True)
class Fingerprint:
    """The state the reset is checked against (see ``warm_scripts``)."""

    parts: tuple[tuple[str, str], ...]
    strays: int = 0

    @classmethod
    def parse(cls, output: str) -> Fingerprint:
        line = output.strip().splitlines()[-1] if output.strip() else ""
        found = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if set(found) != {*_PARTS, "P"} or not found["P"].isdigit():
            raise WarmError(f"no fingerprint in: {output.strip()[-300:]!r}")
        return cls(tuple((k, found[k]) for k in _PARTS), int(found["P"]))

    def differences(self, base: Fingerprint) -> list[str]:
        """What is not as in ``base``, in words."""
        pairs = zip(self.parts, base.parts, strict=True)
        changed = [_PARTS[k] for (k, v), (_, b) in pairs if v != b]
        if self.strays:
            changed.append(f"{self.strays} process(es) left running")
        return changed


class WarmTree:
    """The snapshot of one box's repository, and its verified reset."""

    def __init__(self, box: Box, private_pids: bool, watch: Sequence[str] = ()) -> None:
        self.box = box
        self.token = secrets.token_hex(6)
        self.private_pids = private_pids
        self.watch = tuple(watch)
        self.scratch = f".git/{scripts.SCRATCH}{self.token}"  # relative to the root
        self.base: Fingerprint | None = None

    def path(self, name: str) -> str:
        """A scratch file's absolute path in the box (inside .git: no test sees it)."""
        return posixpath.join(self.box.root, self.scratch, name)

    def _script(self, template: str) -> CommandResult:
        text = scripts.fill(template, self.box.root, self.token, self.private_pids, self.watch)
        return self.box.run(text, SCRIPT_TIMEOUT)

    def open_scratch(self) -> None:
        """The scratch folder alone (a fresh runtime per candidate needs no snapshot)."""
        made = self.box.run(f"mkdir -p -- {shlex.quote(self.path(''))}", 60)
        if made.exit_code != 0:
            raise WarmError(f"cannot make the scratch folder: {made.output.strip()[-300:]}")

    def snapshot(self) -> Fingerprint:
        result = self._script(scripts.PREPARE)
        if result.exit_code != 0 or result.timed_out:
            raise WarmError(f"no snapshot: {_tail(result)}")
        self.base = Fingerprint.parse(result.output)
        return self.base

    def run(self, command: str, timeout: float) -> CommandResult:
        """``command`` in a new bash, from the root, every process of it marked."""
        root = shlex.quote(self.box.root)
        mark = f"{scripts.MARK_VAR}={self.token}"
        return self.box.run(f"cd {root} && {mark} bash -c {shlex.quote(command)}", timeout)

    def reset(self) -> None:
        """Put the tree back and check it; WarmError says what is still not as it was."""
        if self.base is None:
            raise WarmError("no snapshot was taken")
        result = self._script(scripts.RESET)
        if result.exit_code != 0 or result.timed_out:
            raise WarmError(f"the reset failed: {_tail(result)}")
        now = Fingerprint.parse(result.output)
        changed = now.differences(self.base)
        if changed:
            strays = ""
            if now.strays:
                listed = self._script(scripts.STRAYS).output.strip().splitlines()
                strays = f" ({'; '.join(listed[:3])})"
            raise WarmError(f"after the reset, not as at the base: {', '.join(changed)}{strays}")

    def remove(self) -> None:
        """Kill the runs' leftovers and remove the scratch folder (best effort)."""
        try:
            self._script(scripts.REMOVE)
        except Exception:  # noqa: BLE001 - the box may be gone already
            pass


@dataclass
class WarmStats:
    """What keeping the runtime warm did, for the report."""

    opened: int = 0  # runtimes opened (1 when every reset was verified)
    verified: int = 0  # resets verified
    fallbacks: list[str] = field(default_factory=list)  # why a fresh runtime was opened
    held_seconds: float = 0.0  # runtime-seconds: how long runtimes were held open


class Warm:
    """One instance's runtime for the execution stage (and evaluate's container).

    ``open_box(label)`` gives a fresh runtime at the base. With ``fresh`` every
    ``reset`` opens a new one (the reference the warm reset must agree with); otherwise
    the first is snapshotted and reset between uses, and replaced only when the reset
    cannot be verified. ``watch``: the folders outside the repository the reset checks
    (None: the box's site-packages, ``site_packages``).
    """

    def __init__(
        self,
        open_box: Callable[[str], Box],
        private_pids: Callable[[Box], bool] | None = None,
        watch: Sequence[str] | Callable[[Box], Sequence[str]] | None = None,
        fresh: bool = False,
    ) -> None:
        self._open = open_box
        self._private_pids = private_pids or has_own_pids
        self._watch = site_packages if watch is None else watch
        self.fresh = fresh
        self.stats = WarmStats()
        self._tree: WarmTree | None = None
        self._opened_at = 0.0
        self._warm_off = ""  # why this instance cannot be kept warm, once known
        self._dirty = False  # a candidate ran since the last reset

    def start(self) -> None:
        """Ready the runtime now: opened and snapshotted, or put back after a candidate."""
        self._ready()

    @property
    def tree(self) -> WarmTree:
        """The runtime, ready for the next candidate (reset now if one was used)."""
        return self._ready()

    def _ready(self) -> WarmTree:
        if self._dirty:
            self._reset_now()  # put back, or closed: either way no candidate's leftovers
            self._dirty = False
        if self._tree is None:
            self._start()
        assert self._tree is not None
        return self._tree

    @property
    def box(self) -> Box:
        return self.tree.box

    def _start(self) -> None:
        self._opened_at = time.monotonic()  # opening counts: the runtime is being held
        box = self._open(f"exec-{self.stats.opened + 1}")
        self.stats.opened += 1
        self._tree = WarmTree(box, self._private_pids(box))
        try:
            self._prepare(self._tree)
        except BaseException:  # not ready: never used as it is; the next use opens another
            self._close_quietly()
            raise

    def _prepare(self, tree: WarmTree) -> None:
        if self.fresh or self._warm_off:
            tree.open_scratch()
            return
        box = tree.box
        tree.watch = tuple(self._watch(box) if callable(self._watch) else self._watch)
        try:
            tree.snapshot()
        except WarmError as exc:
            self._warm_off = f"no warm runtime for this instance: {exc}"
            self.stats.fallbacks.append(self._warm_off)
            tree.open_scratch()

    def run(self, command: str, timeout: float) -> CommandResult:
        return self.tree.run(command, timeout)

    def reset(self) -> None:
        """The candidate is done: before the next use, the runtime is put back (and
        checked), or a fresh one opened. Lazily: after the last candidate, nothing runs."""
        self._dirty = self._tree is not None

    def _reset_now(self) -> None:
        tree = self._tree
        if tree is None:
            return
        if not self.fresh and not self._warm_off:
            try:
                tree.reset()
                self.stats.verified += 1
                return
            except Interrupted:
                self._close_quietly()
                raise
            except CwmError as exc:  # the reset's check, or the runtime itself
                self.stats.fallbacks.append(f"a fresh runtime: {exc}")
            except Exception as exc:  # noqa: BLE001 - whatever broke, the tree is not clean
                self.stats.fallbacks.append(
                    f"a fresh runtime: the reset failed ({type(exc).__name__}: {exc})"
                )
        self._close_box()  # the next use opens a fresh one

    def discard(self, why: str) -> None:
        """The runtime cannot be reset (a command still runs in it): the next use opens a
        fresh one."""
        self._dirty = False
        if self._tree is not None:
            self.stats.fallbacks.append(f"a fresh runtime: {why}")
            self._close_box()

    def _close_box(self) -> None:
        tree, self._tree = self._tree, None
        if tree is None:
            return
        try:
            tree.box.close()
        finally:
            self.stats.held_seconds += time.monotonic() - self._opened_at

    def _close_quietly(self) -> None:
        """Close the box while another error is on its way out (that one is the news)."""
        try:
            self._close_box()
        except Exception:  # noqa: BLE001
            pass

    def close(self) -> None:
        self._close_box()


def site_packages(box: Box) -> list[str]:
    """The folders outside the repository every warm runtime watches by default: the
    box's Python environments (``SITE_PACKAGES``), one per line, duplicates dropped."""
    found = box.run(SITE_PACKAGES, 60)
    if found.exit_code != 0 or found.timed_out:
        return []
    lines = [line.strip() for line in found.output.splitlines()]
    return list(dict.fromkeys(line for line in lines if line.startswith("/")))


def has_own_pids(box: Box) -> bool:
    """Whether the box's processes live in a namespace of their own (a container, the
    sandbox), where anything new after the reset is a straggler; an unsandboxed local
    runtime shares this machine's, and only the runs' marked processes can be told."""
    return bool(getattr(box, "sandboxed", True))


def _tail(result: CommandResult) -> str:
    if result.timed_out:
        return f"timed out after {SCRIPT_TIMEOUT:.0f} s"
    return f"exit {result.exit_code}: {result.output.strip()[-400:]}"
