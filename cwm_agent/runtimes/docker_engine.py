"""The Docker engine side of the docker runtime: client, containers, the exec transport.

``ExecTransport`` drives one long-lived ``docker exec`` of bash through its hijacked
socket, so that ``ShellSession`` works unchanged inside a container. The ``docker`` SDK
is imported on first use.
"""

from __future__ import annotations

import os
import re
import secrets
import select
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import RuntimeFailure
from .reaper import owner, owner_state
from .shell import CHUNK

LABEL = "cwm-agent.run"
OWNER_LABEL = "cwm-agent.owner"  # host/boot id/pid/start time of the process that made it


def sdk() -> Any:
    try:
        import docker
    except ImportError as exc:
        raise RuntimeFailure(
            "the `docker` package, a dependency of cwm-agent, cannot be imported",
            hint="reinstall cwm-agent (pip install --force-reinstall cwm-agent)",
        ) from exc
    return docker


def connect() -> Any:
    """A client for the engine at DOCKER_HOST (or the default socket), checked with a ping."""
    docker = sdk()
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        where = os.environ.get("DOCKER_HOST") or "the default socket"
        raise RuntimeFailure(
            f"no Docker engine answers at {where}: {exc}",
            hint="start Docker or set DOCKER_HOST; on a bare Debian machine "
            '`eval "$(sudo scripts/provision-docker.sh)"` starts one (the script is in the '
            "cwm-agent source repository, not in the installed package)",
        ) from exc
    return client


def run_state(labels: dict[str, str]) -> str:
    """ "alive", "gone" or "elsewhere": the state of the run whose container has ``labels``
    (``reaper.owner_state`` of its owner label; containers of older versions: gone)."""
    return owner_state(labels.get(OWNER_LABEL))


@dataclass(frozen=True)
class Cleanup:
    removed: list[str]
    alive: list[str]  # runs still going on this machine: kept
    elsewhere: list[str]  # started on another machine (or before a reboot): kept


def cleanup_containers(
    client: Any = None, run_id: str | None = None, everything: bool = False
) -> Cleanup:
    """Remove the containers cwm-agent runs left behind: labelled, and their run gone.

    ``everything``: also those of live runs and of other machines."""
    client = client or connect()
    label = f"{LABEL}={run_id}" if run_id else LABEL
    done = Cleanup([], [], [])
    for container in client.containers.list(all=True, filters={"label": label}):
        state = "gone" if everything else run_state(container.labels or {})
        if state == "gone":
            remove_container(container)
            done.removed.append(container.id)
        else:
            (done.alive if state == "alive" else done.elsewhere).append(container.id)
    return done


class ExecTransport:
    """bash in a ``docker exec``, spoken to over the exec's socket (a shell ``Transport``).

    Without a tty the stream is multiplexed (8-byte frame headers); stdout and stderr
    are merged here. Closing the socket leaves the processes running, so
    ``kill_group`` kills the shell's process group (runc makes each exec a group
    leader): through ``killer``, another shell's builtin ``kill`` that needs no new
    process (a fork bomb may hold every pid), else a second exec. ``alive`` is
    shared with the runtime, which clears it once the container is removed.
    """

    def __init__(
        self,
        container: Any,
        cwd: str,
        env: Mapping[str, str],
        killer: Callable[[str], bool] | None = None,
        alive: dict[str, bool] | None = None,
    ) -> None:
        self._container, self._api = container, container.client.api
        self._killer, self._alive = killer, alive if alive is not None else {"alive": True}
        try:
            self._exec = self._api.exec_create(
                container.id, ["bash", "--noprofile", "--norc"], stdin=True, workdir=cwd,
                environment=[f"{k}={v}" for k, v in env.items()],
            )["Id"]  # fmt: skip
            self._io = self._api.exec_start(self._exec, socket=True)
        except sdk().errors.APIError as exc:
            raise _died(container, exc) from exc
        self._sock = getattr(self._io, "_sock", self._io)
        self._raw, self._eof, self._closed, self._status = bytearray(), False, False, None
        self.target = ""  # what `kill` gets: -PGID, known once bash has answered
        # Ask only now, after the HTTP upgrade, so no output can sit in the HTTP buffer.
        self._send(
            b"read -r _ _ _ _ __cwm_pg _ </proc/self/stat; hash head 2>/dev/null && h=1 || h=0;"
            b" builtin printf '%s %s %s\\n' $$ $__cwm_pg $h; unset __cwm_pg h\n"
        )
        hello, deadline = b"", time.monotonic() + 30
        while not hello.endswith(b"\n") and time.monotonic() < deadline:
            hello += self.read(deadline - time.monotonic()) or b"\n"
        pid, pgid, head = (hello.decode(errors="replace").split() + ["", "", ""])[:3]
        if not (pid.isdigit() and pgid.isdigit() and head == "1"):
            self.close()
            raise RuntimeFailure(
                f"cannot start bash in the container (it said {hello[:200]!r})",
                hint="the image needs bash and coreutils, and the workdir must exist in it",
            )
        # Never signal a group the shell does not lead: it could be the container's init.
        self.target = f"-{pgid}" if pgid == pid else pid

    def run_script(self, path: str, script: bytes, line: bytes) -> None:
        """The command file goes to the same path in the container, then the line."""
        quoted, folder = shlex.quote(path), shlex.quote(os.path.dirname(path))
        mkdir = f"{{ [ -d {folder} ] || mkdir -p {folder}; }} && "  # a command may delete it
        if len(script) > 65536 or b"\0" in script:  # bulk: one `head` beats bash's read
            stage = f"{mkdir}head -c {len(script)} >| {quoted}\n".encode()
        else:  # builtins only, no fork: about 0.3 ms instead of 1.5 ms per command
            stage = (
                f"{mkdir}LC_ALL=C IFS= builtin read -r -d '' -N {len(script)} __cwm_cmd; "
                f'builtin printf %s "$__cwm_cmd" >| {quoted}; builtin unset __cwm_cmd\n'
            ).encode()
        self._send(stage + script + line)

    def _send(self, data: bytes) -> None:
        if self._closed:
            raise OSError("transport closed")
        self._sock.sendall(data)

    def read(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while True:
            out = self._demux()
            if out or self._eof:
                return out or None
            remaining = deadline - time.monotonic()
            buffered = getattr(self._sock, "pending", lambda: 0)()  # TLS
            if not buffered and (
                remaining <= 0 or not select.select([self._sock], [], [], remaining)[0]
            ):
                return b""
            data = self._sock.recv(CHUNK)
            self._raw += data
            self._eof = not data

    def _demux(self) -> bytes:
        out, raw, at = bytearray(), self._raw, 0
        while len(raw) - at >= 8:
            end = at + 8 + int.from_bytes(raw[at + 4 : at + 8], "big")
            if len(raw) < end:
                break
            out += raw[at + 8 : end]
            at = end
        del raw[:at]
        return bytes(out)

    def alive(self) -> bool:
        return not self._closed and not self._eof and self._alive["alive"]

    def kill_group(self) -> None:
        if self._closed or not self._alive["alive"] or not self.target:
            return
        if self._killer and self._killer(self.target):
            return
        try:
            command = f"kill -9 -- {self.target} 2>/dev/null; true"
            self._container.exec_run(["bash", "-c", command], user="0")
        except sdk().errors.APIError:
            pass  # the container is gone, and the shell with it

    def close(self) -> int | None:
        if self._closed:
            return self._status
        self.kill_group()
        self._closed = True
        for stream in (self._sock, self._io):
            try:
                stream.close()
            except OSError:
                pass
        deadline = time.monotonic() + 2
        while self._alive["alive"] and time.monotonic() < deadline:
            try:
                info = self._api.exec_inspect(self._exec)
            except sdk().errors.APIError:
                break
            if not info.get("Running"):
                self._status = info.get("ExitCode")
                break
            time.sleep(0.01)
        return self._status


def _died(container: Any, exc: Exception) -> RuntimeFailure:
    try:
        container.reload()
        state = container.attrs.get("State", {})
        what = f"; the container is {state.get('Status')} (OOMKilled={state.get('OOMKilled')})"
    except Exception:  # noqa: BLE001 - it may be gone entirely
        what = "; the container is gone"
    return RuntimeFailure(
        f"cannot run bash in the container: {exc}{what}",
        hint="the image needs bash; check the workdir and the memory and process limits",
    )


def remove_container(container: Any) -> None:
    docker = sdk()
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if "in progress" not in str(exc):
            raise RuntimeFailure(
                f"cannot remove container {container.short_id}: {exc}",
                hint="remove it later with `cwm-agent cleanup`",
            ) from exc


def start_container(client: Any, image: str, run_id: str, limits: dict[str, Any]) -> Any:
    docker = sdk()
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise RuntimeFailure(
            f"image {image} is not on the Docker engine (cwm-agent never pulls images)",
            hint=f"get it with `docker pull {image}` (or build it); the test images "
            "come from scripts/provision-docker.sh in the cwm-agent source repository",
        ) from None
    name = f"cwm-agent-{re.sub(r'[^A-Za-z0-9_.-]', '-', run_id)}-{secrets.token_hex(3)}"
    try:
        # init: docker-init reaps whatever a killed command leaves behind.
        container = client.containers.create(
            image, entrypoint=["sleep", "infinity"], init=True,
            labels={LABEL: run_id, OWNER_LABEL: owner()},
            name=name, **limits,
        )  # fmt: skip
        container.start()
    except BaseException as exc:  # Ctrl-C included: no container may stay behind
        for leftover in client.containers.list(all=True, filters={"name": name}):
            remove_container(leftover)
        if isinstance(exc, docker.errors.APIError):
            raise RuntimeFailure(
                f"cannot start a container from {image}: {exc}",
                hint="check `docker info`; the image needs `sleep` and bash",
            ) from exc
        raise
    return container
