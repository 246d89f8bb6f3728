"""From the inputs to one ``cascade.Task`` per instance: its issue, its candidates, its code.

The instances come from ``--dataset`` (SWE-bench records, read as `batch` and `evaluate`
read them) or, for one local repository, ``--repo`` with ``--issue-file``. The code: a
clone in ``--repos-dir`` (or ``--repo`` itself) at the base commit, and for execution a
local runtime of it or, with ``--runtime docker``, the record's image. The reproduction
scripts: the batch folders' rollouts of the instance, then ``--tests``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cwm_agent.errors import RuntimeFailure, UsageError
from cwm_agent.settings import RuntimeSettings
from cwm_agent.verification.candidates import Found
from cwm_agent.verification.cascade import Task
from cwm_agent.verification.images import record_image, runtime_for
from cwm_agent.verification.records import Candidate
from cwm_agent.verification.scripts import EVERY, Written, group_scripts
from cwm_agent.verification.workspace import CodeSource

NO_CLONE = "no base code: pass --repos-dir with clones of the repositories"


@dataclass(frozen=True)
class Instances:
    """Where instances and their code come from (the options that say it)."""

    dataset: str | None = None
    split: str = "test"
    repo: Path | None = None
    issue: str | None = None  # the text of --issue-file
    issue_name: str = "issue"  # its file's stem
    instance_id: str | None = None
    repos_dir: Path | None = None
    runtime: RuntimeSettings | None = None  # None: no execution runtime
    image_template: str | None = None

    def identity(self) -> dict[str, Any]:
        """What names the instances in OUT's manifest."""
        if self.repo is not None:
            return {"repo": str(self.repo), "instance_id": self.instance_id}
        return {"dataset": self.dataset, "split": self.split}


def build(
    found: Found, where: Instances, tests: Mapping[str, Sequence[Written]] | None = None
) -> list[Task]:
    """One task per instance with candidates, or with predictions that are all empty (its
    record says there was nothing to choose); ``tests``: ``--tests``' scripts by instance."""
    tasks = _tasks(found, where)
    tests = tests or {}
    for n, task in enumerate(tasks):
        written = [*found.scripts.get(task.instance_id, ()), *tests.get(task.instance_id, ()),
                   *tests.get(EVERY, ())]  # fmt: skip
        scripts, notes = group_scripts(written)
        found.notes.extend(notes)
        tasks[n] = replace(task, scripts=scripts)
    unknown = sorted(set(tests) - {EVERY} - {t.instance_id for t in tasks})
    if unknown:
        found.notes.append(f"--tests: scripts for {len(unknown)} instance(s) without "
                           f"candidates left out ({', '.join(unknown[:3])})")  # fmt: skip
    return tasks


def _tasks(found: Found, where: Instances) -> list[Task]:
    if where.repo is not None:
        return [_local_task(found, where)]
    if where.dataset is None:
        raise UsageError(
            "say where the instances come from",
            hint="--dataset D (SWE-bench records: lite, verified, a file), or --repo REPO "
            "with --issue-file F for one local repository",
        )
    if found.for_one_instance:
        raise UsageError(
            "a folder of patches is for one instance of one repository",
            hint="use --repo REPO --issue-file F with it (not --dataset)",
        )
    return _dataset_tasks(found, where)


def _dataset_tasks(found: Found, where: Instances) -> list[Task]:
    from cwm_agent.verification.sources import locate, read_records

    assert where.dataset is not None
    records: dict[str, dict[str, Any]] = {}
    for place, record in read_records(locate(where.dataset, where.split)):
        if not isinstance(record.get("instance_id"), str):
            raise UsageError(f"{place}: a record needs an instance_id")
        records[record["instance_id"]] = record
    by_id: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in found.candidates:
        by_id[candidate.instance_id].append(candidate)
    unknown = sorted((set(by_id) | set(found.empty)) - set(records))
    if unknown:
        shown = ", ".join(unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        raise UsageError(
            f"{len(unknown)} instance id(s) of the candidates are not in {where.dataset}: {shown}",
            hint="check --dataset and --split (the candidates' instance_id must name its records)",
        )
    tasks = []
    for iid, record in records.items():
        if iid in by_id or iid in found.empty:
            issue = str(record.get("problem_statement") or "")
            code = _record_code(record, where)
            repo = str(record.get("repo") or "")
            candidates = tuple(by_id.get(iid, ()))
            tasks.append(
                Task(iid, issue, candidates, code, record, repo, empty=found.empty.get(iid, 0))
            )
    return tasks


def _record_code(record: dict[str, Any], where: Instances) -> CodeSource:
    commit = record.get("base_commit")
    runtime = where.runtime
    if runtime is not None and runtime.runtime == "docker":
        image = record_image(record, where.image_template)
        runtime = runtime_for(runtime, image, True, str(commit) if commit else None)
    if where.repos_dir is None or not record.get("repo"):
        missing = NO_CLONE if where.repos_dir is None else "the record names no repo"
        return CodeSource(
            runtime=runtime if runtime and runtime.runtime == "docker" else None, missing=missing
        )
    from cwm_agent.verification.checkout import find_clone

    try:
        clone = find_clone(where.repos_dir, str(record["repo"]))
    except RuntimeFailure as exc:
        docker = runtime if runtime and runtime.runtime == "docker" else None
        return CodeSource(runtime=docker, missing=f"{exc.message} ({exc.hint})")
    return CodeSource(clone, str(commit) if commit else None, runtime)


def _local_task(found: Found, where: Instances) -> Task:
    from cwm_agent.runtimes.gitcmd import run_git

    assert where.repo is not None
    if where.issue is None:
        raise UsageError("--repo needs --issue-file F", hint="the issue the candidates fix")
    named = sorted({c.instance_id for c in found.candidates if c.instance_id})
    iid = where.instance_id or (named[0] if len(named) == 1 else where.issue_name)
    others = [n for n in named if n != iid]
    if others:
        raise UsageError(
            f"--repo selects for one instance ({iid}), but the candidates name "
            f"{', '.join(others[:5])} too",
            hint="pass --instance-id, or use --dataset for candidates of many instances",
        )
    try:
        head = run_git(str(where.repo), "rev-parse", "--verify", "HEAD^{commit}").decode().strip()
        top = run_git(str(where.repo), "rev-parse", "--show-toplevel").decode().strip()
    except RuntimeFailure as exc:
        raise UsageError(
            f"--repo {where.repo} is not a git repository with a commit",
            hint=f"the candidates are checked against its HEAD ({exc.message})",
        ) from None
    candidates = tuple(replace(c, instance_id=iid) for c in found.candidates)
    code = CodeSource(Path(top), head, where.runtime)
    record = {"instance_id": iid, "repo": Path(top).name, "base_commit": head}
    return Task(iid, where.issue, candidates, code, record, Path(top).name)
