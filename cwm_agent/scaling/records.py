"""The records of a scaled run: rows of ``selection.json`` and what the pipeline passes on."""

from __future__ import annotations

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

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        del data["patch"]  # the table stays readable; the patch is in the trajectory
        return data


@dataclass(frozen=True)
class ReproTest:
    """One reproduction rollout and the standalone test script it submitted, if any."""

    sample: int
    status: str
    tokens: int
    seconds: float
    trajectory: str
    path: str | None = None  # where the model wrote it, relative to the repository root
    code: str | None = None
    test_hash: str | None = None
    problem: str = ""  # why there is no usable test
    base_outcome: str | None = None  # its verdict on the unpatched base

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        del data["code"]
        return data


@dataclass(frozen=True)
class TestRun:
    """One execution: a test (the existing suite or a reproduction test) on a patch or the base."""

    __test__ = False  # not a pytest class, despite the name

    candidate: str  # the normalized patch's hash, or "base"
    test: str  # "existing" or "repro-<test hash>"
    command: str
    exit_code: int | None
    outcome: str  # existing: passed/failed/timeout; repro: resolved/reproduced/other/timeout
    seconds: float
    output_tail: str = ""

    def row(self) -> dict[str, Any]:
        return asdict(self)


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
    group: Group
    repro_passed: int
    repro_total: int
    existing: str | None  # None: no test command; "skipped": not run (early stop)

    @property
    def passed(self) -> int:
        return self.repro_passed + (self.existing == "passed")

    @property
    def total(self) -> int:
        return self.repro_total + (self.existing is not None)

    @property
    def perfect(self) -> bool:
        return self.passed == self.total

    def sort_key(self) -> tuple[int, int, int, int]:
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
    kept: list[tuple[str, int]] = field(default_factory=list)  # (test hash, bloc size)
    scores: list[Score] = field(default_factory=list)
    early_stopped: bool = False


@dataclass(frozen=True)
class ScalingOutcome:
    result: RunResult  # the selected attempt's result; its reason says why it was selected
    trajectory: Trajectory | None  # the selected attempt's trajectory
    selection: dict[str, Any]  # the selection.json document
    path: Path  # where selection.json was written
