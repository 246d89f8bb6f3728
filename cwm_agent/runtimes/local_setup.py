"""How a local run's working copy is set up: sandbox or not, overlay or checkout, and
the facts about it the user hears once (``LocalRuntime.create`` puts them together)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from ..config_values import byte_size, size_bytes
from ..errors import RuntimeFailure, UsageError
from .baseline import Base, UserRepo, make_model_git, submodules
from .gitcmd import run_git
from .sandbox import (
    SandboxError,
    SandboxSpec,
    SandboxTransport,
    cannot_size,
    prepare_layers,
    works,
)
from .shell import ShellSession, Transport


def use_sandbox(choice: str, notices: list[str], tmp_size: int | None = None) -> bool:
    """Whether the commands run in bubblewrap. A size for its tmpfs (``--tmp-size``) is
    refused where it cannot apply: without the sandbox by choice, or with a bubblewrap
    that cannot size a tmpfs; under "auto" without a working sandbox the notice says it."""
    if choice == "none":
        if tmp_size is not None:
            raise not_for("--sandbox none", "without the sandbox the commands use this "
                          "machine's /tmp")  # fmt: skip
        return False
    why_not = works()
    if why_not is None:
        if tmp_size is not None and (old := cannot_size()):
            raise UsageError(
                f"--tmp-size needs bubblewrap 0.6 or later: {old}",
                hint="upgrade bubblewrap, or leave out --tmp-size",
            )
        return True
    if choice == "bwrap":
        raise RuntimeFailure(
            f"the sandbox was asked for, but {why_not}",
            hint="install bubblewrap (apt-get install bubblewrap), or pass --sandbox none",
        )
    ignored = "; --tmp-size does not apply" if tmp_size is not None else ""
    notices.append(
        f"no sandbox: {why_not}; the agent's commands run with your rights{ignored} "
        "(install bubblewrap, or pass --sandbox none to silence this)"
    )
    return False


def check_tmp_size(size: str | None, runtime: str, sandbox: str) -> None:
    """Refuse, before anything starts, a ``--tmp-size`` that cannot apply: not a size (one
    read back from a trajectory, for replay), the Docker runtime, ``--sandbox none``, a
    bubblewrap too old to size a tmpfs. Every front door asks (``settings.build``,
    ``select``, ``factory.open_runtime``)."""
    if size is None:
        return
    problem = byte_size(size)
    if problem:
        raise UsageError(f"--tmp-size {size!r} {problem}", hint="e.g. 512m or 1g")
    if runtime == "docker":
        raise not_for(
            "--runtime docker", "a container's /tmp is on its disk; --memory bounds the rest"
        )
    use_sandbox(sandbox, [], size_bytes(size))


def not_for(where: str, why: str) -> UsageError:
    """--tmp-size where there is no sandbox tmpfs to size."""
    return UsageError(
        f"--tmp-size sizes the local sandbox's in-memory folders; it does not apply with "
        f"{where} ({why})",
        hint=f"leave out --tmp-size (or tmp_size in your config file), or drop {where}",
    )


def overlay_session(
    session: Callable[[Callable[[str, Mapping[str, str]], Transport]], ShellSession],
    user: UserRepo,
    base: Base,
    top: str,
    plain: SandboxSpec,
    stores: tuple[str, ...],
    notices: list[str],
) -> ShellSession | None:
    """The shell over an overlay of the user's tree; None when the overlay cannot be
    mounted here (the caller checks the base out instead, and says why). ``top``: the
    run's folder; ``plain``: the sandbox of a checkout, which the overlay extends."""
    layers = os.path.join(top, "layers")
    prepare_layers(layers)
    model_git = os.path.join(top, "model.git")
    make_model_git(model_git, user, base)
    shutil.copy2(base.index, os.path.join(model_git, "index"))  # git status starts clean
    gitfile = None
    if not (user.top / ".git").is_dir():  # a worktree or submodule: `.git` is a file
        gitfile = os.path.join(top, "gitfile")
        Path(gitfile).write_text(f"gitdir: {model_git}\n", encoding="utf-8")
    spec = replace(
        plain, lower=str(user.top), layers=layers, model_git=model_git, gitfile=gitfile,
        protect=stores,
    )  # fmt: skip
    try:
        return session(lambda cwd, env: SandboxTransport(spec, cwd, env))
    except SandboxError as exc:
        if not exc.overlay:
            raise
        notices.append(f"the working copy is a full checkout (no overlay here: {exc.output})")
        return None


def check_out(user: UserRepo, base: Base, root: str) -> None:
    """The base's files in ``root``, with the model's ``.git`` and a clean index."""
    git_dir = os.path.join(root, ".git")
    make_model_git(git_dir, user, base)
    env = {"GIT_DIR": git_dir, "GIT_WORK_TREE": root, "GIT_INDEX_FILE": f"{git_dir}/index"}
    run_git(root, "read-tree", "-u", "--reset", base.commit, env=env)
    shutil.copy2(f"{git_dir}/index", base.index)  # the diff's index: these files' stat data


def repo_notices(user: UserRepo) -> list[str]:
    if not user.subdir:
        return []
    return [
        f"{user.top / user.subdir} is inside the git repository {user.top}: the agent works "
        f"on the whole repository, and the patch's paths are relative to {user.top}"
    ]


def submodule_notice(user: UserRepo, base: Base) -> list[str]:
    if not (user.top / ".gitmodules").is_file():
        return []
    paths = submodules(base)
    if not paths:
        return []
    shown = ", ".join(paths[:5]) + (" ..." if len(paths) > 5 else "")
    return [
        f"submodules ({shown}) are not part of the working copy's git history, and "
        "changes inside them are left out of the patch"
    ]
