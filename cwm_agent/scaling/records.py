"""The records of a scaled run: its rollouts (rows of ``selection.json``) and its outcome.

What the verification of the rollouts' patches finds is the cascade's record
(``verification/selection_record.py``), the body of ``selection.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cwm_agent.agent import RunResult
from cwm_agent.errors import CwmError
from cwm_agent.trajectory import Trajectory


@dataclass(frozen=True)
class Rollout:
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
    cost_usd: float | None = None  # where the model has a price

    def row(self) -> dict[str, Any]:
        data = asdict(self)
        del data["code"]
        return data


@dataclass
class Attempt:
    rollout: Rollout
    result: RunResult | None = None
    trajectory: Trajectory | None = None
    error: CwmError | None = None


@dataclass(frozen=True)
class ScalingOutcome:
    result: RunResult  # the selected attempt's result; its reason says why it was selected
    trajectory: Trajectory | None  # the selected attempt's trajectory
    selection: dict[str, Any]  # the selection.json document
    path: Path  # where selection.json was written
