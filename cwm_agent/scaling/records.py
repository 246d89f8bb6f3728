"""The frozen records of a scaled run; each becomes one row of ``selection.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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
