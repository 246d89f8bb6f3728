"""Which existing test files a change impacts: a static map of imports, most specific first.

Chosen over coverage contexts: it needs nothing in the image (no coverage package, no
run of the whole suite on the base to record them: the very cost this stage avoids), it
works for runners that are not pytest (django's runtests.py, sympy's bin/test), and it
is built once per instance from the base tree in about a second.

A test file's score for a changed module M (``pkg.sub.mod``):

- 4 (direct): it imports M, a submodule of M, or names M (``from pkg.sub import mod``);
- 3 (re-exported): it takes a name from a package above M whose ``__init__`` gets that
  name from M (``from pkg import Thing``; followed through packages, a few levels);
- 2 (package): it imports a package above M whose ``__init__`` imports from M
  (``from django.contrib import admin`` for ``django/contrib/admin/options.py``);
- 1 (near): it sits beside M or in a ``tests`` folder there; counted only when no file
  scores more (a change to a template or a data file).

Files that import M (scores 3 and 4) come first, and among them the ones named after M
(``tests/queries`` for ``db/models/query.py``: a name says what a file tests better than
one import does); then the score, the number of changed modules hit, the words of M's
package in the path, the path. Only the first ``cap`` run: each costs time on every
candidate.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .pytree import Imported, PyTree
from .testinfra import is_test_module

DIRECT, REEXPORTED, PACKAGE, NEAR = 4, 3, 2, 1
_DEPTH = 4  # how far a re-export is followed through packages
_GENERIC = {"tests", "test", "testing", "src", "lib", "init", "__init__", "py", "utils"}


@dataclass(frozen=True)
class Impact:
    files: tuple[str, ...]  # the test files to run, most specific first
    modules: tuple[str, ...]  # the changed modules (non-test Python files)
    scored: int = 0  # test files with any score, before the cap
    note: str = ""  # why the choice is weak or empty


@dataclass
class _Exports:
    """What packages' __init__ files take from where (resolved lazily, cached)."""

    tree: PyTree
    cache: dict[str, dict[str, str]] = field(default_factory=dict)

    def of(self, package: str, depth: int = 0) -> dict[str, str]:
        """name -> the module it finally comes from ("*" keys: a star import's source)."""
        if package in self.cache:
            return self.cache[package]
        self.cache[package] = {}
        init = self._init_path(package)
        found: dict[str, str] = {}
        for imported in self.tree.imports(init) if init else []:
            for name in imported.names:
                source = imported.module
                if name == "*":
                    found[f"*{source}"] = source
                    continue
                as_module = f"{source}.{name}"
                if self._init_path(as_module) or self._file(as_module):
                    found[name] = as_module
                elif depth < _DEPTH and self._init_path(source) and source != package:
                    found[name] = self.of(source, depth + 1).get(name, source)
                else:
                    found[name] = source
        self.cache[package] = found
        return found

    def draws_on(self, package: str, module: str) -> bool:
        return any(_within(source, module) for source in self.of(package).values())

    def _init_path(self, package: str) -> str | None:
        return self.tree.modules.get(package + ".__init__")

    def _file(self, module: str) -> str | None:
        return self.tree.modules.get(module)


def impacted(tree: PyTree, changed: Sequence[str], cap: int) -> Impact:
    """The test files that exercise the changed files (paths in ``tree``), ranked."""
    modules = {}
    for path in changed:
        module = tree.module_of(path)
        if module and not is_test_module(path):
            modules[module] = path
    exports = _Exports(tree)
    tests = tree.test_files()
    tree.texts(tests)  # one read for all of them
    scores: dict[str, tuple[int, int, int, int]] = {}
    for test in tests:
        best, hits = 0, 0
        for module in modules:
            score = _score(tree.imports(test), module, exports)
            if score > best:
                best, hits = score, 1
            elif score == best and score:
                hits += 1
        if not best and any(_near(test, p) for p in changed):
            best = NEAR
        if best:
            leaf, shared = max((_overlap(test, m) for m in modules), default=(0, 0))
            scores[test] = (best, hits, leaf, shared)
    strong = {t: s for t, s in scores.items() if s[0] > NEAR}
    chosen = strong or scores
    ranked = sorted(chosen, key=lambda t: _rank(chosen[t], t))
    note = _note(modules, strong, scores)
    return Impact(tuple(ranked[:cap]), tuple(modules), len(chosen), note)


def _rank(score: tuple[int, int, int, int], test: str) -> tuple[object, ...]:
    """Importing M (directly or by a re-exported name) first; among those, the files named
    after M first (a name says what a file tests better than one import does)."""
    best, hits, leaf, shared = score
    return (-(best >= REEXPORTED), -leaf, -best, -hits, -shared, test)


def _score(imports: list[Imported], module: str, exports: _Exports) -> int:
    best = 0
    for imported in imports:
        source = imported.module
        if _within(source, module) or any(f"{source}.{n}" == module for n in imported.names):
            return DIRECT
        if not _within(module, source):
            continue  # unrelated to M
        for name in imported.names:
            target = exports.of(source).get(name)
            if target is not None and _within(target, module):
                best = max(best, REEXPORTED)
                continue
            sub = f"{source}.{name}"
            if _within(module, sub) and exports.draws_on(sub, module):
                best = max(best, PACKAGE)
        if not imported.names and exports.draws_on(source, module):
            best = max(best, PACKAGE)
        if "*" in imported.names and exports.draws_on(source, module):
            best = max(best, PACKAGE)
    return best


def _within(module: str, ancestor: str) -> bool:
    """``module`` is ``ancestor`` or inside it."""
    return module == ancestor or module.startswith(ancestor + ".")


def _near(test: str, changed: str) -> bool:
    folder = posixpath.dirname(changed)
    here = posixpath.dirname(test)
    return here in (folder, posixpath.join(folder, "tests"), posixpath.join(folder, "test"))


def _words(parts: Sequence[str]) -> set[str]:
    words = {w for part in parts for w in part.replace("-", "_").split("_") if len(w) >= 3}
    return words - _GENERIC


def _overlap(test: str, module: str) -> tuple[int, int]:
    """Whether the test's path has M's own name in it, and how many words of M's package
    it shares (a common 4-letter stem counts: ``query`` and ``queries``); the top package
    is in every name and does not count."""
    parts = module.split(".")[1:] or module.split(".")
    theirs = _words(test.removesuffix(".py").split("/"))

    def shared(word: str) -> bool:
        return any(word == w or word[:4] == w[:4] and min(len(word), len(w)) >= 4 for w in theirs)

    leaf = any(shared(w) for w in _words(parts[-1:]))
    return int(leaf), sum(shared(w) for w in _words(parts[:-1]))


def _note(modules: Mapping[str, str], strong: Mapping[str, Any], scores: Mapping[str, Any]) -> str:
    if not modules:
        return "the change touches no importable Python module: tests beside it only"
    if not scores:
        return "no test file imports the changed modules"
    if not strong:
        return "no test file imports the changed modules: the tests beside them instead"
    return ""
