"""The Python side of a base tree, read from git on this machine: which file is which
module, which files are tests, and what each test file and package imports.

Read with ``git cat-file --batch`` from the runtime's base repository (``Runtime.base_dir``
at ``Runtime.base``): no runtime round trip, no Python needed in the image. Imports come
from the syntax of the ``import`` statements alone (faster, and a file in Python 2 syntax
still yields them).
"""

from __future__ import annotations

import ast
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field

from cwm_agent.runtimes.gitcmd import run_git
from cwm_agent.verification.testinfra import is_test_module


@dataclass(frozen=True)
class Imported:
    """One imported name: ``module`` as resolved; ``names`` taken from it (``from``)."""

    module: str
    names: tuple[str, ...] = ()


@dataclass
class PyTree:
    """The .py files of one commit, and their modules."""

    paths: list[str]  # every path in the tree
    repo: str
    commit: str
    packages: set[str] = field(default_factory=set)  # folders with an __init__.py
    modules: dict[str, str] = field(default_factory=dict)  # module (pkg.__init__) -> path
    _text: dict[str, str] = field(default_factory=dict)
    _imports: dict[str, list[Imported]] = field(default_factory=dict)

    @classmethod
    def read(cls, repo: str, commit: str) -> PyTree:
        listed = run_git(repo, "ls-tree", "-r", "-z", "--name-only", commit)
        paths = [p for p in listed.decode("utf-8", "surrogateescape").split("\0") if p]
        tree = cls(paths, repo, commit)
        tree.packages = {posixpath.dirname(p) for p in paths if p.endswith("/__init__.py")}
        for path in paths:
            module = tree.module_of(path)
            if module:
                init = path.endswith("/__init__.py")
                tree.modules[f"{module}.__init__" if init else module] = path
        return tree

    def texts(self, paths: Iterable[str]) -> dict[str, str]:
        """The files' text (read once, in one git process)."""
        wanted = [p for p in dict.fromkeys(paths) if p not in self._text]
        if wanted:
            batch = "".join(f"{self.commit}:{p}\n" for p in wanted).encode(
                "utf-8", "surrogateescape"
            )
            out = run_git(self.repo, "cat-file", "--batch", input=batch)
            for path, data in zip(wanted, _split_batch(out), strict=True):
                self._text[path] = data.decode("utf-8", "replace")
        return {p: self._text.get(p, "") for p in paths}

    def module_of(self, path: str) -> str | None:
        """``lib/pkg/sub/mod.py`` -> ``pkg.sub.mod`` (the packages above it, from the first
        folder that is not one); None for a file that is not Python."""
        if not path.endswith(".py"):
            return None
        folder, name = posixpath.split(path[: -len(".py")])
        parts = [] if name == "__init__" else [name]
        while folder and folder in self.packages:
            folder, name = posixpath.split(folder)
            parts.insert(0, name)
        return ".".join(parts) or None

    def test_files(self) -> list[str]:
        return [p for p in self.paths if is_test_module(p)]

    def imports(self, path: str) -> list[Imported]:
        """What the file imports, absolute (parsed once)."""
        if path not in self._imports:
            self._imports[path] = self._parse_imports(path)
        return self._imports[path]

    def _parse_imports(self, path: str) -> list[Imported]:
        package = self._package_of(path)
        found: list[Imported] = []
        for node in _import_nodes(self.texts([path])[path]):
            if isinstance(node, ast.Import):
                found += [Imported(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = _absolute(node.module or "", node.level, package)
                if module:
                    found.append(Imported(module, tuple(a.name for a in node.names)))
        return found

    def _package_of(self, path: str) -> str:
        module = self.module_of(path) or ""
        if path.endswith("/__init__.py"):
            return module
        return module.rpartition(".")[0]


def _absolute(module: str, level: int, package: str) -> str:
    if level == 0:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return ""
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _import_nodes(text: str) -> list[ast.stmt]:
    """The import statements of a file, parsed alone: a whole large file takes 10x longer
    to parse, and one in Python 2 would not parse at all."""
    statements: list[str] = []
    lines = text.splitlines()
    at = 0
    while at < len(lines):
        line = lines[at].strip()
        at += 1
        if not line.startswith(("import ", "from ")):
            continue
        while (line.count("(") > line.count(")") or line.endswith("\\")) and at < len(lines):
            line = line.rstrip("\\") + " " + lines[at].strip()
            at += 1
        statements.append(line.split("#", 1)[0])
    try:
        return ast.parse("\n".join(statements)).body
    except (SyntaxError, ValueError):
        pass
    nodes: list[ast.stmt] = []
    for statement in statements:  # one bad line (a docstring's) costs only itself
        try:
            nodes += ast.parse(statement).body
        except (SyntaxError, ValueError):
            continue
    return nodes


def _split_batch(out: bytes) -> Iterable[bytes]:
    """The contents out of ``git cat-file --batch`` output (b"" for a missing object)."""
    at = 0
    while at < len(out):
        end = out.index(b"\n", at)
        header = out[at:end].split()
        at = end + 1
        if len(header) < 3 or header[-1] == b"missing":
            yield b""
            continue
        size = int(header[2])
        yield out[at : at + size]
        at += size + 1
