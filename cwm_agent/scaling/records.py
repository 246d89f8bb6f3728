"""The records of a scaled run: rows of ``selection.json`` and what the pipeline passes on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cwm_agent.agent import RunResult
from cwm_agent.errors import CwmError
from cwm_agent.trajectory import Trajectory


@dataclass(frozen=True)
class Candidate:
    """One fix rollout (attempt) and the patch it produced, if any."""

    attempt: int
    status: str
    exit_code: int
    reason: str
    patch: str | None
    tokens: int
    steps: int
    seconds: float
    trajectory: str
    patch_hash: str | None = None  # of the normalized patch; None without a usable patch
    cost_usd: float | None = None  # where the model has a price

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        del data["patch"]  # the table stays readable; the patch is in the trajectory
        return data


@dataclass(frozen=True)
class ReproTest:
    """One reproduction rollout and the test script it submitted, if any."""

    sample: int
    status: str
    tokens: int
    seconds: float
    trajectory: str
    path: str | None = None  # the file the model submitted, as it named it
    code: str | None = None
    test_hash: str | None = None  # of the normalized script (``identity.script_key``)
    normalized: str | None = None  # "ast", or "text" for a script that does not parse here
    source: str = "submitted"  # or "working tree" (--submit-on-limit took an unsent file)
    problem: str = ""  # why there is no usable test, or why it was filtered out
    base_outcome: str | None = None  # its verdict on the unpatched base
    cost_usd: float | None = None  # where the model has a price

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        del data["code"]
        return data


@dataclass(frozen=True)
class TestGroup:
    """Reproduction scripts that normalize to the same text; one of them stands for all."""

    __test__ = False  # not a pytest class, despite the name

    key: str  # the normalized script's hash
    samples: tuple[int, ...]  # the rollouts that wrote it
    code: str  # the first sample's script: the one that runs

    @property
    def size(self) -> int:
        return len(self.samples)


@dataclass(frozen=True)
class TestRun:
    """One execution: a test (the existing suite or a reproduction test) on a patch or the base."""

    __test__ = False

    candidate: str  # the normalized patch's hash, or "base"
    test: str  # "existing" or "repro-<test hash>"
    command: str
    exit_code: int | None
    outcome: str  # existing: passed/failed/timeout; repro: resolved/reproduced/other/timeout
    seconds: float
    output_tail: str = ""
    tests: dict[str, int] | None = None  # existing, with a JUnit report: tests per outcome

    def row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SuiteRun:
    """One run of the existing tests and, when pytest reported them, every test's outcome."""

    outcome: str  # passed / failed (the exit code) / timeout
    results: Mapping[str, str] | None  # test id -> outcome (``junit``); None: no report


@dataclass(frozen=True)
class ExistingCount:
    """A candidate's existing-tests checks.

    ``per_test``: of the tests that pass on the base (``total``), how many pass with the
    patch. ``exit_code``: the command wrote no per-test report on the base, so its exit
    code is one check (``total`` 1).
    """

    mode: str  # "per_test" or "exit_code"
    passed: int
    total: int
    skipped: bool = False  # not run: verification stopped early
    regressions: tuple[str, ...] = ()  # tests passing on the base that do not here (first 20)
    note: str = ""

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        data["regressions"] = list(self.regressions)
        return data


@dataclass(frozen=True)
class Group:
    """The attempts whose patches normalize to the same thing."""

    key: str
    members: tuple[Candidate, ...]

    @property
    def representative(self) -> Candidate:
        """The member that is emitted: the fewest tokens, then the earliest attempt."""
        return min(self.members, key=lambda c: (c.tokens, c.attempt))

    @property
    def votes(self) -> int:
        return len(self.members)

    @property
    def tokens(self) -> int:
        return self.representative.tokens

    @property
    def attempts(self) -> list[int]:
        return [c.attempt for c in self.members]


@dataclass(frozen=True)
class Score:
    """The number of tests a candidate passes: existing ones, then the kept reproduction tests."""

    group: Group
    repro: tuple[tuple[str, str], ...]  # (kept test's hash, its verdict on this patch)
    existing: ExistingCount | None  # None: no existing-tests command

    @property
    def repro_passed(self) -> int:
        return sum(verdict == "resolved" for _, verdict in self.repro)

    @property
    def repro_total(self) -> int:
        return len(self.repro)

    @property
    def passed(self) -> int:
        return self.repro_passed + (self.existing.passed if self.existing else 0)

    @property
    def total(self) -> int:
        return self.repro_total + (self.existing.total if self.existing else 0)

    @property
    def perfect(self) -> bool:
        return self.passed == self.total

    def sort_key(self) -> tuple[int, int, int, int]:
        """Most tests passed, then the majority, then the fewest tokens (CWM's order)."""
        return (-self.passed, -self.group.votes, self.group.tokens, self.group.attempts[0])


@dataclass
class Attempt:
    candidate: Candidate
    result: RunResult | None = None
    trajectory: Trajectory | None = None
    error: CwmError | None = None


@dataclass
class Verification:
    """What step 3 found; ``scores`` stays empty when there was nothing to choose between."""

    groups: list[Group]
    invalid: dict[str, str] = field(default_factory=dict)
    kept: list[TestGroup] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)
    base_suite: SuiteRun | None = None  # the existing tests on the unpatched base
    early_stopped: bool = False


@dataclass(frozen=True)
class ScalingOutcome:
    result: RunResult  # the selected attempt's result; its reason says why it was selected
    trajectory: Trajectory | None  # the selected attempt's trajectory
    selection: dict[str, Any]  # the selection.json document
    path: Path  # where selection.json was written
