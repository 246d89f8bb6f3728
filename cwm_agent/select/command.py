"""What `cwm-agent select` does once its options are read: inputs → tasks → plan → run →
OUT (``cli.py`` holds the options and the help)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from cwm_agent.console import say
from cwm_agent.costs import usd
from cwm_agent.errors import CwmError, Interrupted, ModelError, UsageError
from cwm_agent.options import read_issue, resolve_options
from cwm_agent.select import report, stages, tasks
from cwm_agent.select.display import make_display
from cwm_agent.select.runner import Recorder, ThreadRunner
from cwm_agent.select.store import SelectionStore, finished
from cwm_agent.select.summary import Tally, summarize
from cwm_agent.settings import record, verifier_prices
from cwm_agent.verification import score_cache
from cwm_agent.verification.candidates import read_inputs
from cwm_agent.verification.cascade import Task
from cwm_agent.verification.execute import ExecConfig, config_from
from cwm_agent.verification.reward import VerifierConfig, load_template, verifier_settings
from cwm_agent.verification.scripts import read_tests


def run(opts: dict[str, Any]) -> None:
    cfg = resolve_options(opts)
    found = read_inputs(opts["inputs"])
    where = _instances(opts, cfg)
    verifier = _verifier(opts, cfg)
    spec = stages.plan(stages.parse(opts["stages"]), verifier, _execution(cfg, where), opts["keep"])
    spec = replace(spec, emit=opts["emit"])
    if opts["tests"] and "execute" not in spec.stages:
        raise UsageError(
            f"--tests is for the execute stage, which does not run ({spec.skipped['execute']})",
            hint="give a runtime (--repos-dir, --repo or --runtime docker), or leave out --tests",
        )
    selected = tasks.build(found, where, read_tests(opts["tests"]))
    asked = opts["stages"] is not None or bool(opts["tests"])
    spec, said = stages.for_local_runtime(spec, selected, asked)
    found.notes.extend([said] if said else [])
    store = SelectionStore(opts["outdir"].resolve())
    store.open()
    try:
        store.check_manifest(_made_by(opts, where, spec))
        _select(store, spec, selected, found.notes, opts)
    finally:
        store.close()


def _instances(opts: dict[str, Any], cfg: Any) -> tasks.Instances:
    if opts["repo"] is not None and opts["dataset"] is not None:
        raise UsageError("give --dataset or --repo, not both")
    if opts["split"] is not None and opts["dataset"] is None:
        raise UsageError("--split is for --dataset", hint="a file holds one split")
    if opts["issue_file"] is not None and opts["repo"] is None:
        raise UsageError("--issue-file is for --repo", hint="records carry their issues")
    runtime = record("runtime", cfg)
    if runtime.tmp_size is not None:  # refused now where it cannot apply
        from cwm_agent.runtimes.local_setup import check_tmp_size

        check_tmp_size(runtime.tmp_size, runtime.runtime, runtime.sandbox)
    if runtime.runtime == "local" and opts["image_template"]:
        raise UsageError("--image-template is for --runtime docker", hint="add --runtime docker")
    issue, name = None, "issue"
    if opts["repo"] is not None and opts["issue_file"] is not None:
        issue = read_issue(None, opts["issue_file"])
        name = Path(opts["issue_file"]).stem if opts["issue_file"] != "-" else "issue"
    return tasks.Instances(
        dataset=opts["dataset"],
        split=opts["split"] or "test",
        repo=opts["repo"].resolve() if opts["repo"] else None,
        issue=issue,
        issue_name=name,
        instance_id=opts["instance_id"],
        repos_dir=opts["repos_dir"].resolve() if opts["repos_dir"] else None,
        runtime=runtime,
        image_template=opts["image_template"],
    )


def _execution(cfg: Any, where: tasks.Instances) -> ExecConfig | None:
    """The execution stage's config; None without a runtime (a local one needs a clone)."""
    runtime = where.runtime
    local = where.repos_dir is not None or where.repo is not None
    if runtime is None or (runtime.runtime != "docker" and not local):
        return None
    return config_from(record("scaling", cfg))


def _verifier(opts: dict[str, Any], cfg: Any) -> VerifierConfig | None:
    name = cfg["verifier_model"] or cfg["model"]
    if not name:
        return None
    base = replace(record("model", cfg), name=name)
    settings = verifier_settings(base, cfg["verifier_model"], cfg["verifier_base_url"])
    cache = opts["verifier_cache"] or score_cache.default_folder()
    return VerifierConfig(
        settings,
        workers=opts["verifier_workers"],
        max_tokens=opts["verifier_max_tokens"],
        cache_dir=cache.resolve(),
        prompts=cfg["prompts"],
        prices=verifier_prices(cfg),
    )


def _made_by(opts: dict[str, Any], where: tasks.Instances, spec: stages.PlanSpec) -> dict[str, Any]:
    """What makes OUT: a resume with other inputs, instances, stages or verifier is refused."""
    verifier = None
    if spec.verifier is not None:
        _, template_sha = load_template(spec.verifier.prompts)
        verifier = {"model": spec.verifier.model.name, "template_sha256": template_sha}
    execution = None
    if spec.execution is not None:  # all of it changes verdicts: a resume must not mix them
        tests = [str(Path(t).resolve()) for t in opts["tests"]]
        runtime = where.runtime.runtime if where.runtime is not None else None
        execution = {**asdict(spec.execution), "tests": tests, "runtime": runtime,
                     "image_template": where.image_template}  # fmt: skip
    return {
        "inputs": [str(Path(i).resolve()) for i in opts["inputs"]],
        "instances": where.identity(),
        "stages": list(spec.stages),
        "keep": spec.keep,
        "emit": spec.emit,
        "verifier": verifier,
        "execution": execution,
    }


def _select(
    store: SelectionStore,
    spec: stages.PlanSpec,
    selected: list,
    notes: list[str],
    opts: dict[str, Any],
) -> None:
    earlier = store.repair()
    done = finished(earlier) & {t.instance_id for t in selected}
    todo = [t for t in selected if t.instance_id not in done]
    tally = Tally(len(todo), sum(len(t.candidates) for t in todo), len(done))
    started = time.monotonic()
    with make_display(tally, opts["quiet"]) as display:
        for note in notes:
            display.message(f"note: {note}")
        display.message(
            f"select: {len(selected)} instance(s), {len(done)} already finished, {len(todo)} to "
            f"run; stages {', '.join(spec.stages)}"
            + "".join(f"; {s} not run ({why})" for s, why in spec.skipped.items())
        )
        recorder = Recorder(store, tally, display)
        try:
            if opts["executor"] == "ray":
                from cwm_agent.select.ray_runner import run_ray

                run_ray(spec, recorder, todo, opts["workers"], opts["ray_address"])
            else:
                ThreadRunner(spec, recorder).run(todo, opts["workers"])
        except (Interrupted, KeyboardInterrupt):
            _finish(store, spec, selected, opts, time.monotonic() - started, quiet=True)
            raise
    summary = _finish(store, spec, selected, opts, time.monotonic() - started)
    _tell(summary, store, recorder.failed, opts)


def _finish(
    store: SelectionStore,
    spec: stages.PlanSpec,
    selected: list[Task],
    opts: dict[str, Any],
    wall: float,
    quiet: bool = False,
) -> dict[str, Any]:
    ids = {t.instance_id for t in selected}
    records = [r for iid, r in store.repair().items() if iid in ids]
    info = {
        "outdir": str(store.outdir),
        "stages": spec.describe(),
        "verifier": None if spec.verifier is None else spec.verifier.model.name,
        "wall_seconds": round(wall, 3),
    }
    summary = summarize(records, info)
    store.write(store.summary_path, json.dumps(summary, indent=2, ensure_ascii=False))
    facts = [("output", str(store.outdir)), ("inputs", ", ".join(opts["inputs"]))]
    facts += [("stages run", ", ".join(spec.stages))]
    facts += [(f"{s} not run", why) for s, why in spec.skipped.items()]
    facts += [("verifier", str(info["verifier"] or "none")), ("instances", str(len(records)))]
    store.write(store.report_path, report.render(summary, records, facts))
    return summary


def _tell(
    summary: dict[str, Any], store: SelectionStore, failed: int, opts: dict[str, Any]
) -> None:
    for warning in summary["warnings"]:
        shown = (
            warning["example"] if warning["instances"] == 1 else f"{warning['example']} (and alike)"
        )
        say(f"WARNING ({warning['instances']} instance(s)): {shown}")
    if not opts["quiet"]:
        funnel = " -> ".join(f"{k} {v}" for k, v in summary["funnel"].items())
        spent = (summary.get("cost") or {}).get("usd")
        spent_text = f"; the verifier cost {usd(spent)}" if spent is not None else ""
        say(
            f"selected {summary['chosen']} of {summary['instances']} instance(s): "
            f"{funnel}{spent_text}; {store.preds_path}, {store.report_path}"
        )
    if opts["as_json"]:
        sys.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    if summary["retry"]:
        raise ModelError(
            f"the verifier failed after retries for {len(summary['retry'])} instance(s) "
            f"({', '.join(summary['retry'][:3])}): their choice fell to weaker signals",
            "check --verifier-base-url and the server, then re-run the same command to retry them",
        )
    if failed:  # exit 1: instances left without a record (the reasons were said as they came)
        raise CwmError(
            f"{failed} instance(s) failed and have no record in selection.jsonl",
            "their errors are above; re-run the same command to retry them",
        )
