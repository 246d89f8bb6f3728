"""Where an instance's code comes from, for the stages that need it.

- the static stage reads the base from a clone's git objects (``basecode.GitBase``);
- the execution stage gets a ``Workspace`` (``records.Workspace``): fresh runtimes at the
  base, from a temporary checkout of the clone (local runtime, sandboxed) or from the
  record's image with the repository inside (docker, SWE-bench's ``/testbed``).

A Workspace's record keeps only what chooses a test command and log parser (repo,
version, commits, and the record's own test command as plain facts, read from its eval
script without the test names): the grading fields (``test_patch``, ``FAIL_TO_PASS``,
``PASS_TO_PASS``, the gold ``patch``) never reach the selection.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cwm_agent.errors import RuntimeFailure
from cwm_agent.settings import RuntimeSettings
from cwm_agent.types import Runtime
from cwm_agent.verification.basecode import GitBase
from cwm_agent.verification.records import Workspace

WORKSPACE_FIELDS = ("instance_id", "repo", "version", "base_commit", "environment_setup_commit")


@dataclass(frozen=True)
class CodeSource:
    """An instance's code: a clone at a commit, a runtime for execution, or neither."""

    clone: Path | None = None
    commit: str | None = None
    runtime: RuntimeSettings | None = None  # None: nothing to execute in
    missing: str = ""  # why there is no clone (the static checks that need one say it)
    # A Workspace the caller holds (a scaled run's own runtimes): used as it is.
    given: Workspace | None = field(default=None, compare=False)
    label: str = ""  # how to name ``clone`` in the record (a runtime's base: not a path)

    def describe(self) -> str:
        if self.clone is not None:
            return f"{self.label or self.clone} at {(self.commit or '')[:12]}"
        return self.missing


def safe_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the execution stage may know of a record: where it is, and its own test
    command as plain facts (``testcmd.command_facts``), never its tests or gold patch."""
    from cwm_agent.verification.testcmd import FACTS, command_facts

    safe = {k: record[k] for k in WORKSPACE_FIELDS if record.get(k) is not None}
    facts = record.get(FACTS) if isinstance(record.get(FACTS), Mapping) else command_facts(record)
    if facts is not None:
        safe[FACTS] = dict(facts)
    return safe


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
    """Fresh runtimes of one checkout of the base: sandboxed copies, or containers it is
    copied into (a scaled run's REPO, whichever runtime its rollouts used)."""

    def __init__(
        self,
        instance_id: str,
        record: Mapping[str, Any],
        checkout: Path,
        settings: RuntimeSettings,
        prefix: str = "select",  # what the runtimes' names start with (a run's id)
    ) -> None:
        self.instance_id = instance_id
        self.record: Mapping[str, Any] = safe_record(record)
        self.checkout = checkout
        self.settings = settings
        self.prefix = prefix

    def open(self, label: str) -> Runtime:
        from cwm_agent.factory import open_runtime

        return open_runtime(self.settings, self.checkout, f"{self.prefix}-{label}")


class ImageWorkspace:
    """Fresh containers of the instance's image, the repository inside at its base."""

    def __init__(self, instance_id: str, record: Mapping[str, Any], settings: RuntimeSettings):
        self.instance_id = instance_id
        self.record: Mapping[str, Any] = safe_record(record)
        self.settings = settings

    def open(self, label: str) -> Runtime:
        from cwm_agent.factory import open_runtime

        return open_runtime(self.settings, None, f"select-{label}")


class Lender:
    """A Workspace whose first runtime is opened early for its base: without a clone the
    static stage reads the base from it (``base_dir`` at ``base``, on this machine), then
    the execution stage gets it as its first runtime, so no runtime is opened twice. One
    never handed on is closed by ``close``."""

    def __init__(self, inner: Workspace) -> None:
        self.inner = inner
        self.instance_id = inner.instance_id
        self.record = inner.record
        self.seconds = 0.0  # opening it: runtime-seconds of the static stage
        self._first: Runtime | None = None

    def base(self) -> tuple[Path, str]:
        started = time.monotonic()
        self._first = self.inner.open("base")
        try:
            return Path(self._first.base_dir), self._first.base
        finally:
            self.seconds = time.monotonic() - started

    def open(self, label: str) -> Runtime:
        first, self._first = self._first, None
        return first if first is not None else self.inner.open(label)

    def close(self) -> None:
        first, self._first = self._first, None
        if first is not None:
            first.close()


@contextmanager
def workspace(
    instance_id: str, record: Mapping[str, Any], source: CodeSource
) -> Iterator[Workspace]:
    """The instance's Workspace for as long as the execution stage needs it."""
    if source.given is not None:
        yield source.given
        return
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
