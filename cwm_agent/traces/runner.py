"""Host side of the tracer: run tracer.py in a subprocess and read its frames back.

The tracer is a standalone script (TRACER_PATH, tracer_source()) so that a runtime can copy
it into a container and build the same command line with tracer_argv(); read what it wrote
with parse_tracer_output().
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cwm_agent.errors import CwmError, UsageError

from .format import Frame, frames_from_json

TRACER_PATH = Path(__file__).with_name("tracer.py")
DEFAULT_MAX_STEPS = 10_000
DEFAULT_TIME_LIMIT = 10.0
DEFAULT_MAX_REPR = 1000
STARTUP_GRACE = 20.0  # interpreter start and imports, on top of the tracer's own limit
_MARK = "CWM_AGENT_TRACE"  # in the environment of everything a trace run starts


class TraceError(CwmError):
    """The tracer itself failed (crashed, timed out, wrote no output)."""


class TargetError(UsageError):
    """The target cannot be traced as given: missing file, import error, bad --call."""


@dataclass(frozen=True)
class TraceResult:
    """A real trace plus how the call went."""

    frames: tuple[Frame, ...]
    entry: str  # qualified name in its module: `f`, `TestC.test_m`
    call: str
    filename: str | None
    cut: bool = False
    reason: str | None = None  # why the trace was cut: max_steps | time_limit
    error: str | None = None  # "Type: message" when the call raised
    returned: str | None = None  # repr of the return value
    stdout: str = ""
    python: str = ""
    elapsed: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.cut

    def source(self) -> str | None:
        """The text of the traced file, for building a prediction prompt."""
        if not self.filename:
            return None
        try:
            return Path(self.filename).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": [f.to_dict() for f in self.frames],
            "entry": self.entry,
            "call": self.call,
            "filename": self.filename,
            "cut": self.cut,
            "reason": self.reason,
            "error": self.error,
            "returned": self.returned,
            "stdout": self.stdout,
            "python": self.python,
            "elapsed": self.elapsed,
        }


def tracer_source() -> str:
    return TRACER_PATH.read_text(encoding="utf-8")


def tracer_argv(
    tracer: str,
    target: str,
    call: str | None = None,
    *,
    root: str = ".",
    out: str | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    time_limit: float = DEFAULT_TIME_LIMIT,
    max_repr: int = DEFAULT_MAX_REPR,
) -> list[str]:
    """The tracer's arguments (after the interpreter), for any runtime."""
    argv = [tracer, "--root", root, "--target", target, "--max-steps", str(max_steps)]
    argv += ["--time-limit", str(time_limit), "--max-repr", str(max_repr)]
    if call is not None:
        argv += ["--call", call]
    if out is not None:
        argv += ["--out", out]
    return argv


def parse_tracer_output(text: str) -> TraceResult:
    """The tracer's JSON document as a TraceResult; a load failure becomes TargetError."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(f"the tracer wrote unreadable output ({exc.msg})") from exc
    if not isinstance(doc, dict):
        raise TraceError("the tracer wrote unexpected output (not a JSON object)")
    if doc.get("fatal"):
        raise TargetError(
            str(doc["fatal"]), hint="check the target (FILE.py::NAME or MODULE::NAME) and --call"
        )
    return TraceResult(
        frames=tuple(frames_from_json(doc.get("frames", []))),
        entry=str(doc.get("entry", "")),
        call=str(doc.get("call", "")),
        filename=doc.get("filename"),
        cut=bool(doc.get("cut")),
        reason=doc.get("reason"),
        error=doc.get("error"),
        returned=doc.get("returned"),
        stdout=str(doc.get("stdout") or ""),
        python=str(doc.get("python") or ""),
        elapsed=float(doc.get("elapsed") or 0.0),
    )


def run_trace(
    target: str,
    call: str | None = None,
    *,
    root: str | os.PathLike[str] = ".",
    python: str | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    time_limit: float = DEFAULT_TIME_LIMIT,
    max_repr: int = DEFAULT_MAX_REPR,
) -> TraceResult:
    """Trace `target` (`path.py::func`, `pkg.mod::func`, or a pytest node id
    `tests/test_x.py::test_y` / `...::TestC::test_m`) in a fresh interpreter.

    `call` is the expression to evaluate in the target's module (default: the target called
    with no arguments). The subprocess runs in `root`; files under `root` are user code.
    """
    root_path = Path(root).resolve()
    if not root_path.is_dir():
        raise TargetError(f"root directory not found: {root}")
    exe = _find_python(python)
    _check_target(target, root_path)
    with tempfile.TemporaryDirectory(prefix="cwm-trace-") as tmp:
        out = os.path.join(tmp, "trace.json")
        argv = tracer_argv(
            str(TRACER_PATH), target, call, root=str(root_path), out=out,
            max_steps=max_steps, time_limit=time_limit, max_repr=max_repr,
        )  # fmt: skip
        returncode, stderr = _run_tracer([exe, *argv], root_path, time_limit + STARTUP_GRACE)
        try:
            text = Path(out).read_text(encoding="utf-8")
        except OSError:
            text = ""
    if not text:
        hint = stderr.strip()[-2000:] or f"run {exe} {TRACER_PATH} --help to check it"
        raise TraceError(f"the tracer exited with status {returncode} and wrote no trace", hint)
    return parse_tracer_output(text)


def _run_tracer(argv: list[str], root: Path, timeout: float) -> tuple[int, str]:
    """Run the tracer; (exit status, stderr). Whatever the traced code started goes with it.

    The traced code may leave children behind (``subprocess.Popen``, ``os.fork``, a shell's
    ``&``). They inherit the tracer's output, so reading pipes to their end would wait for
    them: output goes to a file and only the tracer is waited for. The tracer gets its own
    process group and a marker in its environment; at the end the group is killed, and so is
    every process still carrying the marker (a child that called setsid()).
    """
    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    env = {**os.environ, _MARK: token}
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            argv, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=err, start_new_session=True,
        )  # fmt: skip
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TraceError(
                f"the tracer did not finish within {timeout:.0f} s",
                hint="lower --max-steps or look for code that blocks outside Python",
            ) from None
        finally:
            _kill_all(proc, f"{_MARK}={token}".encode())
        err.seek(0)
        return returncode, err.read().decode("utf-8", "replace")


def _kill_all(proc: subprocess.Popen[bytes], mark: bytes) -> None:
    from cwm_agent.runtimes.reaper import kill_marked

    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group outlives its leader while members live
    except (ProcessLookupError, PermissionError):
        pass
    kill_marked(mark)
    proc.wait()


def _find_python(python: str | None) -> str:
    if python is None:
        return sys.executable
    found = shutil.which(python)
    if found is None:
        raise TargetError(
            f"python interpreter not found: {python}", hint="give a path or a name on PATH"
        )
    return found


def _check_target(target: str, root: Path) -> None:
    head, sep, rest = target.partition("::")
    if not sep or not head or not rest:
        raise TargetError(
            f"target {target!r} is not FILE.py::NAME, MODULE::NAME or a pytest node id",
            hint="for example: pkg/mod.py::f --call \"f('x')\"",
        )
    if head.endswith(".py") and not (root / head).is_file():
        raise TargetError(f"no such file: {head} (relative to {root})")
