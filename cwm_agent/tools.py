"""What the tools do: bash, edit and create through ``execute``; submit through ``submit_patch``.

Problems the model caused come back as ``Observation(ok=False)`` with a message that
says what to do; only runtime failures (``RuntimeFailure``) and harness bugs raise.

bash, in the cwm tool format, shows exactly what the command wrote, as CWM's environment
does: its final newline kept, an empty output empty, no exit-code line. A timeout or a
shell that died is told in a notice after the output (the session was terminated, a new
one started, the working directory is the default again). Output past ``max_output``
characters is cut in the middle with a marker saying how much. The openai tool format
adds the exit code and "(no output)", which a model without CWM's training can use.

edit and create follow CWM's plugins (``editing.py``); relative paths of edit, create
and submit are relative to the session's current directory.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

from unidiff import PatchSet

from . import prompts
from .editing import create_file, edit_file, in_session, parse_edit_body
from .errors import PatchError, ToolError
from .patch_size import PatchTooLarge, check_size, too_large
from .patches import BaseRepoError, validate_patch
from .prompt_sets import PromptSet
from .protocol import truncate_middle
from .types import Action, CommandResult, FileTooLarge, Observation, Runtime

# The runtime cuts a huge output to its head and tail with a marker of its own; that
# text may pass the limit by the marker's length and is not cut a second time.
_RUNTIME_MARKER_ROOM = 100


def execute(
    action: Action,
    runtime: Runtime,
    *,
    timeout: float,
    max_output: int,
    tool_format: str = "cwm",
) -> Observation:
    """Run a bash, edit or create action (submit goes through ``submit_patch``)."""
    args = action.args
    try:
        if action.tool == "bash":
            return run_bash(
                runtime,
                args.get("command", ""),
                timeout=timeout,
                max_output=max_output,
                tool_format=tool_format,
            )
        if action.tool == "edit":
            if "search" not in args and "body" in args:  # a CWM body that did not parse
                args = parse_edit_body(args["body"])  # raises the ToolError that says why
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


def run_bash(
    runtime: Runtime,
    command: str,
    *,
    timeout: float,
    max_output: int,
    tool_format: str = "cwm",
) -> Observation:
    result = runtime.run(command, timeout)
    output = _bounded(result, max_output)
    notice = session_notice(result, timeout, runtime.root)
    if tool_format == "cwm":
        text = output
        if notice:
            text += ("" if not output or output.endswith("\n") else "\n") + notice
    else:
        lines = [output.rstrip("\n") or "(no output)", *([notice] if notice else [])]
        if not result.timed_out and result.exit_code not in (0, None):
            lines.append(f"[exit code: {result.exit_code}]")
        text = "\n".join(lines)
    return Observation(
        output=text,
        ok=result.exit_code == 0 and not result.timed_out,
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        duration=result.duration,
    )


def _bounded(result: CommandResult, max_output: int) -> str:
    room = _RUNTIME_MARKER_ROOM if result.cut_bytes else 0
    if len(result.output) <= max_output + room:
        return result.output
    return truncate_middle(result.output, max_output)


def session_notice(result: CommandResult, timeout: float, root: str) -> str:
    """What the model must know when the command ended its shell session ("" if not)."""
    fresh = (
        f"A new session was started in the default working directory, {root}; "
        "earlier cd and export settings are gone."
    )
    if result.timed_out:
        return (
            f"The command did not finish within {timeout:g} seconds and was killed, which "
            f"ended the shell session. {fresh}"
        )
    if result.session_restarted:
        return f"The shell session ended unexpectedly. {fresh}"
    return ""


# --------------------------------------------------------------------------------- submit


def submit_patch(
    runtime: Runtime,
    path: str | None,
    base_dir: str,
    base: str,
    *,
    exclude: tuple[str, ...] = (),
    max_output: int = 16000,
    prompt_set: PromptSet | None = None,
    max_bytes: int | None = None,
    warn: Callable[[str], None] | None = None,
) -> tuple[Observation, str | None]:
    """Validate a submission; return what the model sees and the valid patch (or None).

    ``path`` None (or blank) submits the working-tree diff; a relative ``path`` is
    relative to the session's current directory.  The submitted patch file and the
    paths in ``exclude`` (e.g. patch files submitted earlier) are left out of the patch.
    An accepted patch is shown in ``<submission>`` tags (the ``submission`` template of
    ``prompt_set``).  ``BaseRepoError`` (bad ``base_dir``/``base``) propagates: it is the
    harness's fault, not the model's. A patch over ``max_bytes`` is refused unparsed and
    ``warn`` tells the user too (the model may not say why its submissions fail).
    """
    path = (path or "").strip()
    raw: str | bytes
    if path:
        source = path
        target = in_session(runtime, path)
        try:
            data, problem = _read_patch_file(runtime, target, max_bytes)
        except FileTooLarge as exc:  # refused by its size: never read into memory
            files = " (`git diff --stat` shows which files make it large)"
            refused = too_large(exc.size, exc.limit, files, what=f"the patch file {path}")
            if warn is not None:
                warn(f"a submission ({path}) was refused: {refused.message}")
            return _rejected(refused.message, refused.hint), None
        if data is None:
            where = (
                ""
                if posixpath.isabs(path)
                else f" (relative to the current directory {runtime.cwd})"
            )
            return _rejected(f"the patch file {path} {problem}{where}"), None
        raw = data
        # The user's own edits, which the model's `git diff` may have caught, stay out.
        foreign = runtime.outside_changes().foreign
        exclude = (*exclude, _repo_relative(runtime.root, target), *foreign)
    else:
        source, raw = "the working-tree diff", runtime.diff(exclude=exclude)
        if not raw.strip():
            return _rejected(
                "the working tree has no changes against the base",
                "change the files that fix the issue first",
            ), None
    try:
        if max_bytes is not None:
            check_size(raw, max_bytes)  # before a copy is decoded or anything parsed
        text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
        patch = validate_patch(text, base_dir, base, exclude)
    except BaseRepoError:
        raise
    except PatchTooLarge as exc:
        if warn is not None:
            warn(f"a submission ({source}) was refused: {exc.message}")
        return _rejected(exc.message, exc.hint), None
    except PatchError as exc:
        return _rejected(exc.message, exc.hint), None
    output = _accepted(source, patch, max_output, prompt_set)
    return Observation(output=output), patch


def _accepted(source: str, patch: str, max_output: int, prompt_set: PromptSet | None) -> str:
    changed = list(PatchSet(patch))
    # A leftover `git diff > fix.patch` lands in a working-tree submission as a new file.
    stray = [f.path for f in changed if f.is_added_file and f.path.endswith((".patch", ".diff"))]
    return prompts.render(
        "submission",
        prompt_set=prompt_set,
        source=source,
        files=[f.path for f in changed],
        patch=truncate_middle(patch, max_output),
        stray=stray,
    )


def _read_patch_file(
    runtime: Runtime, target: str, max_bytes: int | None
) -> tuple[bytes | None, str]:
    """The patch file's bytes, or None and what is wrong with it (``FileTooLarge`` past
    ``max_bytes``)."""
    try:
        if not runtime.exists(target):
            return None, "does not exist"
        return runtime.read_file(target, max_bytes), ""
    except ToolError as exc:  # e.g. outside the repository: the runtime says why
        return None, f"cannot be read: {exc}"
    except FileTooLarge:
        raise
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"


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
