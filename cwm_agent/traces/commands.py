"""Which bash commands run one named test (for trace consultation), and its entry names.

In each `&&`/`;`/`|` part of a command: `pytest ARGS`, `py.test ARGS` or `PYTHON -m pytest
ARGS`, optionally behind `cd DIR`, `VAR=value`, `env`, `time`, `timeout N`, `uv run` or
`poetry run`; ARGS must name one test (a node id, or one file with `-k NAME`).
"""

from __future__ import annotations

import ast
import posixpath
import re
import shlex
from dataclasses import dataclass

_PYTHON = re.compile(r"(?:.*/)?python[0-9.]*$")
_WRAPPERS = {"env", "time", "nice", "command", "exec"}


class NotConsulted(Exception):
    """This command names a test that cannot be consulted (recorded, not an error)."""


@dataclass(frozen=True)
class NamedTest:
    path: str  # the test file as written in the command
    names: tuple[str, ...] = ()  # ("test_f",) or ("TestC", "test_m"); empty with keyword
    keyword: str | None = None  # `-k NAME`, resolved against the file's tests
    cd: str = ""  # directory changes before the command, e.g. "sub" for `cd sub && pytest`
    python: str | None = None  # the interpreter of `PYTHON -m pytest`

    @property
    def node_id(self) -> str:
        return "::".join((self.path, *self.names)) if self.names else self.path


def find_test_target(command: str) -> NamedTest | None:
    """The first test a shell command runs by name (see the module docstring), or None."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:
        return None
    cd, part = "", list[str]()
    for token in [*tokens, ";"]:
        if token and set(token) <= set("&|;()") and token != "&":
            if part and part[0] == "cd" and len(part) > 1:
                cd = part[1] if part[1].startswith("/") else posixpath.join(cd, part[1])
            found = _pytest_target(part, cd)
            if found is not None:
                return found
            part = []
        else:
            part.append(token)
    return None


def _pytest_target(words: list[str], cd: str) -> NamedTest | None:
    while words and ("=" in words[0] and not words[0].startswith("-") or words[0] in _WRAPPERS):
        words = words[1:]
    if words[:1] == ["timeout"]:
        words = words[1:]
        while words and (words[0].startswith("-") or words[0][:1].isdigit()):
            words = words[1:]
    if words[:2] in (["uv", "run"], ["poetry", "run"]):
        words = words[2:]
    python = None
    if words and _PYTHON.match(words[0]) and "-m" in words[1:3]:
        at = words.index("-m")
        if words[at + 1 : at + 2] not in (["pytest"], ["py.test"]):
            return None
        python, args = words[0], words[at + 2 :]
    elif words and posixpath.basename(words[0]) in ("pytest", "py.test"):
        args = words[1:]
    else:
        return None
    for arg in args:
        path, sep, rest = arg.partition("::")
        if sep and path.endswith(".py") and rest:
            return NamedTest(path, tuple(rest.split("::")), cd=cd, python=python)
    keyword = next((b for a, b in zip(args, args[1:], strict=False) if a == "-k"), None)
    keyword = keyword or next((a[2:] for a in args if a.startswith("-k") and len(a) > 2), None)
    files = [a for a in args if a.endswith(".py") and not a.startswith("-")]
    if keyword and keyword.isidentifier() and len(files) == 1:
        return NamedTest(files[0], keyword=keyword, cd=cd, python=python)
    return None


def entry_names(source: str, target: NamedTest) -> tuple[str, ...]:
    """The test's qualified names in `source`; NotConsulted when it cannot be traced alone."""
    tree = ast.parse(source)
    tests = {
        names: node
        for names, node in _test_functions(tree)
        if not target.names or names == target.names
    }
    if target.keyword:
        word = target.keyword.lower()
        exact = {n: f for n, f in tests.items() if n[-1].lower() == word}
        tests = exact or {n: f for n, f in tests.items() if word in n[-1].lower()}
    if len(tests) != 1:
        what = f"-k {target.keyword}" if target.keyword else "::".join(target.names)
        raise NotConsulted(f"{what} does not name exactly one test function of {target.path}")
    ((names, node),) = tests.items()
    if any("[" in name for name in names):
        raise NotConsulted("parametrized test: its arguments are not known")
    if isinstance(node, ast.AsyncFunctionDef):
        raise NotConsulted("async test")
    assert isinstance(node, ast.FunctionDef)
    args = node.args
    params = [*args.posonlyargs, *args.args][1 if len(names) > 1 else 0 :]
    if len(params) > len(args.defaults) or len(args.kwonlyargs) > sum(
        d is not None for d in args.kw_defaults
    ):
        raise NotConsulted("the test takes fixtures")
    return names


def _test_functions(tree: ast.Module) -> list[tuple[tuple[str, ...], ast.AST]]:
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef)
    found: list[tuple[tuple[str, ...], ast.AST]] = []
    for node in tree.body:
        if isinstance(node, kinds):
            found.append(((node.name,), node))
        elif isinstance(node, ast.ClassDef):
            found += [((node.name, n.name), n) for n in node.body if isinstance(n, kinds)]
    return found
