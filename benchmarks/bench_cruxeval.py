"""CRUXEval conformance and speed of the tracer.

For every record of cruxeval.jsonl whose expected output is a Python literal: trace
`f(INPUT)`, check that the trace ends with a return frame whose value equals the expected
output, and that the trace survives the project's own round trips (CWM token text through
`format.parse_trace`, JSON through `format.frames_from_json`). Prints a markdown report.

    python benchmarks/bench_cruxeval.py                 # tracer in-process (its raw speed)
    python benchmarks/bench_cruxeval.py --subprocess    # one `run_trace` subprocess per record

The data file is only read, never copied; the functions are written one per file into a
temporary folder because the tracer traces files.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cwm_agent.traces.format import (  # noqa: E402
    Frame,
    frames_from_json,
    frames_to_json,
    parse_trace,
    render_trace,
)
from cwm_agent.traces.runner import TRACER_PATH, run_trace  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cruxeval.jsonl"


def literal(text: str) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None


def load_tracer() -> Any:
    spec = importlib.util.spec_from_file_location("cwm_standalone_tracer", TRACER_PATH)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def trace_in_process(tracer: Any, folder: Path, name: str, call: str) -> dict[str, Any]:
    doc = tracer.trace_target(f"{name}.py::f", call, str(folder), 100_000, 10.0, 0)
    return {"frames": frames_from_json(doc), "cut": doc["cut"], "error": doc["error"]}


def trace_subprocess(folder: Path, name: str, call: str, python: str | None) -> dict[str, Any]:
    result = run_trace(f"{name}.py::f", call, root=folder, python=python, max_repr=0)
    return {"frames": list(result.frames), "cut": result.cut, "error": result.error}


def check(frames: list[Frame], cut: bool, error: str | None, expected: Any, code: str) -> str:
    """ "" when the record conforms, else what went wrong."""
    if cut or error:
        return f"cut={cut} error={error.splitlines()[0] if error else None}"
    last = frames[-1] if frames else None
    if last is None or last.event != "return" or last.value is None:
        return "the trace does not end with a return frame"
    ok, value = literal(last.value)
    if not (ok and value == expected) and last.value.strip() != repr(expected):
        return f"returned {last.value[:80]} instead of {expected!r:.80}"
    parsed = parse_trace(render_trace(frames), code)
    if not parsed.ended or _shape(parsed.frames) != _shape(frames):
        return f"the CWM text does not parse back ({'; '.join(parsed.problems) or 'frames differ'})"
    if frames_from_json(json.loads(json.dumps(frames_to_json(frames)))) != frames:
        return "the JSON does not round-trip"
    return ""


def _shape(frames: Any) -> list[tuple[Any, ...]]:
    """Everything a frame says except its line number (the text does not carry it)."""
    return [(f.event, f.source, dict(f.locals), f.value) for f in frames]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--subprocess", action="store_true", help="one run_trace per record")
    parser.add_argument("--python", help="interpreter for --subprocess (default: this one)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N records")
    args = parser.parse_args(argv)
    records = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    records = records[: args.limit] if args.limit else records
    tracer = None if args.subprocess else load_tracer()
    eligible = matched = lines_agree = frames_total = 0
    failures: list[tuple[str, str]] = []
    traced_seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="cruxeval-") as tmp:
        folder = Path(tmp)
        for i, record in enumerate(records):
            ok, expected = literal(record["output"])
            if not ok:
                continue
            eligible += 1
            name = f"crux_{i}"
            (folder / f"{name}.py").write_text(record["code"] + "\n")
            call = f"f({record['input']})"
            started = time.perf_counter()
            try:
                if tracer is not None:
                    got = trace_in_process(tracer, folder, name, call)
                else:
                    got = trace_subprocess(folder, name, call, args.python)
            except Exception as exc:  # e.g. code newer than the interpreter
                got = {"frames": [], "cut": False, "error": f"{type(exc).__name__}: {exc}"}
            traced_seconds += time.perf_counter() - started
            problem = check(got["frames"], got["cut"], got["error"], expected, record["code"])
            if problem:
                failures.append((record.get("id", name), problem))
                continue
            matched += 1
            frames_total += len(got["frames"])
            parsed = parse_trace(render_trace(got["frames"]), record["code"]).frames
            lines_agree += [f.line for f in parsed] == [f.line for f in got["frames"]]
    mode = "subprocess (run_trace)" if args.subprocess else "in-process (tracer.trace_target)"
    rate = eligible / traced_seconds if traced_seconds else 0.0
    python = args.python if args.subprocess and args.python else sys.version.split()[0]
    print(f"## CRUXEval tracer conformance ({mode}, Python {python})\n")
    print("| records | output is a literal | return value matches and trace parses back "
          "| line numbers recovered from text | frames | traces/s |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    print(f"| {len(records)} | {eligible} | {matched} / {eligible} | {lines_agree} / {matched} "
          f"| {frames_total} | {rate:.0f} |")  # fmt: skip
    for rid, problem in failures[:20]:
        print(f"- {rid}: {problem}")
    return 0 if matched == eligible else 1


if __name__ == "__main__":
    sys.exit(main())
