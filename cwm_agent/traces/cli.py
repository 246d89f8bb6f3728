"""`cwm-agent trace ...`: record real traces and compare predictions with them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import click

from cwm_agent.console import say, to_stdout
from cwm_agent.factory import open_model
from cwm_agent.options import config_options, resolve_options, setting_option
from cwm_agent.settings import model_settings

_root_option = click.option(
    "--root",
    default=".",
    show_default=True,
    type=click.Path(exists=True, file_okay=False),
    help="Repository root: code under it is user code, and the call runs there.",
)


@click.group()
def trace() -> None:
    """The neural debugger: real execution traces in CWM's frame format.

    \b
    Examples:
      cwm-agent trace run 'pkg/mod.py::f' --call "f('strawberry')"
      cwm-agent trace run tests/test_mod.py::test_f --json > real.json
      cwm-agent trace predict 'pkg/mod.py::f' --call "f('x')" --model facebook/cwm --compare
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
@_root_option
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
        say(f"note: trace cut after {len(result.frames)} frames ({result.reason})")
    if result.error:
        say(f"note: the call raised {result.error}")
    if as_json:
        click.echo(json.dumps(frames_to_json(result.frames), indent=1))
        return
    text = render_trace(result.frames, end=not result.cut)
    if with_context:
        text = _with_prompt(text, result.source(), result.entry)
    to_stdout(text)


def _with_prompt(text: str, source: str | None, entry: str) -> str:
    from .format import build_prompt

    try:
        if source is None:
            raise ValueError("the traced source is not readable")
        return build_prompt(source, entry) + text
    except (ValueError, SyntaxError) as exc:
        say(f"note: no prompt context ({exc}); printing frames only")
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
        to_stdout(result.summary())  # the frames' text may come from a model


@trace.command("predict")
@click.argument("target")
@click.option("--call", "call", metavar="EXPR", help="Expression the trace starts from.")
@config_options
@setting_option("model")
@setting_option("base_url")
@setting_option("request_timeout")
@setting_option("max_retries")
@click.option(
    "--api",
    "prompt_api",  # not the `api` setting (the client's transport): the prompt's kind
    type=click.Choice(["completions", "chat"]),
    default="completions",
    show_default=True,
    help="completions: CWM's raw prompt with special tokens; chat: a chat prompt asking "
    "for the same frames as text (models without CWM's tokens).",
)
@click.option("--step-by-step", is_flag=True, help="One request per frame (completions).")
@click.option("--compare", is_flag=True, help="Also record the real trace and compare.")
@click.option(
    "--seed/--no-seed",
    default=True,
    show_default=True,
    help="Start the prediction from the real call frame (runs the call up to its first "
    "frame), so the model sees the actual arguments.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--python", "python", metavar="EXE", help="Interpreter for the real trace.")
@_root_option
@click.option(
    "--context-file",
    "context_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="More source to show the model before the target's file (repeatable).",
)
@click.option("--max-frames", default=200, show_default=True, help="Predict at most N frames.")
@click.option("--max-tokens", default=8192, show_default=True, help="Token budget.")
@click.option(
    "--temperature",
    "trace_temperature",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 2),
    help="Sampling temperature of the prediction (greedy by default; not the run setting).",
)
def predict_command(
    target: str,
    call: str | None,
    prompt_api: str,
    step_by_step: bool,
    compare: bool,
    seed: bool,
    as_json: bool,
    python: str | None,
    root: str,
    context_files: tuple[str, ...],
    max_frames: int,
    max_tokens: int,
    trace_temperature: float,
    **opts: Any,
) -> None:
    """Ask the model for the trace of a call; with --compare, check it against reality.

    TARGET is FILE.py::FUNC (or MODULE::FUNC, or a pytest node id) as for `trace run`.
    Prints the predicted trace as CWM token text; --compare adds the comparison summary
    after a blank line. Costs (requests, tokens, seconds) and parser notes go to stderr.
    The model and its endpoint come as for `run`: flag, env CWM_AGENT_<NAME> (and
    OPENAI_BASE_URL), the config file and its --profile; the key from OPENAI_API_KEY.

    \b
    Examples:
      cwm-agent trace predict 'pkg/mod.py::f' --call "f('strawberry')" \\
          --base-url http://gpu:8000/v1 --model facebook/cwm --compare
      cwm-agent trace predict tests/test_mod.py::test_f --model gpt-4.1 --api chat --json
    """
    from .compare import compare_traces
    from .predict import predict_trace
    from .runner import TargetError, run_trace

    settings = replace(model_settings(resolve_options(opts)), temperature=trace_temperature)
    path, entry = _target_source(target, root)
    try:
        source = path.read_text(encoding="utf-8", errors="replace")
        extras = [(f, Path(f).read_text(encoding="utf-8", errors="replace")) for f in context_files]
    except OSError as exc:
        raise TargetError(f"cannot read the source: {exc}") from exc
    real = None
    if compare or seed:
        steps = 10_000 if compare else 1  # the call frame is the first one
        real = run_trace(target, call, root=root, python=python, max_steps=steps)
    first = real.frames[:1] if real and seed else ()
    try:
        prediction = predict_trace(
            open_model(settings), source, entry,
            seed=tuple(f for f in first if f.event == "call"), api=prompt_api,
            step_by_step=step_by_step, max_frames=max_frames, max_tokens=max_tokens,
            temperature=trace_temperature, call=call, extra_sources=extras,
        )  # fmt: skip
    except (ValueError, SyntaxError) as exc:
        raise TargetError(f"cannot build the prompt: {exc}") from exc
    comparison = None
    if compare and real is not None:
        comparison = compare_traces(prediction.frames, real.frames, real.complete)
    _report_costs(prediction)
    if as_json:
        doc = {
            "target": target,
            "call": call,
            "prediction": prediction.to_dict(),
            "comparison": comparison.to_dict() if comparison else None,
            "real": real.to_dict() if compare and real else None,
        }
        click.echo(json.dumps(doc, indent=1))
        return
    from .format import render_trace

    to_stdout(render_trace(prediction.frames, end=prediction.ended))  # the model's text
    if comparison is not None:
        to_stdout("\n" + comparison.summary())


def _target_source(target: str, root: str) -> tuple[Path, str]:
    """The file that defines TARGET and the entry's qualified name in it."""
    from .runner import TargetError

    head, sep, rest = target.partition("::")
    if not sep or not head or not rest:
        raise TargetError(
            f"target {target!r} is not FILE.py::NAME, MODULE::NAME or a pytest node id",
            hint="for example: pkg/mod.py::f --call \"f('x')\"",
        )
    entry = ".".join(name.split("[", 1)[0] for name in rest.split("::"))
    if head.endswith(".py") or "/" in head:
        candidates = [Path(root, head)]
    else:
        module = Path(root, *head.split("."))
        candidates = [module.with_suffix(".py"), module / "__init__.py"]
    for path in candidates:
        if path.is_file():
            return path, entry
    raise TargetError(f"no source file for {head} under {root}", hint="check TARGET and --root")


def _report_costs(prediction: Any) -> None:
    usage = prediction.usage
    say(
        f"note: predicted {len(prediction.frames) - prediction.seeded} frames in "
        f"{prediction.requests} request(s), {usage.prompt_tokens} prompt + "
        f"{usage.completion_tokens} completion tokens, {prediction.seconds:.2f} s"
        + (f"; stopped at {prediction.cut}" if prediction.cut else "")
    )
    for problem in prediction.problems:
        say(f"note: {problem}")
