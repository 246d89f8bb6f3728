"""Trace consultation in the agent loop (`--trace-prediction`): a `ToolHook` for bash.

When a bash command runs pytest on one named test, the consultant runs the command for
real, traces that test inside the runtime, asks the model for its predicted trace of the
same test (seeded with the real call frame, so it knows `self` but nothing of the outcome)
and appends a short comparison to the observation. Anything that goes wrong in all this is
recorded and the real observation is returned unchanged: consultation never breaks a step.
Its model requests count in the run's ``Meter`` (the agent hands it over): the run's tokens,
cost and budgets; once a budget is spent no consultation starts.

What counts as a test-running command (`find_test_target`), in each `&&`/`;`/`|` part:
`pytest ARGS`, `py.test ARGS`, `PYTHON -m pytest ARGS` (PYTHON: any `python*` path, which
then also runs the tracer), optionally behind `cd DIR`, `VAR=value`, `env`, `time`, `timeout
N`, `uv run` or `poetry run`. ARGS must name a test: a node id `path.py::test` or
`path.py::Class::test` (the first one is consulted), or one test file with `-k NAME` where
NAME is a plain identifier matching exactly one test of that file (equal, else a unique
substring). Not consulted: whole files or folders, `-k` expressions, parametrized ids
(`test[1]`), tests that take fixtures, async tests, unittest-style dotted names.
"""

from __future__ import annotations

import posixpath
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from cwm_agent.costs import Meter
from cwm_agent.types import Action, FileTooLarge, Observation, Runtime

from .commands import NamedTest, NotConsulted, entry_names, find_test_target
from .compare import compare_traces
from .predict import import_candidates, predict_trace
from .runner import TraceError, TraceResult, parse_tracer_output, tracer_argv, tracer_source

_CHUNK = 48_000  # below the shell session's head+tail output window
_MAX_TRACE_BYTES = 16_000_000
_MAX_CONTEXT_BYTES = 48_000
_MAX_SOURCE_BYTES = 4 << 20  # the test's own file: it goes to the model whole


# Runs in a subshell: the agent's session keeps its cwd, variables and shell options.
# Prints "CWMTRACE FOLDER STATUS SIZE", then the trace when it is small, else stderr's tail.
_TRACE_SCRIPT = """( set +e
d=$(mktemp -d "${TMPDIR:-/tmp}/cwm-trace-XXXXXX") || { echo "CWMTRACE - 90 0"; exit; }
cat > "$d/tracer.py" <<'@MARK@'
@TRACER@
@MARK@
cd @CWD@ || { echo "CWMTRACE $d 91 0"; exit; }
if command -v timeout >/dev/null; then t='timeout -k 5 @LIMIT@'; else t=; fi
$t @PYTHON@ @ARGS@ </dev/null >/dev/null 2>"$d/err"; s=$?
n=0; [ -s "$d/out.json" ] && n=$(wc -c < "$d/out.json"); n=$((n + 0))
echo "CWMTRACE $d $s $n"
if [ "$n" -gt 0 ] && [ "$n" -le @CHUNK@ ]; then cat "$d/out.json"
elif [ "$n" -eq 0 ]; then tail -c 2000 "$d/err"; fi ) || true"""


class TraceConsultant:
    """`ToolHook` (agent.py) that adds predicted-versus-real trace comparisons to test runs."""

    def __init__(
        self,
        model: Any,
        *,
        python: str | None = None,
        api: str = "completions",
        step_by_step: bool = False,
        max_frames: int = 100,
        max_tokens: int = 4096,
        max_steps: int = 2000,
        time_limit: float = 10.0,
        max_repr: int = 300,
        with_imports: bool = True,
    ) -> None:
        self.model = model
        self.python = python
        self.api, self.step_by_step = api, step_by_step
        self.max_frames, self.max_tokens = max_frames, max_tokens
        self.max_steps, self.time_limit, self.max_repr = max_steps, time_limit, max_repr
        self.with_imports = with_imports

    def around(
        self,
        action: Action,
        runtime: Runtime,
        execute: Callable[[], Observation],
        meter: Meter | None = None,
    ) -> tuple[Observation, dict[str, Any] | None]:
        command = action.args.get("command", "") if action.tool == "bash" else ""
        target = find_test_target(command) if command else None
        if target is None:
            return execute(), None
        record: dict[str, Any] = {"entry": target.node_id, "command": command}
        started = time.monotonic()
        try:
            plan = self._plan(target, runtime)
        except Exception as exc:  # noqa: BLE001 - consultation must never break the step
            record.update(_failure(exc), seconds=round(time.monotonic() - started, 6))
            return execute(), record
        planning = time.monotonic() - started
        observation = execute()
        started = time.monotonic()
        spent = meter.exhausted() if meter is not None else None
        if spent is not None:
            record.update(status="skipped", reason=f"no consultation: {spent.reason}")
            return observation, record
        try:
            note = self._consult(plan, runtime, record, meter)
            observation = replace(observation, output=f"{observation.output}\n\n{note}")
            record["status"] = "compared"
        except Exception as exc:  # noqa: BLE001
            record.update(_failure(exc))
        record["seconds"] = round(planning + time.monotonic() - started, 6)
        return observation, record

    def _plan(self, target: NamedTest, runtime: Runtime) -> dict[str, Any]:
        cwd = runtime.run("pwd", 10).output.strip() or runtime.root
        cwd = posixpath.normpath(posixpath.join(cwd, target.cd))
        path = posixpath.normpath(posixpath.join(cwd, target.path))
        rel = posixpath.relpath(path, runtime.root)
        if rel.startswith("../"):
            raise NotConsulted(f"{target.path} is outside the repository")
        source = runtime.read_file(rel, _MAX_SOURCE_BYTES).decode("utf-8", errors="replace")
        names = entry_names(source, target)
        python = self.python or target.python or "python3"
        extras = _imported_sources(runtime, source, rel) if self.with_imports else []
        return dict(cwd=cwd, path=path, rel=rel, source=source, names=names, python=python,
                    extras=extras)  # fmt: skip

    def _consult(
        self, plan: dict[str, Any], runtime: Runtime, record: dict[str, Any], meter: Meter | None
    ) -> str:
        from cwm_agent.prompts import render

        started = time.monotonic()
        target = "::".join((plan["path"], *plan["names"]))
        real = trace_in_runtime(
            runtime, target, cwd=plan["cwd"], python=plan["python"],
            max_steps=self.max_steps, time_limit=self.time_limit, max_repr=self.max_repr,
        )  # fmt: skip
        record["trace"] = {
            "seconds": round(time.monotonic() - started, 6), "frames": len(real.frames),
            "cut": real.cut, "reason": real.reason, "error": real.error, "python": real.python,
        }  # fmt: skip
        seed = real.frames[:1] if real.frames and real.frames[0].event == "call" else ()
        prediction = predict_trace(
            self.model, plan["source"], ".".join(plan["names"]), seed=seed, api=self.api,
            step_by_step=self.step_by_step, max_frames=self.max_frames,
            max_tokens=self.max_tokens, extra_sources=plan["extras"], meter=meter,
        )  # fmt: skip
        record["prediction"] = {k: v for k, v in prediction.to_dict().items() if k != "frames"}
        record["prediction"]["frames"] = len(prediction.frames)
        comparison = compare_traces(prediction.frames, real.frames, real.complete)
        record.update(headline=comparison.headline(), summary=comparison.summary())
        record["comparison"] = comparison.to_dict()
        return render(
            "trace_consult",
            entry="::".join((plan["rel"], *plan["names"])),
            headline=_shorten(comparison.headline(), 700),
            matched=comparison.frames_matched,
            total=comparison.real_frames,
            real_cut=real.cut,
            prediction_cut=prediction.cut is not None,
        )


def trace_in_runtime(
    runtime: Runtime,
    target: str,
    call: str | None = None,
    *,
    cwd: str,
    python: str = "python3",
    max_steps: int = 2000,
    time_limit: float = 10.0,
    max_repr: int = 300,
) -> TraceResult:
    """Run tracer.py with the runtime's interpreter, from a private temp folder outside the
    repository (so it never shows in a patch), in a subshell (the session's cwd and
    environment stay as they were). Raises TraceError / TargetError."""
    argv = tracer_argv('"$d/tracer.py"', target, call, root=runtime.root, out='"$d/out.json"',
                       max_steps=max_steps, time_limit=time_limit, max_repr=max_repr)  # fmt: skip
    limit = int(time_limit + 15)
    script = _TRACE_SCRIPT
    for key, value in [
        ("MARK", f"CWM_TRACER_{secrets.token_hex(8)}"),
        ("CWD", shlex.quote(cwd)),
        ("LIMIT", str(limit)),
        ("PYTHON", shlex.quote(python)),
        ("ARGS", " ".join(a if a.startswith('"$d/') else shlex.quote(a) for a in argv)),
        ("CHUNK", str(_CHUNK)),
        ("TRACER", tracer_source()),  # last: nothing is substituted inside it
    ]:
        script = script.replace(f"@{key}@", value)
    result = runtime.run(script, limit + 30)
    _, found, after = result.output.partition("CWMTRACE ")
    head, _, body = after.partition("\n")
    fields = head.split()
    if not found or len(fields) != 3:
        raise TraceError(f"the tracer did not run in the runtime: {_shorten(result.output, 300)}")
    folder, status, size = fields[0], fields[1], int(fields[2])
    try:
        if folder == "-" or _within(folder, runtime.root):
            raise TraceError("no private temp folder outside the repository for the tracer")
        if size == 0:
            hint = body.strip()[-500:] or "no output"
            raise TraceError(f"the tracer exited with status {status} and wrote no trace: {hint}")
        text = body if size <= _CHUNK else _read_remote(runtime, f"{folder}/out.json", size)
        return parse_tracer_output(text)
    finally:
        if folder != "-":
            runtime.run(f"rm -rf {shlex.quote(folder)}", 30)


def _within(path: str, root: str) -> bool:
    return (path.rstrip("/") + "/").startswith(root.rstrip("/") + "/")


def _read_remote(runtime: Runtime, path: str, size: int) -> str:
    """A file of the runtime read through its shell, in chunks its output window keeps."""
    if size > _MAX_TRACE_BYTES:
        raise TraceError(f"the trace is too large to read back ({size} bytes)")
    parts, offset, chunk = [], 0, _CHUNK
    while offset < size:
        cmd = f"tail -c +{offset + 1} {shlex.quote(path)} | head -c {chunk}"
        result = runtime.run(cmd, 30)
        if result.cut_bytes:
            chunk //= 2
            if chunk < 1024:
                raise TraceError("the runtime's output window is too small to read the trace")
            continue
        if not result.output:
            raise TraceError(f"reading the trace stopped at byte {offset} of {size}")
        parts.append(result.output)
        offset += len(result.output.encode())
    return "".join(parts)


def _imported_sources(runtime: Runtime, source: str, rel: str) -> list[tuple[str, str]]:
    """The repository files the test imports (bounded), as prediction context."""
    candidates = import_candidates(source, rel)
    if not candidates:
        return []
    listing = " ".join(shlex.quote(c) for c in candidates[:60])
    root = shlex.quote(runtime.root)
    probe = f'( cd {root} && for f in {listing}; do [ -f "$f" ] && echo "$f"; done; true )'
    present = runtime.run(probe, 10).output.split()
    found, total = [], 0
    for path in [c for c in candidates if c in present][:8]:
        try:
            data = runtime.read_file(path, _MAX_CONTEXT_BYTES - total)
        except FileTooLarge:
            continue  # more than the context has room for: never read
        text = data.decode("utf-8", errors="replace")
        if text.strip() and total + len(text) <= _MAX_CONTEXT_BYTES:
            found.append((path, text))
            total += len(text)
    return found


def _failure(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, NotConsulted):
        return {"status": "skipped", "reason": str(exc)}
    return {"status": "failed", "error": _shorten(f"{type(exc).__name__}: {exc}", 1000)}


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
