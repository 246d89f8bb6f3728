"""How SWE-bench's harness applies a patch: the swebench package's ``GIT_APPLY_CMDS``.

Read from the installed package's source rather than imported: importing
``swebench.harness.run_evaluation`` loads docker and its friends (about 3 s here), which a
static check has no use for. Without the package (an optional extra) the commands are the
ones swebench 5 uses, and the record says which list was used.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path

MODULE = ("harness", "run_evaluation.py")  # swebench.harness.run_evaluation
# swebench 5.0's list, for when the package is not installed.
KNOWN = (
    "git apply --verbose",
    "git apply --verbose --3way",
    "git apply --verbose --reject",
    "patch --batch --forward --fuzz=5 -p1 -i",
)


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
