"""The ways `bench_verify_exec.py` grades one instance's candidates, each timed the same
way (runtime-seconds: how long runtimes were held open; test runs: eval scripts or test
commands run): a fresh container per candidate, one warm container (identical patches once,
optionally --first-resolved), the official harness column by column, and the execution
stage with a fresh or a warm runtime.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "docker"))

import swebench_records as sr  # noqa: E402

from cwm_agent.evaluate.grade import EMPTY, Grader  # noqa: E402
from cwm_agent.evaluate.warm_grading import grade_instance  # noqa: E402


def fresh(grader: Grader, tasks: list[Any], folder: Path) -> dict[str, Any]:
    """Every line in a fresh container of its own (empty patches need none)."""
    statuses, seconds, runs = {}, 0.0, 0
    for task in tasks:
        outcome = grader.grade(task, folder / f"line-{task.line}")
        statuses[task.line] = outcome.status
        if outcome.status != EMPTY:
            seconds, runs = seconds + outcome.seconds, runs + 1
    return {"statuses": statuses, "seconds": seconds, "runs": runs, "containers": runs}


def warm(grader: Grader, tasks: list[Any], folder: Path, first: bool) -> dict[str, Any]:
    def folder_of(task: Any) -> Path:
        return folder / "instance" / "candidates" / task.sha256[:16]

    result = grade_instance(grader, tasks, folder_of, lambda task: None, first)
    statuses = {}
    for task in tasks:
        outcome = result.outcomes.get(task.sha256)
        statuses[task.line] = outcome.status if outcome else "skipped"
    runs = sum(o.status != EMPTY for o in result.outcomes.values())
    return {"statuses": statuses, "seconds": result.container_seconds, "runs": runs,
            "containers": result.containers, "fallbacks": result.fallbacks}  # fmt: skip


MODES: dict[str, Callable[..., dict[str, Any]]] = {
    "fresh container per candidate": fresh,
    "warm container, identical patches once": lambda g, t, f: warm(g, t, f, False),
    "warm container, identical once, --first-resolved": lambda g, t, f: warm(g, t, f, True),
}


def measure(
    instances: list[list[Any]], timeout: float, per_instance: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Every mode on every instance; ``per_instance`` (if given) gets each instance's
    figures by mode: runtime-seconds, test runs, containers, wall seconds."""
    from cwm_agent.evaluate.grade import swebench
    from cwm_agent.runtimes.docker_engine import connect

    for module in ("harness.utils", "harness.grading", "harness.run_evaluation"):
        swebench(module)  # imported before the clock runs: no mode pays for it

    grader = Grader(connect(), f"bench-verify-{os.getpid()}", timeout)
    totals = {name: {"seconds": 0.0, "runs": 0, "containers": 0, "wall": 0.0, "statuses": {},
                     "fallbacks": []} for name in MODES}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-verify-exec-") as tmp:
        for n, tasks in enumerate(instances):
            order = list(MODES) if n % 2 == 0 else list(MODES)[::-1]  # interleaved
            for name in order:
                started = time.monotonic()
                got = MODES[name](grader, tasks, Path(tmp) / f"{n}-{len(totals[name]['statuses'])}")
                total = totals[name]
                wall = time.monotonic() - started
                total["wall"] += wall
                if per_instance is not None:
                    mine = per_instance.setdefault(tasks[0].instance_id, {})
                    mine[name] = {k: got[k] for k in ("seconds", "runs", "containers")}
                    mine[name]["wall"] = wall
                for key in ("seconds", "runs", "containers"):
                    total[key] += got[key]
                total["fallbacks"] += got.get("fallbacks", [])
                total["statuses"].update(
                    {(tasks[0].instance_id, k): v for k, v in got["statuses"].items()}
                )
                print(f"{tasks[0].instance_id} {name}: {got['seconds']:.1f} runtime-s, "
                      f"{got['runs']} runs", file=sys.stderr)  # fmt: skip
    return totals


STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - ")


def harness(instances: list[list[Any]], dataset: Path) -> dict[str, Any]:
    """The official harness, one run per column (one candidate per instance in each), as
    its users would grade many candidates; runtime-seconds from its run_instance.log."""
    import datetime
    import json
    import subprocess

    total: dict[str, Any] = {"seconds": 0.0, "runs": 0, "containers": 0, "wall": 0.0,
                             "statuses": {}, "fallbacks": []}  # fmt: skip
    keys = {"resolved_ids": "resolved", "unresolved_ids": "unresolved", "error_ids": "error"}
    with tempfile.TemporaryDirectory(prefix="bench-verify-harness-") as tmp:
        for column in range(max(len(tasks) for tasks in instances)):
            picked = [tasks[column] for tasks in instances if len(tasks) > column]
            rows = [{**t.prediction, "model_name_or_path": "m"} for t in picked]
            run_id = f"col{column}"
            preds = sr.write_jsonl(Path(tmp) / f"{run_id}.jsonl", rows)
            args = [sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name"]
            args += [str(dataset), "--predictions_path", str(preds), "--run_id", run_id]
            args += ["--max_workers", str(len(picked)), "--report_dir", tmp]
            started = time.monotonic()
            subprocess.run(args, cwd=tmp, capture_output=True, check=True)
            total["wall"] += time.monotonic() - started
            report = json.loads((Path(tmp) / f"m.{run_id}.json").read_text())
            found = {iid: status for key, status in keys.items() for iid in report[key]}
            for task in picked:
                status = found.get(task.instance_id, EMPTY)
                total["statuses"][(task.instance_id, task.line)] = status
                log = Path(tmp) / "logs/run_evaluation" / run_id / "m" / task.instance_id
                stamps = [STAMP.match(line) for line in _lines(log / "run_instance.log")]
                times = [datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
                         for m in stamps if m]  # fmt: skip
                if status != EMPTY and times:
                    total["seconds"] += (times[-1] - times[0]).total_seconds()
                    total["runs"] += 1
                    total["containers"] += 1
    return total


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


# -- the execution stage (select's): groups in one warm runtime against a fresh one each -----

SCRIPTS = {
    "newest": "from vercmp import newest\n"
    "print('Issue resolved' if newest(['1.9.0', '1.10.0']) == '1.10.0' else 'Issue reproduced')\n",
    "bump": "from vercmp import bump\n"
    "print('Issue resolved' if bump('1.2.3', 'minor') == '1.3.0' else 'Issue reproduced')\n",
}


class ImageWorkspace:
    """Fresh runtimes of an instance's image, its repository at /testbed."""

    def __init__(self, record: dict[str, Any], image: str) -> None:
        self.record, self.image, self.instance_id = record, image, record["instance_id"]

    def open(self, label: str) -> Any:
        from cwm_agent.factory import open_runtime
        from cwm_agent.settings import RuntimeSettings

        settings = RuntimeSettings(runtime="docker", image=self.image, workdir="/testbed",
                                   repo_in_image=True)  # fmt: skip
        return open_runtime(settings, None, f"bench-stage-{label}")


def stage(instances: list[list[Any]]) -> dict[str, dict[str, Any]]:
    from cwm_agent.verification.execute import ExecConfig, execute
    from cwm_agent.verification.records import Candidate, Group, Origin, ReproScript

    modes = {
        "stage: a fresh runtime per group": ExecConfig(warm=False, early_stop=False),
        "stage: one warm runtime": ExecConfig(early_stop=False),
        "stage: one warm runtime, early stop": ExecConfig(),
    }
    totals = {name: {"seconds": 0.0, "runs": 0, "containers": 0, "wall": 0.0, "statuses": {},
                     "fallbacks": []} for name in modes}  # fmt: skip
    for n, tasks in enumerate(instances):
        # What reaches execution in the cascade: patches that parse (the static stage).
        distinct = list({t.sha256: t for t in tasks if _parses(t.patch)}.values())
        groups = [Group(t.sha256[:12], (Candidate(t.instance_id, t.patch, Origin("bench")),),
                        t.patch) for t in distinct]  # fmt: skip
        bug = "newest" if "newest" in tasks[0].record["test_patch"] else "bump"
        scripts = [ReproScript(bug, SCRIPTS[bug])]
        workspace = ImageWorkspace(tasks[0].record, tasks[0].image)
        for name in list(modes) if n % 2 == 0 else list(modes)[::-1]:
            report = execute(workspace, groups, scripts, modes[name], lambda text: None)
            total = totals[name]
            total["seconds"] += report.cost.runtime_seconds
            total["wall"] += report.cost.wall_seconds
            total["runs"] += report.cost.test_runs
            total["containers"] += report.runtimes
            total["fallbacks"] += [] if report.reset.startswith(("verified", "a fresh")) else [1]
            total["statuses"].update({(n, k): v.status for k, v in report.verdicts.items()})
            print(f"{tasks[0].instance_id} {name}: {report.cost.runtime_seconds:.1f} runtime-s",
                  file=sys.stderr)  # fmt: skip
    return totals


def _parses(patch: str) -> bool:
    from cwm_agent.verification.identity import normalize_patch

    try:
        return bool(normalize_patch(patch))
    except ValueError:
        return False
