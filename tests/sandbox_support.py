"""What the sandbox tests (test_sandbox.py) run against it: servers on this machine, and
the programs a hostile model starts inside."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from pathlib import Path


class Listener:
    """A TCP server on this machine that records every connection it gets."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def processes() -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    found.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return found


# A process in the sandbox that keeps swapping the directory `d` with a symlink `l` to a
# folder of this machine (renameat2 RENAME_EXCHANGE), as fast as it can.
SWAPPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
os.makedirs("d/a"); os.symlink(sys.argv[1], "l")
print("swapping", flush=True)
n = 0
while True:
    if libc.renameat2(-100, b"d", -100, b"l", 2) != 0:
        sys.exit(f"renameat2: errno {ctypes.get_errno()}")
    n += 1
    if n % 100 == 0:  # written whole, then renamed: a reader never sees an empty file
        with open("/tmp/swaps.new", "w") as f:
            f.write(str(n))
        os.replace("/tmp/swaps.new", "/tmp/swaps")
"""


# Run in the sandbox: tries every socket path named in sys.argv[1] (one a line) with every
# socket type, and prints those it reached.
PROBE = r"""
import socket, sys
for path in open(sys.argv[1]).read().split("\n"):
    for kind in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_UNIX, kind)
        try:
            s.connect(path)
            print("REACHED", path)
            break
        except OSError:
            pass
        finally:
            s.close()
print("probed")
"""
SELF_TEST = r"""
import socket
server = socket.socket(socket.AF_UNIX); server.bind("/tmp/own.sock"); server.listen()
client = socket.socket(socket.AF_UNIX); client.connect("/tmp/own.sock")
print("own socket works")
"""


def host_socket_paths() -> list[str]:
    """Every pathname socket bound on this machine (read here, not with the code tested)."""
    with open("/proc/net/unix") as f:
        rows = [line.split(None, 7) for line in f.read().splitlines()[1:]]
    return sorted({r[7] for r in rows if len(r) == 8 and r[7].startswith("/")})


def writable_folder(*candidates: str | None) -> Path | None:
    for folder in candidates:
        if folder and os.path.isdir(folder) and os.access(folder, os.W_OK):
            return Path(tempfile.mkdtemp(prefix=".cwm-sock-", dir=folder))
    return None
