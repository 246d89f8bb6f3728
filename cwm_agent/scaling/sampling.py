"""Step 1 of the pipeline: K fix rollouts and K reproduction rollouts, all in one pool."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cwm_agent.agent import ProgressFn
from cwm_agent.costs import Meter
from cwm_agent.errors import CwmError, Interrupted
from cwm_agent.run import execute
from cwm_agent.settings import RunSettings
from cwm_agent.trajectory import cost_in, tokens_in
from cwm_agent.verification import layout
from cwm_agent.verification.identity import patch_hash
from cwm_agent.verification.scripts import problem

from .pool import DaemonPool
from .records import Attempt, ReproTest, Rollout
from .repro import run_repro_rollout

Note = Callable[[str], None]


@dataclass(frozen=True)
class Sampler:
    """The rollouts of one scaled run. Each rollout's meter counts into ``meter`` (the
    budget of all attempts together); ``stopping`` (a batch stopping) stops them as
    ``stop`` does, a model request in progress included."""

    settings: RunSettings
    issue: str
    out_dir: Path
    note: Note
    meter: Meter | None = None
    stopping: Callable[[], bool] | None = None
    python: str = "python3"  # what the reproduction rollouts are told runs their test
    stop: threading.Event = field(default_factory=threading.Event)  # set: wind down

    def stopped(self) -> bool:
        return self.stop.is_set() or (self.stopping is not None and self.stopping())

    def _meter(self) -> Meter:
        """A rollout's own meter: no budget of its own, counting into the scaled run's."""
        return Meter(self.settings.model.prices, parent=self.meter)

    def sample(
        self, pool: DaemonPool, attempts: int, with_tests: bool
    ) -> tuple[list[Attempt], list[ReproTest]]:
        """Fix rollouts are queued first, so with few workers patches come before tests."""
        fixes = [pool.submit(self.fix, n) for n in range(1, attempts + 1)]
        repros: list[Future[ReproTest]] = []
        if with_tests:
            repros = [pool.submit(self.reproduction, n) for n in range(1, attempts + 1)]
        return [f.result() for f in fixes], [f.result() for f in repros]

    def fix(self, number: int) -> Attempt:
        """One attempt, in its own runtime and trajectory; its failure is recorded, not raised."""
        path = self.out_dir / layout.attempt_file(number)
        mine = replace(self.settings, run_id=f"{self.settings.run_id}-a{number}", traj_path=path)
        started = time.perf_counter()
        forward = self._forward(f"attempt {number}")
        try:
            result, traj = execute(
                mine, self.issue, forward, stop=self.stopped, meter=self._meter()
            )
        except Interrupted:
            raise  # the scaled run is stopping: not an attempt that failed
        except CwmError as exc:
            self.note(f"attempt {number}: failed: {exc.message}")
            failed = Rollout(
                attempt=number,
                status=type(exc).__name__,
                exit_code=exc.exit_code,
                reason=exc.message,
                patch=None,
                tokens=tokens_in(path),
                cost_usd=cost_in(path),
                steps=0,
                seconds=round(time.perf_counter() - started, 3),
                trajectory=str(path),
            )
            return Attempt(failed, error=exc)
        rollout = Rollout(
            attempt=number,
            status=result.status,
            exit_code=result.exit_code,
            reason=result.reason,
            patch=result.patch,
            tokens=result.usage.total_tokens,
            cost_usd=traj.data.get("cost_usd"),
            steps=result.steps,
            seconds=round(time.perf_counter() - started, 3),
            trajectory=str(traj.path),
        )
        shown = f"patch {patch_hash(result.patch)}" if result.patch else "no patch"
        self.note(f"attempt {number}: {result.status}, {shown}, {rollout.tokens} tokens")
        return Attempt(rollout, result, traj)

    def reproduction(self, number: int) -> ReproTest:
        """One reproduction rollout. Filtered as CWM's test-generation environment filters
        its tests: a script that never mentions "Issue reproduced" and "Issue resolved"
        cannot tell a fix apart. Its run on the base is the execution stage's."""
        path = self.out_dir / layout.repro_file(number)
        forward = self._forward(f"reproduction test {number}")
        test = run_repro_rollout(
            self.settings, self.issue, number, path, forward, self.python,
            stop=self.stopped, meter=self._meter(),
        )  # fmt: skip
        if test.code is None:
            self.note(f"reproduction test {number}: none ({test.problem})")
            return test
        why = problem(test.code)
        if why:
            self.note(f"reproduction test {number}: {test.test_hash}, filtered out: {why}")
            return replace(test, problem=f"filtered out: {why}")
        self.note(f"reproduction test {number}: {test.test_hash}")
        return test

    def _forward(self, label: str) -> ProgressFn:
        """A rollout's progress: only its warnings, labelled."""

        def forward(event: str, data: dict[str, Any]) -> None:
            if event == "warning":
                self.note(f"{label}: warning: {data['message']}")
            if event in ("step", "action") and self.stopped():
                raise KeyboardInterrupt  # the agent's own Ctrl-C path: abort, close runtime

        return forward
