"""The local runtime's sandbox: bubblewrap around the agent's shell (Linux).

Inside, the commands see the whole filesystem read-only except the working copy, a
private ``/tmp`` (and ``/dev/shm``); an empty ``/run`` of their own (these in memory: with
``tmp_size`` each is a tmpfs of that size, and ``/dev`` read-only), and every other Unix
socket of the host they could see covered (``sockets.py``): a read-only mount does not
stop ``connect()``; no network unless asked; their own PID namespace, so nothing of the
agent's process is visible and everything dies with the session; no capabilities.
``HOME`` stays the user's (read-only: writes there fail instead of landing), caches go
to the private ``/tmp``.

Overlay mode (``layers`` given): the working copy is an overlayfs whose lower layer is the
user's work tree itself, read-only, and whose upper layer holds only what the commands
change — no copy at start, disk in proportion to the changes. bubblewrap 0.8 cannot mount
an overlay, so an outer ``unshare --mount`` (plus ``--user --map-root-user`` for a user
who is not root) mounts it, binds the model's own ``.git`` over the user's, and then
runs bubblewrap. That outer process keeps the merged view: the harness reaches it through
``/proc/PID/root`` (files) and ``nsenter`` (git), never through the sandbox.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import RuntimeFailure
from . import sockets
from .shell import PipeTransport

READY = b"\x1e__CWM_SANDBOX_READY__\x1e"
MOUNT_FAILED = 97  # the outer set-up's exit status when the overlay cannot be mounted
READ_ONLY_FAILED = 96  # ... when the object stores cannot be made read-only
_START_TIMEOUT = 15.0
_START_ATTEMPTS = 3


class SandboxError(RuntimeFailure):
    """The sandbox did not start; ``overlay`` tells whether the overlay mount was the cause."""

    def __init__(self, message: str, output: str, overlay: bool) -> None:
        super().__init__(message, hint="run with --sandbox none to work without the sandbox")
        self.output = output
        self.overlay = overlay


@dataclass(frozen=True)
class SandboxSpec:
    """What the sandbox shows. Paths are the same inside and out."""

    root: str  # the working copy
    read_only: tuple[str, ...] = ()  # harness paths the sandbox must see (never write)
    network: bool = False
    # Overlay mode: the user's work tree (lower), a folder for upper/ and work/, the
    # model's .git, and whether the user's .git is a directory (else a gitfile).
    lower: str | None = None
    layers: str | None = None
    model_git: str | None = None
    gitfile: str | None = None  # overlay mode with a `.git` file: a file naming model_git
    protect: tuple[str, ...] = ()  # overlay mode: read-only beside the sandbox too
    tmp_size: int | None = None  # bytes for each private tmpfs (None: the kernel's default)


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def works() -> str | None:
    """Why the sandbox cannot run here (None: it can): not Linux, no bwrap, no namespaces."""
    if not os.path.isdir("/proc/self/ns"):
        return "bubblewrap sandboxes need Linux"
    if bwrap_path() is None:
        return "bubblewrap (bwrap) is not installed"
    probe = subprocess.run(
        [bwrap_path() or "bwrap", *_isolation(False), "--ro-bind", "/", "/", "true"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    if probe.returncode != 0:
        return f"bwrap cannot create namespaces here: {probe.stderr.decode(errors='replace')}"
    return None


_sizes: dict[str, str] = {}  # per bubblewrap program: why it cannot size ("": it can)


def cannot_size() -> str | None:
    """Why this bubblewrap cannot size a tmpfs (None: it can). ``--size`` came with
    bubblewrap 0.6; asked of the program itself, which a distribution may have patched."""
    bwrap = bwrap_path() or "bwrap"
    if bwrap not in _sizes:
        argv = [bwrap, *_isolation(False), "--ro-bind", "/", "/", "--size", "1048576"]
        probe = subprocess.run(
            [*argv, "--tmpfs", "/tmp", "true"], capture_output=True, stdin=subprocess.DEVNULL
        )
        version = subprocess.run([bwrap, "--version"], capture_output=True, text=True)
        shown = version.stdout.strip() or "this bubblewrap"
        _sizes[bwrap] = "" if probe.returncode == 0 else f"{shown} cannot size a tmpfs"
    return _sizes[bwrap] or None


def tools_under_tmp(env: Mapping[str, str]) -> list[str]:
    """Programs the sandbox's private /tmp would hide: the folders on PATH that live under
    /tmp (a venv's bin/: the venv itself) and this Python's own prefix. They stay visible,
    read-only, at their paths, so a project checked out under /tmp keeps its interpreter."""
    candidates = [p for p in env.get("PATH", "").split(os.pathsep) if p]
    candidates += [sys.prefix, sys.base_prefix]
    found: list[str] = []
    for path in candidates:
        real = os.path.realpath(path)
        if not real.startswith("/tmp/") or not os.path.isdir(real):
            continue
        root = os.path.dirname(real) if os.path.basename(real) == "bin" else real
        if root != "/tmp" and not any(root == f or root.startswith(f + "/") for f in found):
            found = [f for f in found if not f.startswith(root + "/")] + [root]
    return found


def _isolation(network: bool) -> list[str]:
    flags = ["--die-with-parent", "--cap-drop", "ALL", "--unshare-pid", "--unshare-ipc"]
    flags += ["--unshare-uts", "--unshare-cgroup-try"]
    return flags if network else [*flags, "--unshare-net"]


def command(
    spec: SandboxSpec, env: Mapping[str, str] | None = None, found: Sequence[str] = ()
) -> list[str]:
    """The argv that starts bash in the sandbox (``env``: the session's, for its PATH;
    ``found``: the host's bound Unix sockets, ``sockets.bound_sockets()``)."""
    argv = [bwrap_path() or "bwrap", *_isolation(spec.network)]
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    private = private_trees()
    size = [] if spec.tmp_size is None else ["--size", str(spec.tmp_size)]
    if size:  # --dev's tmpfs cannot be sized: /dev/shm gets its own, /dev is made read-only
        argv += [*size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    for tree in private:
        argv += [*size, "--tmpfs", tree]
    if spec.network:  # /etc/resolv.conf may be a link into the /run just replaced
        resolver = os.path.realpath("/etc/resolv.conf")
        if any(resolver.startswith(tree + "/") for tree in private[1:]):
            argv += ["--ro-bind-try", resolver, resolver]
    shown = [*tools_under_tmp(env or os.environ), *spec.read_only]
    for path in shown:
        argv += ["--ro-bind", path, path]
    writable = [spec.root]
    argv += ["--bind", spec.root, spec.root]
    if spec.gitfile and spec.model_git:
        writable.append(spec.model_git)
        argv += ["--bind", spec.model_git, spec.model_git]
    argv += sockets.masks(found, sockets.HIDDEN, [*shown, *writable], writable)
    argv += ["--setenv", "XDG_CACHE_HOME", "/tmp/.cache", "--chdir", spec.root]
    argv += ["bash", "--noprofile", "--norc"]
    if spec.layers is None:
        return argv
    args = [*_mount_args(spec), *spec.protect, "--"]
    return [*_outer(), _tool("sh"), "-c", _with_mount(_MOUNT), "sh", *args, *argv]


def private_trees() -> list[str]:
    """The folders the sandbox gets empty and its own: ``/tmp``, ``/run`` (sockets, the
    session bus, the runtime dirs of logged-in users) and ``/var/run`` where it is not a
    link to ``/run``."""
    trees = ["/tmp", "/run"]
    if os.path.isdir("/var/run") and not os.path.islink("/var/run"):
        trees.append("/var/run")
    return trees


_READ_ONLY = (
    'for p in "$@"; do [ "$p" = -- ] && break; mount --bind "$p" "$p" && '
    'mount -o remount,bind,ro "$p" || exit 96; shift; done; shift; exec "$@"'
)  # 96: see above
_can_unshare: bool | None = None


def read_only(paths: Sequence[str]) -> tuple[str, ...]:
    """A command prefix that runs a program with ``paths`` read-only (in a private mount
    namespace): git then cannot even refresh the timestamps of the user's objects, which
    it does for objects it finds again. Empty where namespaces are not available."""
    global _can_unshare
    if _can_unshare is None:
        probe = subprocess.run([*_outer(), "true"], capture_output=True, stdin=subprocess.DEVNULL)
        _can_unshare = probe.returncode == 0
    if not _can_unshare or not paths:
        return ()
    return (*_outer(), _tool("sh"), "-c", _with_mount(_READ_ONLY), "sh", *paths, "--")


def _tool(name: str) -> str:
    """A program as this process finds it: the sessions' PATH may be narrower (and the
    commands inside may change theirs), the harness's own helpers must not depend on it."""
    return shutil.which(name) or name


def _with_mount(script: str) -> str:
    return f"m={shlex.quote(_tool('mount'))}; " + script.replace("mount ", '"$m" ')


def _outer() -> list[str]:
    outer = [_tool("unshare"), "--mount", "--propagation", "private"]
    return outer if os.geteuid() == 0 else [*outer, "--user", "--map-root-user"]


# $1 user's tree, $2 staging dir for it, $3 layers dir, $4 mount point, $5 the model's .git,
# $6 what to bind over $4/.git, $7 overlay options tried first (kernels before 5.11 do not
# know userxattr); then the paths to make read-only up to "--" (the user's object stores:
# the harness's git beside the sandbox must not touch them either); the rest is the
# bubblewrap command line.
_MOUNT = f"""o="lowerdir=$2,upperdir=$3/upper,workdir=$3/work"
mount --bind "$1" "$2" &&
  {{ {{ [ -n "$7" ] && mount -t overlay overlay -o "$o,$7" "$4" 2>/dev/null; }} ||
    mount -t overlay overlay -o "$o" "$4"; }} &&
  mount --bind "$6" "$4/.git" || exit {MOUNT_FAILED}
shift 7; {_READ_ONLY}
"""


def _mount_args(spec: SandboxSpec) -> list[str]:
    assert spec.lower and spec.layers and spec.model_git
    stage = os.path.join(spec.layers, "lower")
    return [
        spec.lower,
        stage,
        spec.layers,
        spec.root,
        spec.model_git,
        spec.gitfile or spec.model_git,
        # In a user namespace overlayfs cannot write its trusted.* attributes: without
        # user.* ones instead, removing a directory of the user's tree fails with EIO.
        "" if os.geteuid() == 0 else "userxattr",
    ]


def prepare_layers(layers: str) -> None:
    for name in ("upper", "work", "lower"):
        os.makedirs(os.path.join(layers, name), exist_ok=True)


class SandboxTransport(PipeTransport):
    """bash inside the sandbox; ``pid`` is the process that holds its view of the files."""

    def __init__(self, spec: SandboxSpec, cwd: str, env: Mapping[str, str]) -> None:
        self.spec = spec
        for attempt in range(1, _START_ATTEMPTS + 1):
            found = sockets.bound_sockets()
            super().__init__(cwd, env, argv=command(spec, env, found))
            try:
                self._handshake()
                return
            except SandboxError:
                # A socket that went away between the look and bubblewrap's mounts fails
                # the start (its mask has nowhere to go): look again.
                if attempt == _START_ATTEMPTS or sockets.bound_sockets() == found:
                    raise

    def _handshake(self) -> None:
        self.write(b"builtin printf '%b\\n' '" + READY.replace(b"\x1e", b"\\036") + b"'\n")
        seen, deadline = b"", time.monotonic() + _START_TIMEOUT
        while READY not in seen and time.monotonic() < deadline:
            data = self.read(deadline - time.monotonic())
            if data is None:
                break
            seen += data
        if READY in seen:
            return
        status = self.close()
        text = seen.decode(errors="replace").strip()[-2000:]
        overlay = status in (MOUNT_FAILED, READ_ONLY_FAILED)
        raise SandboxError(
            f"the sandbox did not start (exit status {status}): {text or 'no message'}",
            text,
            overlay,
        )

    @property
    def view(self) -> str:
        """Where this machine sees the working copy as the sandbox does."""
        if self.spec.layers is None:
            return self.spec.root
        return f"/proc/{self.pid}/root{self.spec.root}"

    def beside(self, cwd: str) -> tuple[str, ...]:
        """A command prefix that runs a program in ``cwd`` beside the sandbox, seeing its
        files (overlay mode: in the outer mount namespace; otherwise nothing is needed).
        The directory is entered after the namespace: nsenter's own --wd is opened before."""
        if self.spec.layers is None:
            return ()
        user = () if os.geteuid() == 0 else ("--user", "--preserve-credentials")
        enter = (_tool("nsenter"), f"--target={self.pid}", *user, "--mount", "--")
        return (*enter, _tool("sh"), "-c", 'cd -- "$0" && exec "$@"', cwd)
