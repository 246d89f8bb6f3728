"""`batch --evaluate`: each prediction graded as soon as its instance finishes.

Grading is post-hoc: the records' grading fields (test_patch, FAIL_TO_PASS, PASS_TO_PASS,
the eval script) are held here, by the driver, and reach only the grader, never an agent
(which gets an `Instance`). Predictions are graded on this machine's Docker engine, on
``--workers`` threads, exactly as `cwm-agent evaluate OUTDIR/preds.jsonl --dataset INPUT
-o OUTDIR/evaluation` would grade them; finished instances of an earlier session are
graded too (verdicts already made are reused).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cwm_agent.batch.instances import Instance
from cwm_agent.errors import UsageError
from cwm_agent.evaluate.runner import EvalSettings, Evaluator, Say
from cwm_agent.evaluate.tasks import GRADING_KEYS, Task
from cwm_agent.verification.images import record_image

EVALUATION_DIR = "evaluation"


class BatchGrading:
    def __init__(
        self,
        records: list[dict[str, Any]],
        outdir: Path,
        settings: dict[str, Any],
        say: Say,
    ) -> None:
        from cwm_agent.runtimes.docker_engine import connect
        from cwm_agent.trajectory import new_run_id

        self.records = {str(r.get("instance_id")): r for r in records}
        self.image_template = settings.get("image_template")
        self.outdir = outdir / EVALUATION_DIR
        eval_settings = EvalSettings(
            self.outdir, f"eval-{new_run_id()}", settings["workers"], settings["timeout"]
        )
        self.evaluator = Evaluator(eval_settings, connect(), say)
        self.submitted: list[str] = []

    def check(self, instances: list[Instance]) -> None:
        """Refuse up front a selection whose records cannot be graded."""
        for instance in instances:
            record = self.records[instance.instance_id]
            missing = [k for k in GRADING_KEYS if record.get(k) in (None, "")]
            if missing:
                raise UsageError(
                    f"--evaluate: {instance.instance_id} has no {', '.join(missing)}",
                    hint="grading uses the records' own eval scripts (the official SWE-bench "
                    "datasets carry them); leave --evaluate out for other records",
                )

    def submit(self, instance: Instance, doc: dict[str, Any] | None) -> None:
        """An instance ended: its prediction, if it has one, is graded."""
        prediction = (doc or {}).get("prediction")
        if not prediction:
            return
        record = self.records[instance.instance_id]
        task = Task(
            instance.instance_id, prediction, record, record_image(record, self.image_template)
        )
        self.submitted.append(instance.instance_id)
        self.evaluator.submit(task)

    def finish(self) -> dict[str, Any]:
        self.evaluator.wait()
        evaluation = {
            "by": "cwm-agent batch --evaluate",
            "workers": self.evaluator.settings.workers,
            "run_id": self.evaluator.settings.run_id,  # the label of its containers
        }
        return self.evaluator.report(list(self.records), self.submitted, evaluation)

    def stop(self) -> None:
        self.evaluator.stop()
