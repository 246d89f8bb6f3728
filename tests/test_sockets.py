"""Which of the host's sockets the sandbox would see (runtimes/sockets.py), as a table."""

from __future__ import annotations

import socket
from pathlib import Path

from cwm_agent.runtimes import sockets

HIDDEN = sockets.HIDDEN
SHOWN = ["/tmp/venv", "/tmp/cwm-agent-x", "/tmp/cwm-agent-x/repo"]


def test_the_deepest_tree_decides_what_the_sandbox_sees() -> None:
    assert sockets.visible("/home/u/.gnupg/S.gpg-agent", HIDDEN, SHOWN)
    assert sockets.visible("/var/lib/x.sock", HIDDEN, SHOWN)
    assert not sockets.visible("/run/docker.sock", HIDDEN, SHOWN)
    assert not sockets.visible("/run/user/1000/bus", HIDDEN, SHOWN)
    assert not sockets.visible("/tmp/ssh-x/agent.1", HIDDEN, SHOWN)
    assert sockets.visible("/tmpfoo/x", ["/tmp"], [])  # a prefix is no parent
    assert sockets.visible("/tmp/venv/run.sock", HIDDEN, SHOWN)  # bound back in, read-only
    assert not sockets.visible("/tmp/venvx/run.sock", HIDDEN, SHOWN)


def test_masks_skip_the_writable_copy_and_what_is_hidden() -> None:
    found = ["/home/u/a.sock", "/run/b.sock", "/tmp/cwm-agent-x/repo/c.sock", "/tmp/venv/d"]
    args = sockets.masks(found, HIDDEN, SHOWN, ["/tmp/cwm-agent-x/repo"])
    assert args == ["--ro-bind", "/dev/null", "/home/u/a.sock"] + [
        "--ro-bind",
        "/dev/null",
        "/tmp/venv/d",
    ]


def test_bound_sockets_finds_a_listening_and_a_datagram_socket(tmp_path: Path) -> None:
    made = []
    for name, kind in (("s.sock", socket.SOCK_STREAM), ("d.sock", socket.SOCK_DGRAM)):
        sock = socket.socket(socket.AF_UNIX, kind)
        sock.bind(str(tmp_path / name))
        made.append(sock)
    made[0].listen()
    try:
        found = sockets.bound_sockets()
        assert str(tmp_path / "s.sock") in found and str(tmp_path / "d.sock") in found
        (tmp_path / "d.sock").unlink()  # bound but gone from the filesystem: no mask needed
        assert str(tmp_path / "d.sock") not in sockets.bound_sockets()
    finally:
        for sock in made:
            sock.close()
