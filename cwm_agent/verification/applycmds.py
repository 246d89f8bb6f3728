"""How SWE-bench's harness applies a patch, in one place for every stage that applies one
(the static stage's scratch tree, the execution stage's warm runtime, evaluate's
container): ``apply_patch``.

The commands are the swebench package's ``GIT_APPLY_CMDS``, in order, the tree put back
at the base between attempts (a failed ``--reject`` leaves part of the patch behind); when
every command fails, the harness's last look: ``git apply --check --reverse`` on the tree
as the chain left it (``Applied.already``: the patch is in the tree anyway, which the
harness grades as applied; the static stage asks whether the base had it already).
``--3way`` needs an index at the base: a tree without one (a working copy with uncommitted
changes) leaves it out (``without_3way``).

The commands are read from the installed package's source rather than imported: importing
``swebench.harness.run_evaluation`` loads docker and its friends (about 3 s here), which a
static check has no use for. Without the package (an optional extra) the commands are the
ones swebench 5 uses, and the record says which list was used.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

MODULE = ("harness", "run_evaluation.py")  # swebench.harness.run_evaluation
# swebench 5.0's list, for when the package is not installed.
KNOWN = (
    "git apply --verbose",
    "git apply --verbose --3way",
    "git apply --verbose --reject",
    "patch --batch --forward --fuzz=5 -p1 -i",
)
HARNESS_RESET = "git checkout -- . ; git clean -fd"  # the harness's, between attempts
REVERSE_CHECK = "git apply --check --reverse"


class Target(Protocol):
    """A tree at the base that a patch is applied to."""

    def attempt(self, command: str) -> tuple[int, str]:
        """``command`` followed by the patch file's path, run in the tree: (exit, output)."""
        ...

    def reset(self) -> None:
        """The tree back at the base, after a failed attempt."""
        ...


@dataclass(frozen=True)
class Applied:
    """How ``apply_patch`` went: ``command`` applied it (None: none did); ``already``: no
    command did, but the tree holds the patch (the reverse check); ``tried``: each
    command's (command, exit code), in order; ``output``: the last command's output."""

    command: str | None
    output: str
    already: bool = False
    tried: tuple[tuple[str, int], ...] = ()

    @property
    def ok(self) -> bool:
        """Applied as the harness accepts it (by a command, or found applied)."""
        return self.command is not None or self.already


def apply_patch(target: Target, commands: Sequence[str] | None = None) -> Applied:
    """The harness's way (module doc); ``commands``: by default ``apply_commands()``'s."""
    commands = apply_commands()[0] if commands is None else commands
    tried: list[tuple[str, int]] = []
    output = ""
    for attempt, command in enumerate(commands):
        if attempt:
            target.reset()
        code, output = target.attempt(command)
        tried.append((command, code))
        if code == 0:
            return Applied(command, output, tried=tuple(tried))
    code, _ = target.attempt(REVERSE_CHECK)
    return Applied(None, output, already=code == 0, tried=tuple(tried))


def without_3way(commands: Sequence[str]) -> tuple[str, ...]:
    """The commands a tree without an index at the base can use."""
    return tuple(command for command in commands if "--3way" not in command)


@lru_cache(maxsize=1)
def apply_commands() -> tuple[tuple[str, ...], str]:
    """(the commands, in order; where they came from)."""
    try:  # the top-level package is found, not imported (its __init__ imports everything)
        spec = importlib.util.find_spec("swebench")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return KNOWN, "built in (swebench 5's list; the swebench package is not installed)"
    origin = Path(list(spec.submodule_search_locations)[0]).joinpath(*MODULE)
    try:
        tree = ast.parse(origin.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return KNOWN, f"built in ({origin} could not be read)"
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "GIT_APPLY_CMDS" for t in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                break
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value), f"swebench ({origin})"
    return KNOWN, f"built in (no GIT_APPLY_CMDS list in {origin})"
