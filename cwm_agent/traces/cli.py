"""`cwm-agent trace ...`: record real traces and compare predictions with them."""

from __future__ import annotations

import json
from typing import TextIO

import click


@click.group()
def trace() -> None:
    """The neural debugger: real execution traces in CWM's frame format.

    \b
    Examples:
      cwm-agent trace run 'pkg/mod.py::f' --call "f('strawberry')"
      cwm-agent trace run tests/test_mod.py::test_f --json > real.json
      cwm-agent trace compare predicted.txt real.json
    """


@trace.command("run")
@click.argument("target")
@click.option(
    "--call",
    "call",
    metavar="EXPR",
    help="Expression evaluated in the target's "
    "module, e.g. \"f('x')\". Default: the target called with no arguments.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of frames.")
@click.option(
    "--python",
    "python",
    metavar="EXE",
    help="Interpreter to run the code with "
    "(default: the one running cwm-agent). Python 3.7 or newer.",
)
@click.option(
    "--root",
    default=".",
    show_default=True,
    type=click.Path(exists=True, file_okay=False),
    help="Repository root: code under it is user code, and the call runs there.",
)
@click.option("--max-steps", default=10_000, show_default=True, help="Cut after N frames.")
@click.option("--time-limit", default=10.0, show_default=True, help="Cut after N seconds.")
@click.option(
    "--context",
    "with_context",
    is_flag=True,
    help="Prefix the CWM prompt: the source with its START_OF_TRACE marker.",
)
def run_command(
    target: str,
    call: str | None,
    as_json: bool,
    python: str | None,
    root: str,
    max_steps: int,
    time_limit: float,
    with_context: bool,
) -> None:
    """Record the real trace of a call.

    TARGET is FILE.py::FUNC (or MODULE::FUNC) with --call EXPR, or a pytest node id such as
    tests/test_x.py::test_y or tests/test_x.py::TestC::test_m, called with no arguments.
    Prints CWM token text (the frame grammar, ending with <|end_of_text|> unless the trace
    was cut); notes about cuts and errors go to stderr.

    \b
    Examples:
      cwm-agent trace run 'pkg/mod.py::f' --call "f('strawberry')"
      cwm-agent trace run tests/test_mod.py::test_f --json
      cwm-agent trace run mod.py::f --call 'f(3)' --python python3.8 --context
    """
    from .format import frames_to_json, render_trace
    from .runner import run_trace

    result = run_trace(
        target, call, root=root, python=python, max_steps=max_steps, time_limit=time_limit
    )
    if result.cut:
        click.echo(f"note: trace cut after {len(result.frames)} frames ({result.reason})", err=True)
    if result.error:
        click.echo(f"note: the call raised {result.error}", err=True)
    if as_json:
        click.echo(json.dumps(frames_to_json(result.frames), indent=1))
        return
    text = render_trace(result.frames, end=not result.cut)
    if with_context:
        text = _with_prompt(text, result.source(), result.entry)
    click.echo(text)


def _with_prompt(text: str, source: str | None, entry: str) -> str:
    from .format import build_prompt

    try:
        if source is None:
            raise ValueError("the traced source is not readable")
        return build_prompt(source, entry) + text
    except (ValueError, SyntaxError) as exc:
        click.echo(f"note: no prompt context ({exc}); printing frames only", err=True)
        return text


@trace.command("compare")
@click.argument("predicted", type=click.File("r", encoding="utf-8"))
@click.argument("real", type=click.File("r", encoding="utf-8"))
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option(
    "--source",
    type=click.File("r", encoding="utf-8"),
    help="The traced source file, to number the lines of CWM text inputs.",
)
def compare_command(predicted: TextIO, real: TextIO, as_json: bool, source: TextIO | None) -> None:
    """Show where PREDICTED first departs from REAL, with match rates.

    Each file holds JSON frames (from `trace run --json`, or the tracer's document) or CWM
    token text (model output is parsed leniently); - reads stdin.

    \b
    Examples:
      cwm-agent trace compare predicted.txt real.json
      cwm-agent trace compare predicted.txt real.txt --source pkg/mod.py --json
    """
    from .compare import compare_traces
    from .format import load_frames
    from .runner import TargetError

    try:
        context = source.read() if source is not None else None
        predicted_frames, _ = load_frames(predicted.read(), context)
        real_frames, real_complete = load_frames(real.read(), context)
    except ValueError as exc:
        raise TargetError(f"cannot read the frames: {exc}") from exc
    result = compare_traces(predicted_frames, real_frames, real_complete)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        click.echo(result.summary())
