"""The transcript in a terminal (rich): header, issue, each step, the final patch.

Untrusted text (everything the model or its commands wrote) goes through ``Text`` objects
or plain segments, never rich markup; ``load_view`` has already made its control
characters visible. Prose is wrapped to the width; code (commands, created files, edits,
patches) never is: a patch copied from the transcript must still apply.
"""

from __future__ import annotations

from typing import Any

from cwm_agent.show.view import RunView, StepView, diff_lines, edit_diff, hook_parts

ISSUE_LINES = 40
REASONING_LINES = 12
OBSERVATION_HEAD, OBSERVATION_TAIL = 15, 5


def folded(text: str, head: int, tail: int = 0, full: bool = False) -> str:
    """Keep the first ``head`` and last ``tail`` lines, saying how many were folded."""
    lines = text.rstrip("\n").splitlines()
    if full or len(lines) <= head + tail + 1:
        return "\n".join(lines)
    hidden = len(lines) - head - tail
    marker = f"… {hidden} lines folded (--full shows everything) …"
    return "\n".join([*lines[:head], marker, *(lines[-tail:] if tail else [])])


def render(view: RunView, console: Any, full: bool = False) -> None:
    from rich.panel import Panel
    from rich.rule import Rule
    from rich.table import Table
    from rich.text import Text

    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    for label, value in view.facts:
        header.add_row(label, Text(value))
    console.print(Panel(header, title=Text(f"cwm-agent run {view.run_id}"), expand=False))
    issue = folded(view.issue, ISSUE_LINES, full=full)
    console.print(Panel(Text(issue), title="issue", title_align="left", border_style="blue"))
    for step in view.steps:
        console.print(Rule(_step_title(step), align="left", style="cyan"))
        _render_step(step, console, full)
    console.print(Rule("result", align="left", style="cyan"))
    style = "green" if view.exit_code == 0 else "red"
    console.print(Text(f"{view.status} (exit {view.exit_code}): ", style=f"bold {style}"), end="")
    console.print(Text(view.reason))
    _render_patch(view, console)


def _step_title(step: StepView) -> Any:
    from rich.text import Text

    title = Text(f"step {step.number} · {step.kind}", style="bold")
    timing = f" · model {step.model_seconds:.1f}s"
    if step.tool:
        timing += f" · tool {step.tool_seconds:.2f}s"
    title.append(f"{timing} · {step.tokens:,} tokens", style="dim")
    if step.outcome:
        title.append(f" · {step.outcome}", style="dim")
    return title


def _render_step(step: StepView, console: Any, full: bool) -> None:
    from rich.padding import Padding
    from rich.panel import Panel
    from rich.text import Text

    if step.reasoning:
        text = folded(step.reasoning, REASONING_LINES, full=full)
        console.print(Padding(Text(text, style="dim italic"), (0, 0, 0, 2), expand=False))
    if step.tool:
        _action(step, console, full)
    elif step.text:
        console.print(Padding(Text(step.text), (0, 0, 0, 2), expand=False))
    if step.format_error:
        problem = Text("FormatError: " + step.format_error, style="yellow")
        console.print(Padding(problem, (0, 0, 0, 2), expand=False))
    if step.observation is not None:
        output = str(step.observation.get("output", ""))
        body = folded(output, OBSERVATION_HEAD, OBSERVATION_TAIL, full)
        ok = step.observation.get("ok", True) and not step.observation.get("timed_out")
        title = f"observation · {step.outcome}" if step.outcome else "observation"
        panel = Panel(
            Text(body or "(no output)"),
            title=title,
            title_align="left",
            border_style="green" if ok else "red",
        )
        console.print(Padding(panel, (0, 0, 0, 2), expand=False))
    for name, record in step.hooks.items():
        console.print(Padding(_hook(name, record), (0, 0, 0, 2), expand=False))


def _action(step: StepView, console: Any, full: bool) -> None:
    from rich.padding import Padding
    from rich.syntax import Syntax
    from rich.text import Text

    args = step.args
    label = Text(f"{step.tool}", style="bold magenta")
    if step.tool != "bash":
        path = Text(args.get("path", "") or "(working-tree diff)", style="bold")
        label.append(" ").append(path)
    console.print(Padding(label, (0, 0, 0, 2), expand=False))
    if step.tool == "bash":
        print_code(console, args.get("command", ""), "bash", INDENT)
    elif step.tool == "edit":
        print_code(console, edit_diff(args), "diff", INDENT)
    elif step.tool == "create":
        content = folded(args.get("content", ""), 30, full=full)
        print_code(console, content, Syntax.guess_lexer(args.get("path", ""), content), INDENT)


INDENT = "  "  # code inside a step; the final patch starts at the margin
_DIFF_STYLES = {"add": "green", "del": "red", "hunk": "cyan", "meta": "bold", "ctx": ""}


def print_code(console: Any, code: str, lexer: str, indent: str = "") -> None:
    """``code`` exactly as it is: never wrapped, cropped or padded, tabs kept (rich's
    own renderables do all of that), coloured by line for diffs and by pygments
    otherwise; the colours are dropped where the console has none."""
    from rich.segment import Segment, Segments

    if not code:
        return
    pieces = _diff_pieces(code) if lexer == "diff" else _lexed_pieces(code, lexer)
    segments = [Segment(indent)]
    for part, style in pieces:
        lines = part.split("\n")
        for i, line in enumerate(lines):
            if i:
                segments += [Segment("\n"), Segment(indent)]
            if line:
                segments.append(Segment(line, console.get_style(style) if style else None))
    segments.append(Segment("\n"))  # (print adds its `end` to text only, not to segments)
    console.print(Segments(segments), crop=False, end="")


def _diff_pieces(code: str) -> list[tuple[str, str]]:
    lines = diff_lines(code.rstrip("\n"))
    return [
        (line + ("\n" if i < len(lines) - 1 else ""), _DIFF_STYLES[kind])
        for i, (kind, line) in enumerate(lines)
    ]


def _lexed_pieces(code: str, lexer_name: str) -> list[tuple[str, Any]]:
    """(text, rich style) runs of pygments tokens (through rich), tabs kept as they are."""
    from rich.syntax import Syntax

    code = code.rstrip("\n")
    lexer = Syntax(code, lexer_name, tab_size=0).lexer  # tab_size 0: tabs are not expanded
    if lexer is None:
        return [(code, "")]
    theme = Syntax.get_theme("ansi_dark")
    pieces = [(value, theme.get_style_for_token(kind)) for kind, value in lexer.get_tokens(code)]
    if pieces and pieces[-1][0].endswith("\n") and not code.endswith("\n"):
        pieces[-1] = (pieces[-1][0][:-1], pieces[-1][1])  # the newline pygments adds
    return pieces


def _hook(name: str, record: Any) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    headline, summary, rows, rest = hook_parts(record)
    parts: list[Any] = []
    if headline:
        parts.append(Text(headline, style="bold"))
    if summary:
        parts.append(Text(summary))
    if rows:
        table = Table.grid(padding=(0, 2))
        for key, value in rows:
            table.add_row(Text(key, style="dim"), Text(value))
        parts.append(table)
    if rest:
        parts.append(Text(rest, style="dim"))
    title = "trace prediction" if "trace" in name.lower() else name
    return Panel(Group(*parts), title=Text(title), title_align="left", border_style="magenta")


def _render_patch(view: RunView, console: Any) -> None:
    from rich.text import Text

    if view.patch:
        console.print(Text(f"final patch ({view.submissions} submission(s)):", style="bold"))
        print_code(console, view.patch, "diff")
    elif view.working_tree_diff:
        note = "no patch; the working-tree diff at the end (not submitted):"
        console.print(Text(note, style="bold yellow"))
        print_code(console, view.working_tree_diff, "diff")
    elif view.diff_file:
        console.print(Text(view.diff_note, style="bold yellow"))
        print_code(console, view.diff_file, "text")  # a path to copy: never wrapped
    else:
        console.print(Text("no patch", style="bold yellow"))
