"""git as the runtimes run it: a clean environment, a fixed identity, failures with a hint.

The harness's git reads no configuration but its own repositories' and the command line's
(``GIT_CONFIG_NOSYSTEM``, ``GIT_CONFIG_GLOBAL=/dev/null``): it stages trees a model wrote,
whose ``.gitattributes`` could otherwise name a filter driver of the user's own config and
have it run on this machine (``filter.*.clean``), and the user's ``diff.relative``,
``core.autocrlf`` or ``core.safecrlf`` would change or break the patch. Only what the user
ignores stays ignored: their ``core.excludesFile`` is passed on by name.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping

from ..errors import RuntimeFailure

# A fixed identity and date: a baseline needs no git config, and the same tree always
# gets the same commit.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "cwm-agent",
    "GIT_AUTHOR_EMAIL": "cwm-agent@localhost",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00Z",
    "GIT_COMMITTER_NAME": "cwm-agent",
    "GIT_COMMITTER_EMAIL": "cwm-agent@localhost",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z",
}
# Never a hook, a pager, a fsmonitor daemon or a "dubious ownership" refusal.
SAFE_CONFIG = (
    "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null",
    "-c", "safe.directory=*", "-c", "commit.gpgsign=false",
)  # fmt: skip


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # No inherited GIT_DIR & co. (they could aim a command at the user's repo);
    # optional locks off so read-only commands never rewrite the user's index.
    env = _without_git_variables()
    env.update(GIT_IDENTITY, GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)  # see the docstring
    env.update(extra or {})
    return env


def _without_git_variables() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


@functools.cache
def user_excludes() -> tuple[str, ...]:
    """``-c core.excludesFile=PATH`` when the user's own config names one (else git's
    default, ``$XDG_CONFIG_HOME/git/ignore``, applies by itself): what they ignore stays
    out of baselines and diffs although their config is not read."""
    try:
        proc = subprocess.run(
            ["git", "config", "--path", "--get", "core.excludesFile"],
            cwd="/", env=_without_git_variables(), capture_output=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except OSError:
        return ()
    found = os.fsdecode(proc.stdout).strip() if proc.returncode == 0 else ""
    return ("-c", f"core.excludesFile={found}") if found else ()


def run_git(
    cwd: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    input: bytes | None = None,
) -> bytes:
    """git ARGS in ``cwd``; its stdout. ``prefix`` runs it through another command (nsenter)."""
    try:
        proc = subprocess.run(
            [*prefix, "git", *SAFE_CONFIG, *user_excludes(), *args],
            cwd=cwd,
            env=git_env(env),
            capture_output=True,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except OSError as exc:
        raise RuntimeFailure(f"cannot run git: {exc}", hint="install git and retry") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise RuntimeFailure(
            f"git {args[0]} failed in {cwd}: {err}", hint="check that git works in that directory"
        )
    return proc.stdout
