"""The records verification passes between its stages, and to the commands above it.

A *candidate* is one patch for one instance, with where it came from; a *group* is the
candidates that make the same change (``identity.py``), verified once; the execution stage
runs groups in a warm runtime and returns one ``ExecVerdict`` per group in an
``ExecReport``; every stage adds to a ``Cost``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from cwm_agent.costs import sum_usd
from cwm_agent.types import Runtime


@dataclass(frozen=True)
class Origin:
    """Where a candidate came from, so a choice can be traced back to its file and line."""

    source: str  # the INPUT as given: a predictions file, a batch folder, a patch folder
    line: int | None = None  # 1-based line of a JSONL file (item number of a JSON list)
    model: str | None = None  # model_name_or_path, where the input names one
    attempt: int | None = None  # the rollout number of an --attempts run
    path: str | None = None  # the file that holds it: a .patch file, a trajectory

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Candidate:
    """One patch for one instance."""

    instance_id: str
    patch: str
    origin: Origin
    tokens: int | None = None  # what producing it cost, where known

    @property
    def sha256(self) -> str:
        """Of the patch's exact bytes (lines of non-UTF-8 files included)."""
        data = self.patch.encode("utf-8", "surrogateescape")
        return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Group:
    """Candidates that make the same change; the representative is the one emitted.

    ``verify_patch`` is what the execution stage applies: the representative's patch
    without its changes to test infrastructure (``stripped`` names those files), so that
    no candidate grades itself.
    """

    key: str
    members: tuple[Candidate, ...]
    verify_patch: str
    stripped: tuple[str, ...] = ()

    @property
    def representative(self) -> Candidate:
        return self.members[0]

    @property
    def votes(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class ReproScript:
    """A reproduction test: a script printing "Issue reproduced", "Issue resolved" or
    "Other issues" (CWM's test-generation format); ``votes`` scripts normalized to it."""

    key: str
    code: str
    votes: int = 1
    source: str = ""  # the rollouts that wrote it, or the file given with --tests


@dataclass
class Cost:
    """What verification spent; added up per stage, per instance and per run."""

    model_calls: int = 0
    tokens: int = 0
    test_runs: int = 0
    runtime_seconds: float = 0.0  # seconds a runtime was held open for execution
    wall_seconds: float = 0.0
    usd: float | None = None  # the model calls' price, where the verifier model has one

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.model_calls + other.model_calls,
            self.tokens + other.tokens,
            self.test_runs + other.test_runs,
            self.runtime_seconds + other.runtime_seconds,
            self.wall_seconds + other.wall_seconds,
            sum_usd([self.usd, other.usd]),
        )

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        data["runtime_seconds"] = round(self.runtime_seconds, 3)
        data["wall_seconds"] = round(self.wall_seconds, 3)
        return data


@dataclass(frozen=True)
class ExecVerdict:
    """One group's execution: of the checks that count, how many it passes.

    The checks: the impacted existing tests that pass on the base (each must still pass)
    and the reproduction scripts that print "Issue reproduced" on the base (each must
    print "Issue resolved"). ``status``: "ran", "not_run" (early stop or a budget: the
    reason says which) or "invalid" (the patch does not apply in the runtime, or changes
    no code; pruned).
    """

    group: str
    status: str
    existing_passed: int = 0
    existing_total: int = 0
    repro_passed: int = 0
    repro_total: int = 0
    regressions: tuple[str, ...] = ()  # tests passing on the base that fail with the patch
    reason: str = ""

    @property
    def passed(self) -> int:
        return self.existing_passed + self.repro_passed

    @property
    def total(self) -> int:
        return self.existing_total + self.repro_total

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        data["regressions"] = list(self.regressions)
        data.update(passed=self.passed, total=self.total)
        return data


@dataclass
class ExecReport:
    """What the execution stage found for one instance."""

    verdicts: dict[str, ExecVerdict] = field(default_factory=dict)
    tests: tuple[str, ...] = ()  # the impacted existing tests that were run
    test_command: str | None = None
    warnings: list[str] = field(default_factory=list)  # a check that could not run, loudly
    reset: str = ""  # "verified", or why each group got a fresh runtime instead
    early_stopped: bool = False
    cost: Cost = field(default_factory=Cost)
    runs: list[dict[str, Any]] = field(default_factory=list)  # every execution, in order
    runtimes: int = 0  # runtimes opened: 1 when every reset was verified
    base_passing: tuple[str, ...] = ()  # the impacted tests passing on the base: they count
    scripts_counted: tuple[str, ...] = ()  # scripts printing "Issue reproduced" on the base


@dataclass(frozen=True)
class ExecConfig:
    """How the execution stage runs (one instance at a time): ``execute.ExecConfig``,
    here so that the stage's parts and the commands that plan it share it."""

    test_cmd: str | None = None  # None: the record's (SWE-bench) or pytest; "": none
    test_timeout: float = 900.0
    repro_timeout: float = 120.0
    python: str = "python3"
    max_test_runs: int | None = None  # test-command and script runs per instance
    max_seconds: float | None = None  # wall seconds per instance
    early_stop: bool = True
    max_test_files: int = 5  # impacted test files run, most specific first
    warm: bool = True  # False: a fresh runtime per group (what the warm reset must equal)
    # Of the scripts that reproduce the issue on the base, the first this many count (the
    # scripts come most votes first: CWM keeps the largest groups); None: every one.
    max_scripts: int | None = None


class Workspace(Protocol):
    """The code of one instance: fresh runtimes at its base, and its record.

    ``record`` is the SWE-bench record (``repo`` and ``version`` choose the swebench
    package's test command and log parser) or ``{}`` for a repository of one's own.
    """

    instance_id: str
    record: Mapping[str, Any]

    def open(self, label: str) -> Runtime: ...


# What a selection's prediction holds: the chosen candidate's patch as written (its test
# infrastructure included, said loudly), or only its code change (what was verified).
AS_WRITTEN, CODE_ONLY = "as-written", "code-only"
EMITS = (AS_WRITTEN, CODE_ONLY)
