"""One prediction graded in a fresh container, with the swebench package's own parts.

From swebench: the test specification (``make_test_spec``: eval script, expected tests, log
parser), the patch-apply fallbacks (``GIT_APPLY_CMDS``, through ``applycmds.apply_patch``:
the harness's reset between attempts and its already-applied check), the eval script and
the grading of its log (``get_eval_report``). What differs from the harness is only around
them: the container has no network and is removed with SIGKILL when done (the harness's
``docker stop`` waits 15 s for a PID 1 that ignores SIGTERM), and files go in from memory.

The instance folder gets the harness's files: ``patch.diff``, ``eval.sh``,
``test_output.txt``, ``run_instance.log`` and, when graded, ``report.json``.
"""

from __future__ import annotations

import importlib
import io
import json
import shlex
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TextIO

from cwm_agent.evaluate.tasks import Task
from cwm_agent.runtimes.docker_engine import remove_container, start_container
from cwm_agent.verification.applycmds import HARNESS_RESET, apply_patch

RESOLVED, UNRESOLVED, ERROR, EMPTY = "resolved", "unresolved", "error", "empty_patch"
TIMED_OUT = "Test timed out"  # how a time-out's error begins (the harness's words)


def swebench(module: str) -> Any:
    """A module of the swebench package (imported here, on first use: it is heavy)."""
    return importlib.import_module(f"swebench.{module}")


@dataclass(frozen=True)
class Outcome:
    """A verdict: ``status`` is resolved, unresolved, error or empty_patch."""

    instance_id: str
    status: str
    key: str  # Task.key(): what the verdict was made from
    seconds: float
    error: str | None = None
    report: dict[str, Any] | None = None  # the harness's report.json entry of this instance

    def document(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "status": self.status,
            "key": self.key,
            "seconds": self.seconds,
            "error": self.error,
        }


class GradingError(Exception):
    """The instance cannot be graded (the harness's EvaluationError: an error id)."""


class EvalTimeout(GradingError):
    """The eval script ran past the time limit (its container cannot be reused)."""


class WarmContainer(Protocol):
    """A container that outlives one grading (``warm_grading.py``): the eval script runs
    with ``environment`` (the mark its processes are found by)."""

    container: Any
    environment: dict[str, str]


class Grader:
    """Grades tasks on one Docker engine; ``live`` holds the containers in use."""

    def __init__(self, client: Any, run_id: str, timeout: float) -> None:
        self.client = client
        self.run_id = run_id
        self.timeout = timeout
        self.live: dict[str, Any] = {}  # instance id -> container, for an interrupt
        self.stopping = False  # set by remove_all: a container started after it goes at once
        self._lock = threading.Lock()

    def grade(self, task: Task, folder: Path, warm: WarmContainer | None = None) -> Outcome:
        """The verdict of ``task``, in a fresh container or in ``warm``'s (left running)."""
        started = time.monotonic()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.json").unlink(missing_ok=True)
        if not task.patch:
            return Outcome(task.instance_id, EMPTY, task.key(), 0.0)
        with open(folder / "run_instance.log", "w", encoding="utf-8") as log:
            try:
                report = self._run(task, folder, log, warm)
            except GradingError as exc:
                _log(log, f"Error: {exc}")
                return Outcome(task.instance_id, ERROR, task.key(), _since(started), str(exc))
            resolved = bool(report[task.instance_id]["resolved"])
            _log(log, f"Result for {task.instance_id}: resolved: {resolved}")
        status = RESOLVED if resolved else UNRESOLVED
        return Outcome(task.instance_id, status, task.key(), _since(started), None, report)

    def _run(
        self, task: Task, folder: Path, log: TextIO, warm: WarmContainer | None
    ) -> dict[str, Any]:
        spec = swebench("harness.utils").make_test_spec({**task.record, "image": task.image})
        if spec.image_assets:
            raise GradingError("the record has image_assets: grade it with the official harness")
        (folder / "patch.diff").write_text(task.patch, encoding="utf-8")
        (folder / "eval.sh").write_text(spec.eval_script, encoding="utf-8")
        container = warm.container if warm else self.start(task, log)
        try:
            _apply(container, task.patch, log)
            env = warm.environment if warm else None
            output, timed_out = _run_eval(container, spec.eval_script, self.timeout, env)
            _log(log, "Test output written to test_output.txt")
            with open(folder / "test_output.txt", "w", encoding="utf-8") as handle:
                handle.write(output)
                if timed_out:
                    handle.write(f"\n\nTimeout error: {self.timeout:g} seconds exceeded.")
            if timed_out:
                raise EvalTimeout(f"{TIMED_OUT} after {self.timeout:g} seconds.")
        finally:
            if warm is None:
                self.remove(task.instance_id, container)
        report: dict[str, Any] = swebench("harness.grading").get_eval_report(
            test_spec=spec,
            prediction=task.prediction,
            test_log_path=str(folder / "test_output.txt"),
            include_tests_status=True,
        )
        (folder / "report.json").write_text(json.dumps(report, indent=4), encoding="utf-8")
        return report

    def start(self, task: Task, log: TextIO) -> Any:
        """A fresh container of the task's image, as the harness creates it (no network)."""
        from cwm_agent.errors import RuntimeFailure

        _log(log, f"Creating container for {task.instance_id} from {task.image}...")
        # As the harness creates it (root, SYS_ADMIN for browser sandboxes), without network.
        limits = {
            "network_disabled": True,
            "network_mode": "none",
            "user": swebench("image_builder.constants").CONTAINER_USER,
            "cap_add": ["SYS_ADMIN"],
        }
        try:
            container = start_container(self.client, task.image, self.run_id, limits)
        except RuntimeFailure as exc:
            raise GradingError(str(exc)) from exc
        with self._lock:
            stopping = self.stopping
            if not stopping:
                self.live[task.instance_id] = container
        if stopping:  # the interrupt came while it was starting
            remove_container(container)
            raise GradingError("interrupted")
        _log(log, f"Container for {task.instance_id} started: {container.id}")
        return container

    def remove(self, instance_id: str, container: Any) -> None:
        with self._lock:
            self.live.pop(instance_id, None)
        remove_container(container)

    def remove_all(self) -> None:
        """Ctrl-C: every container in use goes, which ends the commands running in them."""
        with self._lock:
            self.stopping = True
            live = list(self.live.values())
        for container in live:
            try:
                remove_container(container)
            except Exception:  # noqa: BLE001 - best effort; `cwm-agent cleanup` finds the rest
                pass


def _apply(container: Any, patch: str, log: TextIO) -> None:
    """The harness's fallbacks, in its order, its reset between attempts and its reverse
    check (``verification.applycmds.apply_patch``, the one apply every stage uses)."""
    constants = swebench("harness.constants")
    patch_file = constants.CONTAINER_PATCH_FILE
    put_file(container, patch_file, patch.encode("utf-8"))
    commands = swebench("harness.run_evaluation").GIT_APPLY_CMDS
    applied = apply_patch(_InContainer(container, patch_file), commands)
    for command, code in applied.tried:
        if code != 0:
            _log(log, f"Failed to apply patch to container: {command}")
    if applied.command is not None:
        _log(log, f"{constants.APPLY_PATCH_PASS}:\n{applied.output}")
    elif applied.already:
        _log(log, f"{constants.APPLY_PATCH_PASS}: verified already applied")
    else:
        raise GradingError(f"{constants.APPLY_PATCH_FAIL}:\n{applied.output}")


class _InContainer:
    """The container's /testbed as ``apply_patch`` applies to it, as the harness runs it."""

    def __init__(self, container: Any, patch_file: str) -> None:
        image = swebench("image_builder.constants")
        self.container, self.patch_file = container, patch_file
        self.where = {"workdir": image.CONTAINER_WORKDIR, "user": image.CONTAINER_USER}

    def attempt(self, command: str) -> tuple[int, str]:
        result = self.container.exec_run(f"{command} {self.patch_file}", **self.where)
        return result.exit_code, result.output.decode("utf-8", "replace")

    def reset(self) -> None:
        self.container.exec_run(["/bin/bash", "-c", HARNESS_RESET], **self.where)


def _run_eval(
    container: Any, script: str, timeout: float, environment: dict[str, str] | None = None
) -> tuple[str, bool]:
    """``/bin/bash /eval.sh`` as the harness runs it: (merged output, timed out)."""
    put_file(container, "/eval.sh", script.encode("utf-8"))
    output, timed_out, _ = exec_stream(container, ["/bin/bash", "/eval.sh"], timeout, environment)
    return output.decode("utf-8", "replace"), timed_out


def exec_stream(
    container: Any, argv: list[str], timeout: float, environment: dict[str, str] | None = None
) -> tuple[bytes, bool, int | None]:
    """``argv`` in the container: (merged output, timed out, exit code). On a time-out the
    command goes on: the caller ends it (or removes the container)."""
    api = container.client.api
    exec_id = api.exec_create(container.id, argv, environment=environment)["Id"]
    chunks: list[bytes] = []
    failure: list[BaseException] = []

    def read() -> None:
        try:
            for chunk in api.exec_start(exec_id, stream=True):
                chunks.append(chunk)
        except Exception as exc:  # noqa: BLE001 - reported below, or the container went
            failure.append(exc)

    reader = threading.Thread(target=read, name="evaluate-eval", daemon=True)
    reader.start()
    reader.join(timeout)
    timed_out = reader.is_alive()  # the caller ends it (or removes the container)
    if failure and not timed_out:
        raise GradingError(f"`{shlex.join(argv)}` could not run: {failure[0]}")
    code = None if timed_out else api.exec_inspect(exec_id).get("ExitCode")
    return b"".join(chunks), timed_out, code


def put_file(container: Any, path: str, data: bytes) -> None:
    """One file into the container, from memory (a tar of one member, owned by root)."""
    target = PurePosixPath(path)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(target.name)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    if not container.put_archive(str(target.parent), buffer.getvalue()):
        raise GradingError(f"cannot write {path} in the container")


def _log(log: TextIO, text: str) -> None:
    log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} - {text}\n")
    log.flush()


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
