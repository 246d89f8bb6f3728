"""CWM's own prompts, read from the user's checkout of facebookresearch/cwm.

Nothing of CWM's text ships with cwm-agent: ``cwm-agent prompts import-cwm PATH`` reads the
prompt constants from the checkout with ``ast`` (importing the modules would need CWM's
whole RL stack, GPU packages included) and turns them into the templates of a prompt set,
composed the way CWM's SWE environments compose them in their ``start()``:

- system: the think-tag system prompt (``get_cwm_sys_prompt(think=True,
  use_think_tag=True, environment=...)``: its header with the default description, then
  ``# Environment`` and ``SYSTEM_UBUNTU`` filled with the timeout as "N-second", the
  context size and the turn limit);
- user: ``USER_ISSUE_SOLVING`` with the issue and the repository root;
- repro_user: ``USER_TESTGEN`` of the test-generation environment, likewise;
- submission: ``SUBMISSION_FEEDBACK_PROMPT`` around the accepted patch;
- repro_submission: the test-generation environment's own ``SUBMISSION_FEEDBACK_PROMPT``
  around the accepted test file;
- format_error: the error's class name and message, as CWM's loop writes it.

If CWM's code has changed shape (a constant gone, a placeholder we do not know), the
import stops and says what it did not find, rather than guess.
"""

from __future__ import annotations

import ast
import re
import string
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import UsageError

SWE_ENV = "cwm/rl/envs/envs/swerl_tool.py"
TESTGEN_ENV = "cwm/rl/envs/envs/swerl_testgen_tool.py"
SYS_PROMPTS = "cwm/rl/envs/prompts.py"

# CWM's placeholders -> the template expressions that fill them from what cwm-agent
# passes to each template (facts of CWM's start(): the timeout is formatted "120-second").
PLACEHOLDERS = {
    "session_timeout": "{{ timeout }}-second",
    "context_size": "{{ max_context }}",
    "max_turns": "{{ max_turns }}",
    "issue": "{{ issue }}",
    "repo_root": "{{ root }}",
    "pred_patch": "{{ patch }}",
    "test": "{{ test }}",
}
FORMAT_ERROR = "FormatError: {{ problem }}"  # CWM: f"{type(e).__name__}: {e}"
_BEFORE_PERCENT = re.compile(r"(?<=\{)(?=%)")  # between "{" and "%": where "{%" is cut


def import_templates(checkout: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """(template name -> Jinja2 source, manifest facts) from a CWM checkout."""
    checkout = checkout.expanduser().resolve()
    env = read_constants(checkout, SWE_ENV)
    testgen = read_constants(checkout, TESTGEN_ENV)
    sys_path = checkout / SYS_PROMPTS
    sys_tree = _parse(checkout, SYS_PROMPTS)
    sys_consts = _constants(sys_tree)
    header = _need(sys_consts, "CWM_THINKTAG_SYS_PROMPT", sys_path)
    env_prompt = _need(sys_consts, "ENV_PROMPT", sys_path)
    description = _default_argument(sys_tree, "get_cwm_sys_prompt", "description", sys_path)
    try:
        head = header.format(description=description).strip()
    except (KeyError, IndexError, ValueError) as exc:
        problem = f"CWM_THINKTAG_SYS_PROMPT has an unknown placeholder {exc}"
        raise _changed(sys_path, problem) from None
    environment = to_jinja(_need(env, "SYSTEM_UBUNTU", checkout / SWE_ENV).strip(), PLACEHOLDERS)
    env_part = to_jinja(env_prompt, {"environment": environment}, sys_path).strip()
    templates = {
        "system": f"{_literal(head)}\n\n{env_part}",
        "user": to_jinja(_need(env, "USER_ISSUE_SOLVING", checkout / SWE_ENV), PLACEHOLDERS),
        "repro_user": to_jinja(
            _need(testgen, "USER_TESTGEN", checkout / TESTGEN_ENV), PLACEHOLDERS
        ),
        "submission": to_jinja(
            _need(env, "SUBMISSION_FEEDBACK_PROMPT", checkout / SWE_ENV), PLACEHOLDERS
        ),
        "repro_submission": to_jinja(
            _need(testgen, "SUBMISSION_FEEDBACK_PROMPT", checkout / TESTGEN_ENV), PLACEHOLDERS
        ),
        "format_error": FORMAT_ERROR,
    }
    facts = {"source": str(checkout), "commit": _commit(checkout), "tool_formats": ["cwm"]}
    return templates, facts


def read_constants(checkout: Path, relative: str) -> dict[str, str]:
    return _constants(_parse(checkout, relative))


def _parse(checkout: Path, relative: str) -> ast.Module:
    path = checkout / relative
    try:
        return ast.parse(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError:
        raise UsageError(
            f"{path} does not exist: {checkout} is not a checkout of facebookresearch/cwm",
            hint="git clone https://github.com/facebookresearch/cwm and pass its folder",
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _changed(path, f"cannot be read as Python ({exc})") from None


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = <string expression>`` assignments, evaluated without running code."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            value = _string(node.value)
            if isinstance(target, ast.Name) and value is not None:
                found[target.id] = value
    return found


def _string(node: ast.expr) -> str | None:
    """The value of a string literal, ``"...".strip()`` (and l/rstrip) or a sum of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _string(node.left), _string(node.right)
        return None if left is None or right is None else left + right
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("strip", "lstrip", "rstrip")
        and not node.args
        and not node.keywords
    ):
        inner = _string(node.func.value)
        return None if inner is None else getattr(inner, node.func.attr)()
    return None


def _default_argument(tree: ast.Module, function: str, argument: str, path: Path) -> str:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            # defaults belong to the last positional arguments; keyword-only ones pair up
            named = [a.arg for a in positional][len(positional) - len(args.defaults) :]
            defaults = dict(zip(named, args.defaults, strict=True))
            defaults.update(
                (a.arg, d)
                for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                if d is not None
            )
            value = _string(defaults[argument]) if argument in defaults else None
            if value is not None:
                return value
    raise _changed(path, f"no string default for {function}({argument}=...)")


def to_jinja(text: str, fields: Mapping[str, str], path: Path | None = None) -> str:
    """A ``str.format`` template as Jinja2 source: literal text kept exactly, each
    ``{name}`` replaced by ``fields[name]`` (Jinja2 source itself)."""
    parts, pending = [], ""  # the literal text since the last field, as one piece
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise _changed(path, f"a prompt is not a valid format string ({exc})") from None
    for literal, name, spec, conversion in parsed:
        pending += literal  # an escaped {{ or }} splits the literal: joined again here
        if name is None:
            continue
        if name not in fields or spec or conversion:
            raise _changed(path, f"a prompt has the placeholder {{{name}}}, which is not known")
        parts += [_literal(pending), fields[name]]
        pending = ""
    return "".join([*parts, _literal(pending)])


def _literal(text: str) -> str:
    """``text`` as Jinja2 source that renders to exactly ``text``, whatever it holds.

    Text without ``{`` or CR is its own source. Otherwise each run of it between CRs goes
    in ``{% raw %}`` blocks, cut between every ``{`` and a ``%`` after it, so that no
    ``{% endraw %}`` (in any spelling) of the text can close a block early; a CR is written
    as an expression, since Jinja turns one in template text into a newline. Every piece
    is closed where it ends, so nothing joins with what follows into live syntax.
    """
    if "{" not in text and "\r" not in text:
        return text
    out = []
    for number, run in enumerate(text.split("\r")):
        if number:
            out.append('{{ "\\r" }}')
        for piece in _BEFORE_PERCENT.split(run):
            if "{" in piece:
                out.append("{% raw %}" + piece + "{% endraw %}")
            else:
                out.append(piece)  # no "{": plain text, and it cannot start a tag
    return "".join(out)


def _need(constants: Mapping[str, str], name: str, path: Path) -> str:
    if name not in constants:
        raise _changed(path, f"the string constant {name} is not there")
    return constants[name]


def _changed(path: Path | None, problem: str) -> UsageError:
    where = f"{path}: " if path else ""
    return UsageError(
        f"cannot import CWM's prompts: {where}{problem}",
        hint="use a checkout of facebookresearch/cwm at its release (7930e02), or report "
        "the change to cwm-agent",
    )


def _commit(checkout: Path) -> str | None:
    """The checkout's commit, when it is a git repository of its own."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = proc.stdout.split()
    if proc.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != checkout:
        return None  # not a repository, or a folder inside another one
    return lines[1]
