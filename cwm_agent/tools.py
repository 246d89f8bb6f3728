"""What the tools do: bash, edit and create through ``execute``; submit through ``submit_patch``.

Problems the model caused come back as ``Observation(ok=False)`` with a message that
says what to do; only runtime failures (``RuntimeFailure``) and harness bugs raise.

Conventions:
- bash output is cut in the middle beyond ``max_output`` characters; a non-zero exit
  adds a last line ``[exit code: N]``; no output at all reads ``(no output)``.
- edit matches whole lines exactly (indentation included; only a line's ``\\r`` is
  ignored), keeps the file's line endings (CRLF stays CRLF) and its final-newline
  state.
- create writes the content as given plus a final newline when it lacks one (the
  CWM body format cannot express a final newline; POSIX text files want one).
- Paths are handed to the runtime as written: relative ones are relative to the
  repository root, not to the shell's current directory.
"""

from __future__ import annotations

import posixpath
import shlex

from unidiff import PatchSet

from .errors import PatchError, ToolError
from .patches import BaseRepoError, validate_patch
from .protocol import truncate_middle
from .types import Action, Observation, Runtime

SNIPPET_CONTEXT = 8  # lines shown before and after an edited region
MAX_LISTED = 10  # line numbers listed in an error before "..."


def execute(action: Action, runtime: Runtime, *, timeout: float, max_output: int) -> Observation:
    """Run a bash, edit or create action (submit goes through ``submit_patch``)."""
    args = action.args
    try:
        if action.tool == "bash":
            return run_bash(
                runtime, args.get("command", ""), timeout=timeout, max_output=max_output
            )
        if action.tool == "edit":
            output = edit_file(
                runtime, args.get("path", ""), args.get("search", ""), args.get("replace", "")
            )
        elif action.tool == "create":
            output = create_file(runtime, args.get("path", ""), args.get("content", ""))
        else:
            raise ValueError(f"execute() cannot run {action.tool!r}; submit uses submit_patch()")
    except ToolError as exc:
        return Observation(output=str(exc), ok=False)
    return Observation(output=output)


# ----------------------------------------------------------------------------------- bash


def run_bash(runtime: Runtime, command: str, *, timeout: float, max_output: int) -> Observation:
    result = runtime.run(command, timeout)
    lines = [truncate_middle(result.output, max_output).rstrip("\n") or "(no output)"]
    if result.timed_out:
        lines.append(
            f"[command killed after {timeout:g} s: it did not finish within the time limit. "
            "The shell session was restarted in the repository root; earlier cd and export "
            "settings are gone. Run long jobs with a smaller input or in the background.]"
        )
    elif result.session_restarted:
        lines.append(
            "[the shell session ended and was restarted in the repository root; "
            "earlier cd and export settings are gone]"
        )
    if not result.timed_out and result.exit_code not in (0, None):
        lines.append(f"[exit code: {result.exit_code}]")
    return Observation(
        output="\n".join(lines),
        ok=result.exit_code == 0 and not result.timed_out,
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        duration=result.duration,
    )


# ----------------------------------------------------------------------------------- edit


def edit_file(runtime: Runtime, path: str, search: str, replace: str) -> str:
    """Replace the one run of whole lines equal to ``search``; return the success text."""
    path = path.strip()
    lines = _split_lines(_read_text(runtime, path))
    keys = [_key(line) for line in lines]
    wanted = _as_lines(search)
    if not any(line.strip() for line in wanted):
        raise ToolError(
            f"No change was made: the search text is empty. Put the exact lines of {path} "
            "to replace between '<<<<<<< SEARCH' and '======='."
        )
    found = _find(keys, wanted)
    if not found:
        raise ToolError(_not_found(path, keys, wanted))
    if len(found) > 1:
        raise ToolError(
            f"No change was made: the search text occurs {len(found)} times in {path} "
            f"(at lines {_numbers(found)}). Add neighbouring lines to the search text so that "
            "it matches exactly once."
        )
    at = found[0]
    eol = "\r\n" if lines[at].endswith("\r\n") else "\n"
    new_lines = [line + eol for line in _as_lines(replace)]
    text = "".join(lines[:at] + new_lines + lines[at + len(wanted) :])
    if lines[-1] and not lines[-1].endswith("\n") and text.endswith("\n"):
        text = text[: -len("\r\n" if text.endswith("\r\n") else "\n")]  # keep "no final newline"
    _write(runtime, path, text)
    span = f"lines {at + 1}-{at + len(wanted)}" if len(wanted) > 1 else f"line {at + 1}"
    snippet = _numbered(
        _split_lines(text), at - SNIPPET_CONTEXT, at + len(new_lines) + SNIPPET_CONTEXT
    )
    return (
        f"Edited {path}: replaced {span} with {len(new_lines)} "
        f"line{'s' if len(new_lines) != 1 else ''}. The region now reads:\n{snippet}"
    )


def _not_found(path: str, keys: list[str], wanted: list[str]) -> str:
    message = f"No change was made: the search text was not found in {path}."
    loose = _find([k.strip() for k in keys], [w.strip() for w in wanted])
    if loose:
        return (
            f"{message} It matches at line {_numbers(loose)} only when indentation and "
            "surrounding whitespace are ignored: copy those lines exactly, including their "
            f"indentation (see `cat -n {shlex.quote(path)}`)."
        )
    first = next(w.strip() for w in wanted if w.strip())
    hits = [i for i, key in enumerate(keys) if key.strip() == first]
    if hits:
        return (
            f"{message} Its first line appears at line {_numbers(hits)}, but the lines "
            "after it differ; view the file and copy the lines exactly."
        )
    return f"{message} Check the current content (`grep -n`, `cat -n`) and copy lines exactly."


def _find(keys: list[str], wanted: list[str]) -> list[int]:
    """Start indexes of every run of ``keys`` equal to ``wanted``."""
    size = len(wanted)
    return [
        i
        for i in range(len(keys) - size + 1)
        if keys[i] == wanted[0] and keys[i : i + size] == wanted
    ]


def _numbers(indexes: list[int]) -> str:
    shown = ", ".join(str(i + 1) for i in indexes[:MAX_LISTED])
    return shown + (", ..." if len(indexes) > MAX_LISTED else "")


def _numbered(lines: list[str], start: int, end: int) -> str:
    """``cat -n``-style lines [start, end) (0-based, clamped)."""
    start = max(start, 0)
    return "\n".join(f"{n:6d}\t{_key(line)}" for n, line in enumerate(lines[start:end], start + 1))


def _split_lines(text: str) -> list[str]:
    """Lines with their endings; only "\\n" ends a line (unlike str.splitlines)."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _as_lines(text: str) -> list[str]:
    """Whole-line text (each line ending in a newline, a missing last one tolerated)."""
    if not text:
        return []
    if not text.endswith("\n"):
        text += "\n"
    return [line.removesuffix("\r") for line in text[:-1].split("\n")]


def _key(line: str) -> str:
    return line.removesuffix("\n").removesuffix("\r")


# --------------------------------------------------------------------------------- create


def create_file(runtime: Runtime, path: str, content: str) -> str:
    path = path.strip()
    if not path:
        raise ToolError("No file was created: the path is empty.")
    if path.endswith("/"):
        raise ToolError(f"No file was created: {path} names a directory; give a file path.")
    if runtime.exists(path):
        raise ToolError(
            f"No file was created: {path} already exists. Change it with edit, "
            "or remove it with bash first."
        )
    parent = posixpath.dirname(path.rstrip("/"))
    if parent and not runtime.exists(parent):
        raise ToolError(
            f"No file was created: the directory {parent} does not exist. "
            f"Create it first (`mkdir -p {shlex.quote(parent)}`)."
        )
    if content and not content.endswith("\n"):
        content += "\n"
    _write(runtime, path, content)
    count = content.count("\n")
    return f"Created {path} ({count} line{'s' if count != 1 else ''})."


# ------------------------------------------------------------------------------ file I/O


def _read_text(runtime: Runtime, path: str) -> str:
    if not path:
        raise ToolError("No change was made: the path is empty.")
    if not runtime.exists(path):
        raise ToolError(f"No change was made: the path {path} does not exist.")
    try:
        data = runtime.read_file(path)
    except OSError as exc:
        raise ToolError(
            f"No change was made: cannot read {path} ({exc.strerror or exc})."
        ) from None
    if b"\0" in data:
        raise ToolError(f"No change was made: {path} is a binary file; edit only changes text.")
    # surrogateescape: a stray non-UTF-8 byte elsewhere in the file survives the rewrite.
    return data.decode("utf-8", "surrogateescape")


def _write(runtime: Runtime, path: str, text: str) -> None:
    try:
        runtime.write_file(path, text.encode("utf-8", "surrogateescape"))
    except OSError as exc:
        raise ToolError(f"Cannot write {path} ({exc.strerror or exc}).") from None


# --------------------------------------------------------------------------------- submit


def submit_patch(
    runtime: Runtime,
    path: str | None,
    base_dir: str,
    base: str,
    *,
    exclude: tuple[str, ...] = (),
    max_output: int = 16000,
) -> tuple[Observation, str | None]:
    """Validate a submission; return what the model sees and the valid patch (or None).

    ``path`` None (or blank) submits the working-tree diff.  The submitted patch file
    and the paths in ``exclude`` (e.g. patch files submitted earlier) are left out of
    the patch.  ``BaseRepoError`` (bad ``base_dir``/``base``) propagates: it is the
    harness's fault, not the model's.
    """
    path = (path or "").strip()
    if path:
        source = path
        text = _read_patch_file(runtime, path)
        if text is None:
            where = "" if posixpath.isabs(path) else f" (relative to {runtime.root})"
            problem = f"the patch file {path} does not exist or cannot be read{where}"
            return _rejected(problem), None
        exclude = (*exclude, _repo_relative(runtime.root, path))
    else:
        source, text = "the working-tree diff", runtime.diff(exclude=exclude)
        if not text.strip():
            return _rejected(
                "the working tree has no changes against the base",
                "change the files that fix the issue first",
            ), None
    try:
        patch = validate_patch(text, base_dir, base, exclude)
    except BaseRepoError:
        raise
    except PatchError as exc:
        return _rejected(exc.message, exc.hint), None
    return Observation(output=_accepted(source, patch, max_output)), patch


def _accepted(source: str, patch: str, max_output: int) -> str:
    changed = list(PatchSet(patch))
    names = ", ".join(f.path for f in changed)
    # A leftover `git diff > fix.patch` lands in a working-tree submission as a new file.
    stray = [f.path for f in changed if f.is_added_file and f.path.endswith((".patch", ".diff"))]
    note = (
        f"\nNote: the patch adds {', '.join(stray)}; if that is not part of the fix, "
        "delete it and submit again."
        if stray
        else ""
    )
    return (
        f"Submitted {source}: a valid patch changing {len(changed)} "
        f"file{'s' if len(changed) != 1 else ''} ({names}).\n\n"
        f"{truncate_middle(patch, max_output).rstrip(chr(10))}\n{note}\n"
        "You may keep working and submit again (the last valid submission counts), "
        "or reply without a tool call to finish with your summary."
    )


def _read_patch_file(runtime: Runtime, path: str) -> str | None:
    try:
        if not runtime.exists(path):
            return None
        return runtime.read_file(path).decode("utf-8", "surrogateescape")
    except (ToolError, OSError):
        return None


def _rejected(problem: str, hint: str = "") -> Observation:
    fix = hint or "make the patch file with `git diff > fix.patch` from the repository root"
    return Observation(
        output=(
            f"Submission rejected: {problem}.\nTo fix: {fix}; new files must be added "
            "first (`git add -N FILE`) to appear in `git diff`. Then submit again."
        ),
        ok=False,
    )


def _repo_relative(root: str, path: str) -> str:
    if posixpath.isabs(path):
        relative = posixpath.relpath(path, root)
        return path if relative.startswith("..") else relative
    return posixpath.normpath(path)
