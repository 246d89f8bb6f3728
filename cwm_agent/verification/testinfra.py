"""What in a patch is test infrastructure, and the patch without it.

A candidate must never take part in its own verification: a ``conftest.py`` that marks
every report "passed", an edited test, a pytest setting that deselects the failing test
would all make a wrong patch look right. So the changes below are split off; what is left
(``Split.code``) is what the later stages judge and run, and ``Split.stripped`` names what
was left out. What counts as test infrastructure, by path:

- ``conftest.py`` anywhere; files named ``test_*.py``, ``*_test.py``, ``tests.py``;
- any file under a folder named ``tests``, ``test`` or ``testing`` (the test suites of
  django, scikit-learn, astropy, xarray, seaborn, matplotlib, pytest, and the test
  frameworks of django and sympy: code a test run depends on). No gold patch of SWE-bench
  Lite or Verified touches such a path;
- ``pytest.ini``, ``tox.ini``, ``noxfile.py``, ``.coveragerc`` whole; in ``setup.cfg`` and
  ``pyproject.toml`` only the hunks inside test-runner sections (``[tool:pytest]``,
  ``[tool.pytest.ini_options]``, tox, coverage). The section is read from the base file
  when there is one; without it a hunk whose section cannot be told is split off (a change
  we cannot place must not be able to steer the tests).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from unidiff import Hunk, PatchedFile, PatchSet

TEST_DIRS = frozenset({"tests", "test", "testing"})
# A test module by its name: what pytest (test_*.py, *_test.py) and django (an app's
# tests.py) collect. Not any name starting "test": xarray/testing.py is library code.
TEST_MODULE = re.compile(r"(test_.*|.*_test|tests)\.py")
TEST_CONFIGS = frozenset({"pytest.ini", "tox.ini", "noxfile.py", ".coveragerc"})
SECTIONED = frozenset({"setup.cfg", "pyproject.toml"})
_TEST_SECTION = re.compile(
    r"\[\s*(tool[:.]pytest|pytest|tool[:.]tox|tox|testenv|coverage|tool\.coverage)"
)
_SECTION = re.compile(r"\s*\[[^\]]+\]\s*$")
UNKNOWN_SECTION = "(a section that cannot be told without the base file)"

ReadBase = Callable[[str], "str | None"]  # a path's text at the base, None when unknown


@dataclass(frozen=True)
class Split:
    """A patch cut in two: the code change, and what of it was test infrastructure."""

    code: str  # the patch without test infrastructure, file sections byte for byte
    stripped: tuple[str, ...] = ()  # "tests/test_x.py", "setup.cfg [tool:pytest]", ...
    code_files: tuple[str, ...] = ()


def is_test_module(path: str) -> bool:
    """A test file to run (``TEST_MODULE``); the impacted tests are chosen among these."""
    return bool(TEST_MODULE.fullmatch(path.rpartition("/")[2]))


def is_test_path(path: str) -> bool:
    """Test infrastructure: a test module, a conftest.py, a test-runner file, anything in
    a test folder."""
    parts = path.strip("/").split("/")
    name = parts[-1]
    return (
        is_test_module(name)
        or name == "conftest.py"
        or name in TEST_CONFIGS
        or any(part in TEST_DIRS for part in parts[:-1])
    )


def file_chunks(patch: str, parsed: PatchSet) -> list[str]:
    """Each file's section of ``patch`` as written (binary data included), in order.

    unidiff drops a ``GIT binary patch`` body when it prints a file back, so sections are
    cut from the text at its ``diff --git`` lines; a patch without them (plain unified
    diff: no binary data) is printed back by unidiff.
    """
    starts = [m.start() for m in re.finditer(r"^diff --git ", patch, re.MULTILINE)]
    if len(starts) == len(parsed) and starts:
        ends = [*starts[1:], len(patch)]
        return [patch[a:b] for a, b in zip(starts, ends, strict=True)]
    return [str(patched) for patched in parsed]


def split_patch(patch: str, parsed: PatchSet, read_base: ReadBase | None = None) -> Split:
    """``patch`` (already parsed as ``parsed``) without its test infrastructure."""
    kept: list[str] = []
    stripped: list[str] = []
    code_files: list[str] = []
    for chunk, patched in zip(file_chunks(patch, parsed), parsed, strict=True):
        path = patched.path
        source = patched.source_file  # a file renamed out of a test folder is a test file too
        old = source[2:] if source.startswith("a/") else path
        if is_test_path(path) or is_test_path(old):
            stripped.append(path)
        elif path.rsplit("/", 1)[-1] in SECTIONED and not patched.is_binary_file:
            section_kept, names = _split_sections(patched, read_base)
            stripped.extend(f"{path} {name}" for name in names)
            if section_kept is not None:
                kept.append(section_kept)
                code_files.append(path)
        else:
            kept.append(chunk)
            code_files.append(path)
    return Split("".join(kept), tuple(stripped), tuple(code_files))


def _split_sections(
    patched: PatchedFile, read_base: ReadBase | None
) -> tuple[str | None, list[str]]:
    """The file's section without test-runner hunks (None: nothing left), and their names."""
    base = read_base(patched.path) if read_base is not None else None
    base_lines = base.splitlines() if base is not None else None
    names: list[str] = []
    keep = []
    for hunk in patched:
        sections = _sections_changed(hunk, base_lines)
        tested = sorted(
            s or UNKNOWN_SECTION for s in sections if s is None or _TEST_SECTION.match(s)
        )
        if tested:
            names.extend(n for n in tested if n not in names)
        else:
            keep.append(hunk)
    if not names:
        return str(patched), []
    if not keep:
        return None, names
    trimmed = PatchedFile(
        patched.patch_info, patched.source_file, patched.target_file,
        patched.source_timestamp, patched.target_timestamp,
    )  # fmt: skip
    trimmed.extend(keep)
    return str(trimmed), names


def _sections_changed(hunk: Hunk, base_lines: list[str] | None) -> set[str | None]:
    """The ``[section]`` of every changed line of a hunk (None: cannot be told)."""
    current = _section_above(base_lines, hunk.source_start) if base_lines is not None else None
    found: set[str | None] = set()
    for line in hunk:
        if _SECTION.match(line.value):
            current = line.value.strip()
        if line.line_type in "+-":
            found.add(current)
    return found


def _section_above(base_lines: list[str], start: int) -> str:
    for text in reversed(base_lines[: max(start - 1, 0)]):
        if _SECTION.match(text):
            return text.strip()
    return "(top of the file)"
