"""When two patches, or two test scripts, are the same: the keys the selection groups by.

- Two patches are *the same* when they change the same files at the same places with the
  same added and removed lines, ignoring blank lines, context, trailing whitespace and
  whitespace inside a line that separates nothing (runs of it are one space; next to
  punctuation or an operator, none): so `git diff -U3` and `-U5` of one change, or `a+b`
  vs `a + b`, are one patch. Indentation counts: in Python it decides which block a
  line belongs to (``static._changes`` counts it as a change too).
- Two test scripts are *the same* when their Python syntax trees are, docstrings left out:
  comments, formatting and quoting do not count. A script the harness's Python cannot
  parse is compared by its text with every run of whitespace made one space and blank
  lines dropped (it may still run on the runtime's own Python).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_SEPARATING = re.compile(r"(?<=\W) | (?=\W)")  # a space beside a non-word character


def short_hash(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:12]


# -- patches -------------------------------------------------------------------------------


def normalize_patch(patch: str) -> tuple[object, ...]:
    """The whitespace-insensitive identity of a patch (raises ValueError if unparsable)."""
    try:
        parsed = PatchSet(patch)
    except UnidiffParseError as exc:
        raise ValueError(f"unparsable patch: {exc}") from exc
    files: list[object] = []
    for patched in sorted(parsed, key=lambda f: f.path):
        if patched.is_binary_file:
            files.append((patched.path, "binary", str(patched)))
            continue
        hunks = []
        for hunk in patched:
            lines = list(hunk)
            lead = next((i for i, line in enumerate(lines) if line.line_type in "+-"), 0)
            changes = tuple(
                (line.line_type, normalize_line(line.value))
                for line in lines
                if line.line_type in "+-" and line.value.strip()
            )
            if changes:
                hunks.append((hunk.source_start + lead, changes))
        kind = "added" if patched.is_added_file else "removed" if patched.is_removed_file else ""
        files.append((patched.path, kind, tuple(hunks)))
    return tuple(files)


def normalize_line(text: str) -> str:
    """A changed line as its identity sees it: the indentation as it is, then the tokens
    with one space between two words and none next to anything else."""
    body = text.rstrip()
    indent = body[: len(body) - len(body.lstrip())]
    return indent + _SEPARATING.sub("", " ".join(body.split()))


def patch_hash(patch: str) -> str | None:
    try:
        return short_hash(normalize_patch(patch))
    except ValueError:
        return None


# -- test scripts --------------------------------------------------------------------------


def normalize_test(code: str) -> tuple[str, str]:
    """(how it was normalized: "ast" or "text", the normalized form) of a test script."""
    try:
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if isinstance(node, _DOCUMENTED):
                node.body = _without_docstring(node.body)
        return "ast", ast.unparse(tree)  # unparse drops comments and fixes the formatting
    except (SyntaxError, ValueError, RecursionError):  # ValueError: a NUL byte in the source
        lines = (" ".join(line.split()) for line in code.splitlines())
        return "text", "\n".join(line for line in lines if line)


def script_key(code: str) -> tuple[str, str]:
    """(the normalized script's hash, "ast" or "text")."""
    how, normalized = normalize_test(code)
    return short_hash([how, normalized]), how


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return body[1:] or [ast.Pass()]  # a def whose body was only its docstring
    return body
