"""The transcript in a terminal (rich): header, issue, each step, the final patch.

Untrusted text (everything the model or its commands wrote) goes through ``Text`` or
``Syntax`` objects, never rich markup, and control characters are made visible.
"""

from __future__ import annotations

from typing import Any

from cwm_agent.progress import printable
from cwm_agent.show.view import RunView, StepView, edit_diff, hook_parts

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
        header.add_row(label, Text(printable(value)))
    console.print(Panel(header, title=Text(f"cwm-agent run {view.run_id}"), expand=False))
    issue = folded(printable(view.issue), ISSUE_LINES, full=full)
    console.print(Panel(Text(issue), title="issue", title_align="left", border_style="blue"))
    for step in view.steps:
        console.print(Rule(_step_title(step), align="left", style="cyan"))
        _render_step(step, console, full)
    console.print(Rule("result", align="left", style="cyan"))
    style = "green" if view.exit_code == 0 else "red"
    console.print(Text(f"{view.status} (exit {view.exit_code}): ", style=f"bold {style}"), end="")
    console.print(Text(printable(view.reason)))
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
        text = folded(printable(step.reasoning), REASONING_LINES, full=full)
        console.print(Padding(Text(text, style="dim italic"), (0, 0, 0, 2), expand=False))
    if step.tool:
        console.print(Padding(_action(step, full), (0, 0, 0, 2), expand=False))
    elif step.text:
        console.print(Padding(Text(printable(step.text)), (0, 0, 0, 2), expand=False))
    if step.format_error:
        problem = Text("FormatError: " + printable(step.format_error), style="yellow")
        console.print(Padding(problem, (0, 0, 0, 2), expand=False))
    if step.observation is not None:
        output = str(step.observation.get("output", ""))
        body = folded(printable(output), OBSERVATION_HEAD, OBSERVATION_TAIL, full)
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


def _action(step: StepView, full: bool) -> Any:
    from rich.console import Group
    from rich.syntax import Syntax
    from rich.text import Text

    args = step.args
    label = Text(f"{step.tool}", style="bold magenta")
    if step.tool == "bash":
        return Group(label, _syntax(args.get("command", ""), "bash"))
    path = Text(printable(args.get("path", "")) or "(working-tree diff)", style="bold")
    label.append(" ").append(path)
    if step.tool == "edit":
        return Group(label, _syntax(edit_diff(args), "diff"))
    if step.tool == "create":
        content = folded(args.get("content", ""), 30, full=full)
        lexer = Syntax.guess_lexer(args.get("path", ""), content)
        return Group(label, _syntax(content, lexer))
    return label


def _syntax(code: str, lexer: str) -> Any:
    from rich.syntax import Syntax

    return Syntax(
        printable(code), lexer, theme="ansi_dark", background_color="default", word_wrap=True
    )


def _hook(name: str, record: Any) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    headline, summary, rows, rest = hook_parts(record)
    parts: list[Any] = []
    if headline:
        parts.append(Text(printable(headline), style="bold"))
    if summary:
        parts.append(Text(printable(summary)))
    if rows:
        table = Table.grid(padding=(0, 2))
        for key, value in rows:
            table.add_row(Text(printable(key), style="dim"), Text(printable(value)))
        parts.append(table)
    if rest:
        parts.append(Text(printable(rest), style="dim"))
    title = "trace prediction" if "trace" in name.lower() else name
    return Panel(
        Group(*parts), title=Text(printable(title)), title_align="left", border_style="magenta"
    )


def _render_patch(view: RunView, console: Any) -> None:
    from rich.text import Text

    if view.patch:
        console.print(Text(f"final patch ({view.submissions} submission(s)):", style="bold"))
        console.print(_syntax(view.patch, "diff"))
    elif view.working_tree_diff:
        note = "no patch; the working-tree diff at the end (not submitted):"
        console.print(Text(note, style="bold yellow"))
        console.print(_syntax(view.working_tree_diff, "diff"))
    else:
        console.print(Text("no patch", style="bold yellow"))
