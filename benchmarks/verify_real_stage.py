"""Part 2 of `bench_verify_real.py`: the cascade on one real instance, with the execution
stage (as `select` runs it) and without, and the whole test suite once for scale.

The cascade gets what `select --runtime docker` gives it: the candidates in input order,
the mirror at ``base_commit`` for the static stage, the instance's image (repository at
/testbed) for execution, and the record; no verifier model (reward does not run) and no
reproduction scripts (the candidates come from published runs, not from rollouts).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any


def select_both(
    record: dict[str, Any], rows: list[tuple[int, dict[str, Any]]], mirror: Path, image: str
) -> dict[str, Any]:
    """{"static_group": ..., "execute": ...}: each run's choice, its label and its cost."""
    from cwm_agent.settings import RuntimeSettings
    from cwm_agent.verification.cascade import Plan, Task, select_instance
    from cwm_agent.verification.execute import ExecConfig, execute
    from cwm_agent.verification.images import runtime_for
    from cwm_agent.verification.records import Candidate, Origin
    from cwm_agent.verification.workspace import CodeSource

    iid, base = record["instance_id"], record["base_commit"]
    candidates = tuple(
        Candidate(
            iid, row["model_patch"], Origin("selection_dev.jsonl", line=n, model=row["system"])
        )
        for n, row in rows
    )
    runtime = runtime_for(RuntimeSettings(runtime="docker"), image, True, base)
    code = CodeSource(clone=mirror, commit=base, runtime=runtime)
    task = Task(iid, record["problem_statement"], candidates, code, record, record["repo"])
    no_reward = {"reward": "no verifier model in this benchmark"}
    config = ExecConfig()

    def executor(workspace: Any, groups: Any, scripts: Any, *, note: Any) -> Any:
        return execute(workspace, groups, scripts, config, note)

    def note(text: str) -> None:
        print(f"  {iid}: {text}", file=sys.stderr, flush=True)

    plain = select_instance(task, Plan(("static", "group"), skipped=no_reward))
    plan = Plan(("static", "group", "execute"), skipped=no_reward, executor=executor)
    full = select_instance(task, plan, note)
    labels = [row["resolved"] for _, row in rows]
    return {"static_group": summary(plain.record, labels),
            "execute": summary(full.record, labels)}  # fmt: skip


def summary(record: dict[str, Any], labels: list[bool]) -> dict[str, Any]:
    """The choice and its label, the groups' verdicts with their members' labels, cost."""
    chosen = record["chosen"]
    stage = record["stages"].get("execute", {})
    groups = []
    for group in record["groups"]:
        members = group["members"]
        groups.append(
            {
                "key": group["key"],
                "members": members,
                "rank": group.get("rank"),
                "labels": [labels[n - 1] for n in members],
                "execute": group.get("execute"),
                "pruned_at": group.get("pruned_at"),
                "reason": group.get("reason"),
            }  # fmt: skip
        )
    return {
        "chosen": chosen and chosen["candidate"],
        "chosen_resolved": bool(chosen) and labels[chosen["candidate"] - 1],
        "decided_by": chosen and chosen["decided_by"],
        "funnel": record["funnel"],
        "warnings": record["warnings"],
        "cost": record["cost"],
        "groups": groups,
        "tests": stage.get("tests", []),
        "test_command": stage.get("test_command"),
        "reset": stage.get("reset"),
        "early_stopped": stage.get("early_stopped"),
        "runs": [
            {
                k: v
                for k, v in run.items()
                if k in ("group", "check", "exit_code", "outcome", "seconds", "tests")
            }
            for run in stage.get("runs", [])
        ],
    }


def whole_suite(record: dict[str, Any], image: str, timeout: float = 3600.0) -> dict[str, Any]:
    """One run of the repository's whole test suite (its own test command, no file
    named) in a fresh container of the image: what one candidate costs that way."""
    from cwm_agent.factory import open_runtime
    from cwm_agent.settings import RuntimeSettings
    from cwm_agent.verification.testcmd import from_eval_script

    command = from_eval_script(record)
    if command is None:
        return {"error": "the eval script's shape is not known"}
    settings = RuntimeSettings(
        runtime="docker", image=image, workdir="/testbed", repo_in_image=True
    )
    started = time.monotonic()
    runtime = open_runtime(settings, None, f"bench-whole-{record['instance_id']}")
    try:
        script = f"{command.preamble}\n{command.command} >/tmp/whole.log 2>&1; echo exit=$?"
        result = runtime.run(script, timeout)
        tail = runtime.run("tail -n 3 /tmp/whole.log", 60).output
    finally:
        runtime.close()
    return {"seconds": time.monotonic() - started, "command": command.command,
            "exit": result.output.strip()[-12:], "tail": tail[-400:]}  # fmt: skip
