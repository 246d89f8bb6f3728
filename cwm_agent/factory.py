"""The one place that builds models and runtimes from settings.

Every front door (run, the fix and reproduction rollouts, verification, `trace predict`,
replay, doctor) comes through here, so a setting means the same everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cwm_agent.errors import UsageError
from cwm_agent.settings import ModelSettings, RuntimeSettings

if TYPE_CHECKING:  # the SDK and the runtimes load on first use, not at import
    from cwm_agent.models.cwm_chat import CompletionsModel
    from cwm_agent.models.openai_client import OpenAIModel
    from cwm_agent.types import Runtime


def open_model(
    settings: ModelSettings, stop: Callable[[], bool] | None = None
) -> OpenAIModel | CompletionsModel:
    """The client for ``settings.api``; the key comes only from env OPENAI_API_KEY.

    ``stop``: a run on a worker thread gives up a request once it is true (batch and
    ``--attempts`` stopping on Ctrl-C; see ``models/abandon.py``)."""
    key = os.environ.get("OPENAI_API_KEY")
    cls: type[OpenAIModel] | type[CompletionsModel]
    if settings.transport == "completions":
        from cwm_agent.models.cwm_chat import CompletionsModel as cls
    else:
        from cwm_agent.models.openai_client import OpenAIModel as cls
    return cls(
        settings.name,
        settings.base_url,
        key,
        temperature=settings.temperature,
        top_p=settings.top_p,
        timeout=settings.request_timeout,
        max_retries=settings.max_retries,
        extra_body=settings.extra_body or None,
        stop=stop,
    )


def open_runtime(settings: RuntimeSettings, repo: Path | None, run_id: str) -> Runtime:
    """A fresh runtime of ``settings.runtime`` holding ``repo`` (or the image's own)."""
    if settings.tmp_size is not None:
        from cwm_agent.runtimes.local_setup import check_tmp_size

        check_tmp_size(settings.tmp_size, settings.runtime, settings.sandbox)
    if settings.runtime == "local" or not settings.repo_in_image:
        require_work_tree(repo or ".")
    if settings.runtime == "local":
        from cwm_agent.runtimes.local import LocalRuntime

        return LocalRuntime.create(
            repo or ".",
            sandbox=settings.sandbox,
            network=settings.network,
            tmp_size=settings.tmp_bytes,
            shell_init=settings.shell_init or "",
        )
    if settings.runtime == "docker":
        from cwm_agent.runtimes.docker import DockerRuntime

        if not settings.image:
            raise UsageError(
                "--runtime docker needs --image",
                hint="e.g. --image python:3.11, or a SWE-bench image with --repo-in-image",
            )
        return DockerRuntime.create(
            repo,
            image=settings.image,
            workdir=settings.workdir,
            repo_in_image=settings.repo_in_image,
            run_id=run_id,
            network=settings.network,
            memory=settings.memory,
            pids_limit=settings.pids_limit,
            shell_init=settings.shell_init,
            base_commit=settings.base_commit,
        )
    raise UsageError(f"unknown runtime {settings.runtime!r}", hint="use local or docker")


def require_work_tree(repo: Path | str) -> None:
    """REPO must be (inside) a git working tree: not having one is the user's situation to
    fix (a usage error), not a failure of the runtime."""
    from cwm_agent.errors import RuntimeFailure
    from cwm_agent.runtimes.gitcmd import run_git

    path = Path(repo).expanduser()
    try:
        inside = path.is_dir() and run_git(str(path), "rev-parse", "--is-inside-work-tree")
    except RuntimeFailure:
        inside = False
    if not inside or inside.strip() != b"true":
        raise UsageError(
            f"{path} is not a git repository (nor inside one)",
            hint="pass the repository's path, or make it one: git init && git add -A && "
            "git commit -m base",
        )
