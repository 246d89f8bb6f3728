"""The host's Unix sockets, which the sandbox must not reach.

A sandbox without network can still talk to the host through a *pathname* Unix socket
it can see: a read-only mount does not stop ``connect()``. Behind them are the Docker
engine (root on the host), the session bus (``systemd-run --user`` runs code outside), an
ssh or gpg agent, a display server. So the sandbox gets a fresh ``/run`` (``/var/run``)
and ``/tmp``, where most of them live, and every other bound socket it could still see
is covered with ``/dev/null`` (``connect`` then fails with "Connection refused").
Abstract sockets (``@name``) belong to a network namespace: unreachable without
``--network``.

The sockets are those bound when the shell starts (its restarts look again), in this
network namespace and in every other one this user's processes are in.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

# Trees the sandbox replaces with its own (bubblewrap's --tmpfs, --dev, --proc).
HIDDEN = ("/tmp", "/run", "/var/run", "/dev", "/proc")


def bound_sockets() -> list[str]:
    """Real paths of the pathname Unix sockets bound on this machine now (sorted)."""
    found: set[str] = set()
    for table in _tables():
        try:
            with open(table, "rb") as f:
                lines = f.read().decode("utf-8", "surrogateescape").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split(None, 7)  # Num RefCount Protocol Flags Type St Inode Path
            if len(fields) == 8 and fields[7].startswith("/"):
                found.add(fields[7])
    real = {os.path.realpath(p) for p in found}
    return sorted(p for p in real if _is_socket(p))


def _tables() -> list[str]:
    """``/proc/net/unix`` of this network namespace and of every other one that a process
    of this machine we may look at is in."""
    tables, seen = ["/proc/self/net/unix"], set()
    try:
        seen.add(os.readlink("/proc/self/ns/net"))
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return tables
    for pid in pids:
        try:
            ns = os.readlink(f"/proc/{pid}/ns/net")
        except OSError:  # gone, or not ours to inspect
            continue
        if ns not in seen:
            seen.add(ns)
            tables.append(f"/proc/{pid}/net/unix")
    return tables


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False


def _under(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def visible(path: str, hidden: Iterable[str], shown: Iterable[str]) -> bool:
    """Whether the sandbox sees ``path``: the deepest of the trees it replaces (``hidden``)
    or binds (``shown``) that holds it decides; outside them all, ``/`` (read-only) does."""
    best, seen = -1, True
    for trees, verdict in ((hidden, False), (shown, True)):
        for tree in trees:
            if _under(path, tree) and len(tree) > best:
                best, seen = len(tree), verdict
    return seen


def masks(
    found: Iterable[str], hidden: Iterable[str], shown: Iterable[str], writable: Iterable[str]
) -> list[str]:
    """bubblewrap arguments covering each socket of ``found`` the sandbox would see, except
    in its own writable areas (where only its own processes bind any)."""
    hidden, shown, writable = list(hidden), list(shown), list(writable)
    args: list[str] = []
    for path in found:
        if visible(path, hidden, shown) and not any(_under(path, w) for w in writable):
            args += ["--ro-bind", "/dev/null", path]
    return args
