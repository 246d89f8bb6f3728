"""Where an instance's code comes from, for the stages that need it.

- the static stage reads the base from a clone's git objects (``basecode.GitBase``);
- the execution stage gets a ``Workspace`` (``records.Workspace``): fresh runtimes at the
  base, from a temporary checkout of the clone (local runtime, sandboxed) or from the
  record's image with the repository inside (docker, SWE-bench's ``/testbed``).

A Workspace's record keeps only what chooses a test command and log parser (repo,
version, commits, and a SWE-bench record's own test command taken out of its eval
script): the grading fields (``test_patch``, ``FAIL_TO_PASS``, ``PASS_TO_PASS``, the gold
``patch``, the eval script that holds the test patch) never reach the selection.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cwm_agent.errors import RuntimeFailure
from cwm_agent.settings import RuntimeSettings
from cwm_agent.types import Runtime
from cwm_agent.verification import testcmd
from cwm_agent.verification.basecode import GitBase
from cwm_agent.verification.records import Workspace

WORKSPACE_FIELDS = ("instance_id", "repo", "version", "base_commit", "environment_setup_commit")
SWEBENCH_WORKDIR = "/testbed"


@dataclass(frozen=True)
class CodeSource:
    """An instance's code: a clone at a commit, a runtime for execution, or neither."""

    clone: Path | None = None
    commit: str | None = None
    runtime: RuntimeSettings | None = None  # None: nothing to execute in
    missing: str = ""  # why there is no clone (the static checks that need one say it)

    def describe(self) -> str:
        if self.clone is not None:
            return f"{self.clone} at {(self.commit or '')[:12]}"
        return self.missing


def safe_record(record: Mapping[str, Any]) -> dict[str, Any]:
    found = {k: record[k] for k in WORKSPACE_FIELDS if record.get(k) is not None}
    return found | testcmd.command_fields(record)


@contextmanager
def base_code(source: CodeSource) -> Iterator[tuple[GitBase | None, str]]:
    """(the base, "") or (None, why there is none)."""
    if source.clone is None or not source.commit:
        yield None, source.missing or "no base code"
        return
    try:
        base = GitBase(source.clone, source.commit)
    except RuntimeFailure as exc:
        yield None, exc.message
        return
    try:
        yield base, ""
    finally:
        base.close()


class LocalWorkspace:
    """Fresh local runtimes (sandboxed copies) of one checkout of the base."""

    def __init__(
        self, instance_id: str, record: Mapping[str, Any], checkout: Path, settings: RuntimeSettings
    ) -> None:
        self.instance_id = instance_id
        self.record: Mapping[str, Any] = safe_record(record)
        self.checkout = checkout
        self.settings = settings

    def open(self, label: str) -> Runtime:
        from cwm_agent.factory import open_runtime

        return open_runtime(self.settings, self.checkout, f"select-{label}")


class ImageWorkspace:
    """Fresh containers of the instance's image, the repository inside at its base."""

    def __init__(self, instance_id: str, record: Mapping[str, Any], settings: RuntimeSettings):
        self.instance_id = instance_id
        self.record: Mapping[str, Any] = safe_record(record)
        self.settings = settings

    def open(self, label: str) -> Runtime:
        from cwm_agent.factory import open_runtime

        return open_runtime(self.settings, None, f"select-{label}")


@contextmanager
def workspace(
    instance_id: str, record: Mapping[str, Any], source: CodeSource
) -> Iterator[Workspace]:
    """The instance's Workspace for as long as the execution stage needs it."""
    settings = source.runtime
    if settings is None:
        raise RuntimeFailure(f"{instance_id}: no runtime to execute in", hint=source.missing)
    if settings.runtime == "docker" and settings.repo_in_image:
        yield ImageWorkspace(instance_id, record, settings)
        return
    if source.clone is None or not source.commit:
        raise RuntimeFailure(f"{instance_id}: no clone to check out", hint=source.missing)
    from cwm_agent.verification.checkout import checkout_at

    with checkout_at(source.clone, source.commit) as checkout:
        yield LocalWorkspace(instance_id, record, checkout, settings)


def image_runtime(image: str, commit: str | None, base: RuntimeSettings) -> RuntimeSettings:
    """Docker with the repository in ``image`` at /testbed, checked against ``commit``."""
    return replace(
        base,
        runtime="docker",
        image=image,
        repo_in_image=True,
        workdir=SWEBENCH_WORKDIR,
        base_commit=commit,
    )
