"""DockerRuntime: the agent's shell and files live in a container (DESIGN.md, Runtimes).

Commands run in one long-lived ``docker exec`` of bash, driven by the same
``ShellSession`` as the local runtime over ``ExecTransport`` (the exec's hijacked
socket). File access, ``diff`` and kills go through a second, internal session, so
the image needs bash, coreutils and git, never Python. The ``docker`` SDK is
imported on first use.
"""

from __future__ import annotations

import base64
import os
import posixpath
import secrets
import shlex
import shutil
import tarfile
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import RuntimeFailure, ToolError
from ..types import CommandResult, FileTooLarge, TreeDrift
from .baseline import BASE_REF
from .docker_engine import (
    ExecTransport,
    connect,
    remove_container,
    sdk,
    start_container,
)
from .docker_scripts import (
    BASELINE,
    DIFF,
    EXPORT,
    FORK_FAILED,
    GIT,
    HAS_TESTBED,
    KEEP,
    KILL_ALL,
    READ,
    READ_AT_MOST,
    RESOLVE,
    SWEBENCH_ACTIVATE,
    WRITE,
    fill,
)
from .gitcmd import run_git
from .shell import QUIET_ENV, ShellSession
from .snapshot import Snapshot

FILES_LIMIT = 256 << 20  # the most a file read or a diff may return (as base64)


EXEC_RETRY_SECONDS = 10.0  # starting a shell while the process table drains
# How runc says it could not start a process for lack of room (not a missing bash).
PROCESS_TABLE_FULL = ("read init-p", "resource temporarily unavailable")


class DockerRuntime:
    """A Runtime inside a fresh container (see module docstring); build it with ``create``."""

    description = "bash (in a Docker container)"

    def __init__(
        self, container: Any, host: Snapshot | None, env: Mapping[str, str] | None
    ) -> None:
        self.container, self.root, self._host = container, "", host
        self.notices: list[str] = []
        self._env = {**QUIET_ENV, **(env or {})}
        self._tmp = tempfile.mkdtemp(prefix="cwm-docker-")
        self._res: dict[str, Any] = dict(
            container=container, host=host, tmp=self._tmp, sessions=[], alive={"alive": True}
        )
        self._finalizer = weakref.finalize(self, _release, self._res)
        self._base_in = host.base if host else ""  # the baseline commit in the container
        self._exported = (host.root, host.base) if host else None

    @classmethod
    def create(
        cls,
        repo: str | Path | None = ".",
        *,
        image: str,
        workdir: str = "/repo",
        repo_in_image: bool = False,
        run_id: str | None = None,
        network: bool | str = False,
        memory: str | int | None = "4g",
        pids_limit: int | None = 1024,
        env: Mapping[str, str] | None = None,
        shell_init: str | None = None,
        base_commit: str | None = None,
        head_bytes: int = 64 * 1024,
        tail_bytes: int = 64 * 1024,
        client: Any = None,
    ) -> DockerRuntime:
        """Start a container from ``image`` with the repository at ``workdir``.

        The repository is ``repo``'s snapshot (``snapshot.Snapshot``, .git included), or
        with ``repo_in_image`` the one already at ``workdir`` (SWE-bench images): its
        history cut to HEAD's ancestors, HEAD checked against ``base_commit`` (a mismatch
        becomes a notice). ``network``: False (loopback only), True (the engine's default
        network) or a network mode such as "host". ``shell_init``: bash run quietly at the
        start of each agent shell and after each restart (the shell reads no rc files);
        None = SWE-bench's testbed activation when the repository is in the image and the
        image has that env, else nothing.
        """
        if not workdir.startswith("/") or not workdir.strip("/"):
            raise RuntimeFailure(f"invalid workdir {workdir!r}", hint="use e.g. /repo")
        client = client or connect()
        limits: dict[str, Any] = {"mem_limit": memory, "pids_limit": pids_limit}
        if network is False:
            limits.update(network_disabled=True, network_mode="none")
        elif network is not True:
            limits["network_mode"] = network
        host = None if repo_in_image else Snapshot(repo or ".")
        try:
            container = start_container(client, image, run_id or secrets.token_hex(6), limits)
        except BaseException:
            if host:
                host.close()
            raise
        self = cls(container, host, env)
        try:
            self._setup(workdir, head_bytes, tail_bytes, shell_init, base_commit)
        except BaseException:
            self.close()
            raise
        return self

    def _setup(
        self,
        workdir: str,
        head_bytes: int,
        tail_bytes: int,
        shell_init: str | None,
        base_commit: str | None,
    ) -> None:
        if self._host:
            self._copy_in(workdir)
        files = self._files = self._session(workdir, FILES_LIMIT, 0, internal=True)
        self._keep = self._call(KEEP)[1].split()
        code, out = self._call("builtin pwd -P")
        if code != 0:
            raise RuntimeFailure(f"workdir {workdir} is unusable in the container: {out}")
        self.root = out.strip()
        if not self._host:
            code, out = self._call(fill(BASELINE, ROOT=shlex.quote(self.root)))
            if code != 0:
                raise RuntimeFailure(
                    f"cannot commit the baseline in {self.root}: {out.strip()}",
                    hint="the image needs git, and the workdir must be writable",
                )
            head, self._base_in = out.split()[-2:]
            if base_commit and head != base_commit:
                self.notices.append(
                    f"the repository in the image is at {head[:12]}, not at the record's "
                    f"base_commit {base_commit[:12]}: the patch is made against {head[:12]}"
                )
        if shell_init is None:
            has_testbed = not self._host and self._call(HAS_TESTBED)[0] == 0
            shell_init = SWEBENCH_ACTIVATE if has_testbed else ""

        def killer(target: str) -> bool:  # the builtin kill works even with no pid left
            try:
                result = files.run(f"builtin kill -9 -- {target}", 10)
            except RuntimeFailure:  # that shell is gone and cannot be restarted
                return False
            return not (result.timed_out or result.session_restarted)

        self.shell = self._session(self.root, head_bytes, tail_bytes, killer, shell_init)
        if shell_init:
            done = self.shell.startup_result
            status = f"exit {done.exit_code}" if done else "not run"
            self.notices.append(f"the shell starts with: {shell_init} ({status})")

    def _session(
        self,
        cwd: str,
        head: int,
        tail: int,
        killer: Callable[[str], bool] | None = None,
        startup: str = "",
        internal: bool = False,
    ) -> ShellSession:
        container, env, alive = self.container, self._env, self._res["alive"]  # no `self`

        def factory(cwd: str, _host_env: Mapping[str, str]) -> ExecTransport:
            # Processes just killed leave the process table only once the container's init
            # has reaped them; until then runc may find no room to start the shell ("OCI
            # runtime exec failed"), more so on a busy machine: try again for a while.
            deadline = time.monotonic() + EXEC_RETRY_SECONDS
            while True:
                try:
                    return ExecTransport(container, cwd, env, killer, alive)
                except RuntimeFailure as exc:
                    other = not any(sign in exc.message for sign in PROCESS_TABLE_FULL)
                    if other or time.monotonic() > deadline or not alive["alive"]:
                        raise
                    time.sleep(0.2)

        session = ShellSession(
            cwd, head_bytes=head, tail_bytes=tail, tmp_dir=self._tmp,
            transport_factory=factory, startup=startup, interruptible=not internal,
        )  # fmt: skip
        self._res["sessions"].append(session)
        return session

    def _copy_in(self, workdir: str) -> None:
        assert self._host is not None

        def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid, info.gid, info.uname, info.gname = 0, 0, "root", "root"
            return info

        with tempfile.TemporaryFile(dir=self._tmp) as buf:
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(self._host.root, arcname=workdir.strip("/"), filter=as_root)
            buf.seek(0)
            try:
                self.container.put_archive("/", buf)
            except sdk().errors.APIError as exc:
                raise RuntimeFailure(
                    f"cannot copy the repository into the container: {exc}",
                    hint="check the engine's disk space",
                ) from exc
        user = self.container.attrs.get("Config", {}).get("User") or "root"
        if user not in ("root", "0", "0:0"):  # the image runs as someone else: hand it over
            self.container.exec_run(["chown", "-R", user, workdir], user="0")

    def _call(self, script: str, timeout: float = 600) -> tuple[int | None, str]:
        result = self._files.run(script, timeout)
        if result.timed_out:
            raise RuntimeFailure(
                f"an internal command timed out after {timeout:.0f}s",
                hint="the container may be overloaded",
            )
        if result.cut_bytes:
            raise ToolError(f"refused: the result is over {FILES_LIMIT >> 20} MiB")
        return result.exit_code, result.output

    def run(self, command: str, timeout: float) -> CommandResult:
        result = self.shell.run(command, timeout)
        if not FORK_FAILED.search(result.output):
            return result
        # The process limit is reached and stays so (processes that left the shell's
        # group, e.g. with setsid): nothing can start, not even the next command. Every
        # process but the container's init and our own internal shell goes.
        self._kill_all()
        note = (
            "\n[the container reached its process limit: every process in it was killed "
            "and the shell session restarted]\n"
        )
        return replace(result, output=result.output + note, session_restarted=True)

    def _kill_all(self) -> None:
        # Builtins and globbing only (no process left to fork), sparing the container's
        # init, its main process (the container would stop) and this internal shell.
        self._files.run(fill(KILL_ALL, KEEP=" ".join(self._keep)), 10)
        self.shell.restart()

    @property
    def cwd(self) -> str:
        return self.shell.cwd

    def _file_op(self, path: str, body: str) -> tuple[int | None, str]:
        resolve = fill(RESOLVE, ROOT=shlex.quote(self.root), PATH=shlex.quote(path))
        code, out = self._call(resolve + body)
        if code != 0 and FORK_FAILED.search(out):  # see run(): free the process table
            self._kill_all()
            code, out = self._call(resolve + body)
        if code == 91:
            raise ToolError(
                f"{path}: refused, the path is outside the repository ({self.root}); "
                "only files inside it can be read or written"
            )
        if code == 90:
            raise ToolError(f"{path}: invalid path: {out.strip()}")
        if code == 127:
            raise ToolError(
                f"{path}: a tool the file operations need is missing in the container "
                f"({out.strip()}): a command may have removed it"
            )
        return code, out

    def read_file(self, path: str, limit: int | None = None) -> bytes:
        script = (
            READ if limit is None else fill(READ_AT_MOST, LIMIT=str(limit), MORE=str(limit + 1))
        )
        code, out = self._file_op(path, script)
        if code == 93 and limit is not None:
            raise FileTooLarge(int(out.split()[0]), limit)
        if code != 0:
            raise ToolError(f"{path}: cannot read: {out.strip()}")
        data = base64.b64decode(out)
        if limit is not None and len(data) > limit:  # it grew while being read
            raise FileTooLarge(len(data), limit)
        return data

    def write_file(self, path: str, data: bytes) -> None:
        encoded = base64.encodebytes(data).decode()
        mark = f"CWM_EOF_{secrets.token_hex(8)}"
        code, out = self._file_op(path, fill(WRITE, MARK=mark, DATA=encoded))
        if code == 94:
            raise ToolError(f"{path}: the parent directory does not exist; create it first")
        if code != 0:
            raise ToolError(f"{path}: cannot write: {out.strip()}")

    def exists(self, path: str) -> bool:
        return self._file_op(path, '[ -e "$p" ]')[0] == 0

    def diff(self, exclude: tuple[str, ...] = ()) -> str:
        """The agent's changes against the base as a git patch ("" if none), as local's:
        staged in a throwaway copy of the index, here inside the container."""
        specs = [f":(exclude,literal){self._relative(p)}" for p in exclude]
        script = fill(
            DIFF, ROOT=shlex.quote(self.root), BASE=self._base_in, SPECS=shlex.join(specs)
        )
        code, out = self._call(script)
        if code != 0:
            raise RuntimeFailure(
                f"git diff failed in the container: {out.strip()[-2000:]}",
                hint="the image had a working git when the run started: a command may have "
                "removed git or damaged the repository's .git; accepted submissions are kept",
            )
        return base64.b64decode(out).decode("utf-8", errors="surrogateescape")

    def outside_changes(self) -> TreeDrift:
        return TreeDrift()  # the container holds a copy: the user's tree cannot reach it

    def _relative(self, path: str) -> str:
        full = posixpath.normpath(posixpath.join(self.root, path))
        return posixpath.relpath(full, self.root)

    @property
    def base(self) -> str:
        """The base commit, in the host repository ``base_dir``, for patch validation."""
        return self._export()[1]

    @property
    def base_dir(self) -> str:
        return self._export()[0]

    def _export(self) -> tuple[str, str]:
        # With repo_in_image the base exists only in the container. On first use, bundle
        # its tree as a parentless commit (no history to carry) and fetch it on the host.
        if self._exported is None:
            code, out = self._call(fill(EXPORT, BASE=self._base_in))
            if code != 0:
                raise RuntimeFailure(f"cannot export the base commit: {out.strip()}")
            repo, bundle = os.path.join(self._tmp, "base"), os.path.join(self._tmp, "bundle")
            self._stream_to(bundle, f"{GIT} bundle create - refs/cwm-agent/export")
            os.mkdir(repo)
            run_git(repo, "init", "-q")
            run_git(repo, "fetch", "-q", bundle, f"refs/cwm-agent/export:{BASE_REF}")
            os.unlink(bundle)
            self._exported = (repo, out.split()[-1])
        return self._exported

    def _stream_to(self, path: str, script: str) -> None:
        api = self.container.client.api
        exec_id = api.exec_create(self.container.id, ["bash", "-c", script], workdir=self.root)
        errors = b""
        with open(path, "wb") as f:
            for out, err in api.exec_start(exec_id["Id"], stream=True, demux=True):
                f.write(out or b"")
                errors = (errors + (err or b""))[-4000:]
        if api.exec_inspect(exec_id["Id"]).get("ExitCode"):
            raise RuntimeFailure(f"`{script}` failed in the container: {errors.decode()}")

    def close(self) -> None:
        """Remove the container and every host-side temp file. Idempotent."""
        self._finalizer()

    def __enter__(self) -> DockerRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _release(res: dict[str, Any]) -> None:
    try:
        remove_container(res["container"])  # first: that ends every process, no kill needed
    finally:
        res["alive"]["alive"] = False
        for session in res["sessions"]:
            session.close()
        if res["host"] is not None:
            res["host"].close()
        shutil.rmtree(res["tmp"], ignore_errors=True)
