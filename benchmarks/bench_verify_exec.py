"""Execution cost of grading many candidates: `evaluate --candidates` (one warm container
per instance, identical patches once, optionally --first-resolved) against grading every
candidate in a fresh container (what one prediction per run costs, as `evaluate` without
--candidates and the official harness grade).

Figures per instance: runtime-seconds (how long containers were held open: start-up,
snapshot, eval scripts, resets) and test runs (eval scripts run); the verdicts must be the
same line by line (--first-resolved: on the lines it grades). Everything runs in this
process, one instance at a time, so the modes compete for nothing but the machine.

Inputs: by default the SWE-bench-shaped test image's records (tests/docker/swebench_records.py)
with K candidates per instance: right and wrong patches, byte-different variants of them,
exact duplicates, a patch that does not apply and an empty one, in an order that moves the
first right one. For real SWE-bench images give --dataset and --preds (any number of lines
per instance) and, where the images are named otherwise, --image-template.

With --stage, the execution stage (`verification/execute.py`, what `select` runs) instead:
the distinct patches that parse as groups, the record's own test command and parser and a
reproduction script, a fresh runtime per group against one warm runtime (with and without
early stop). Each kind of run writes its own block of BENCHMARKS.md unless --no-write.

    python benchmarks/bench_verify_exec.py --harness            # 4 instances x 8 candidates
    python benchmarks/bench_verify_exec.py --instances 2 --candidates 6 --no-write
    python benchmarks/bench_verify_exec.py --like ../shared/data/selection_dev.jsonl --instances 8
    python benchmarks/bench_verify_exec.py --stage
    python benchmarks/bench_verify_exec.py --dataset lite.jsonl --preds cands.jsonl --no-write
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "docker"))

import swebench_records as sr  # noqa: E402
from report import machine, revision  # noqa: E402

from cwm_agent.evaluate import tasks as tasks_mod  # noqa: E402
from cwm_agent.evaluate.candidates import by_instance  # noqa: E402
from cwm_agent.evaluate.grade import EMPTY, Grader  # noqa: E402
from cwm_agent.evaluate.warm_grading import grade_instance  # noqa: E402
from cwm_agent.verification.sources import locate, read_records  # noqa: E402

MD = ROOT / "BENCHMARKS.md"
# One instance's candidates, rotated by the instance's number (the first right one moves).
POOL = ["wrong", "wrong~1", "garbage", "wrong", "gold~1", "wrong~2", "gold", "empty"]


def variant(patch: str, n: int) -> str:
    """The same change with different bytes: a comment on its added line."""
    lines = patch.splitlines(keepends=True)
    at = next(
        i for i, line in enumerate(lines) if line.startswith("+") and not line.startswith("+++")
    )
    lines[at] = lines[at].rstrip("\n") + f"  # v{n}\n"
    return "".join(lines)


def generated(folder: Path, instances: int, per: int, image: str) -> tuple[Path, Path]:
    dataset = sr.write_jsonl(folder / "dataset.jsonl", sr.records(instances, image))
    rows = []
    for n in range(1, instances + 1):
        for k in range(per):
            kind = POOL[(k + n) % len(POOL)]
            base, _, number = kind.partition("~")
            row = sr.prediction(n, base, f"system-{k}")
            if number:
                row["model_patch"] = variant(row["model_patch"], int(number))
            rows.append(row)
    return dataset, sr.write_jsonl(folder / "preds.jsonl", rows)


def like(folder: Path, source: Path, instances: int, image: str) -> tuple[Path, Path]:
    """Candidates shaped as ``source``'s (selection_dev.jsonl: real candidates with their
    official verdicts): its first instances, their candidates in its order, each distinct
    real patch a distinct variant here, right where the real one resolved, else wrong."""
    import json

    real: dict[str, list[dict[str, Any]]] = {}
    for line in source.read_text().splitlines():
        row = json.loads(line)
        if row["instance_id"] in real or len(real) < instances:
            real.setdefault(row["instance_id"], []).append(row)
    dataset = sr.write_jsonl(folder / "dataset.jsonl", sr.records(len(real), image))
    rows = []
    for n, candidates in enumerate(real.values(), 1):
        numbers: dict[str, int] = {}
        for row in candidates:
            number = numbers.setdefault(row["model_patch"], len(numbers) + 1)
            kind = "gold" if row["resolved"] else "wrong"
            pred = sr.prediction(n, kind, row["system"])
            pred["model_patch"] = variant(pred["model_patch"], number)
            rows.append(pred)
    return dataset, sr.write_jsonl(folder / "preds.jsonl", rows)


def load(dataset: Path, preds: Path, template: str | None) -> list[list[Any]]:
    records = [record for _, record in read_records(locate(str(dataset)))]
    lines = tasks_mod.read_lines(preds)
    tasks = tasks_mod.match([p for _, p in lines], records, template, [n for n, _ in lines])
    return by_instance(tasks)


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


def measure(instances: list[list[Any]], timeout: float) -> dict[str, dict[str, Any]]:
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
                total["wall"] += time.monotonic() - started
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


def agree(totals: dict[str, dict[str, Any]], reference_mode: str) -> bool:
    reference = totals[reference_mode]["statuses"]
    return all(
        status == reference[key]
        for total in totals.values()
        for key, status in total["statuses"].items()
        if status not in ("skipped", "not_run")
    )


def section(totals: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    n, lines_count = meta["instances"], meta["lines"]
    names = list(totals)
    base, best = totals[names[0]], totals[names[2]]  # a fresh runtime each; everything on
    rows = [
        f"## Verification at scale: {meta['title']}",
        "",
        f"Measured {meta['date']} on {meta['machine']} (revision {meta['revision']}), by "
        f"`benchmarks/bench_verify_exec.py{meta['flags']}`: {lines_count} candidates for {n} "
        f"instances ({meta['inputs']}){meta['how']}, one instance at a time, the modes "
        "interleaved.",
        "",
        "| mode | runtime-s / instance | test runs / instance | runtimes | wall (s) |",
        "|---|--:|--:|--:|--:|",
    ]
    for name, total in totals.items():
        rows.append(
            f"| {name} | {total['seconds'] / n:.1f} | {total['runs'] / n:.1f} | "
            f"{total['containers']} | {total['wall']:.1f} |"
        )
    ratio = base["seconds"] / best["seconds"] if best["seconds"] else float("inf")
    runs = base["runs"] / best["runs"] if best["runs"] else float("inf")
    same = "yes, line by line" if meta["same"] else "**NO**"
    fallbacks = sum(len(t["fallbacks"]) for t in totals.values())
    official = totals.get("official harness, a fresh container per candidate")
    against = ""
    if official and best["seconds"]:
        against = (
            f" Against the official harness graded column by column (its `docker stop` waits "
            f"15 s per container): **{official['seconds'] / best['seconds']:.1f}×**."
        )
    rows += [
        "",
        f"{meta['best']} costs "
        f"**{ratio:.1f}×** fewer runtime-seconds and {runs:.1f}× fewer test runs than a fresh "
        f"{meta['unit']} (target: at least 5×). Same verdicts: {same}; resets that "
        f"could not be verified: {fallbacks}.{against}",
        "",
    ]
    out = []
    for line in rows:
        keep = line.startswith(("|", "#")) or not line
        out += [line] if keep else textwrap.wrap(line, 92, break_on_hyphens=False)
    return "\n".join(out)


def write(markdown: str, name: str = "verify-exec") -> None:
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{markdown}\n{end}"
    text = MD.read_text()
    if start in text and end in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    MD.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--candidates", type=int, default=8, help="per instance (generated)")
    parser.add_argument("--image", default=os.environ.get("CWM_TEST_SWEBENCH_IMAGE", sr.IMAGE))
    parser.add_argument("--dataset", type=Path, help="records (real SWE-bench images)")
    parser.add_argument("--preds", type=Path, help="candidates for --dataset, any per instance")
    parser.add_argument("--image-template")
    parser.add_argument(
        "--like",
        type=Path,
        help="shape the candidates as this file's "
        "(selection_dev.jsonl: real duplicates and verdicts, in its order)",
    )
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument(
        "--harness",
        action="store_true",
        help="also the official harness, one run per column of candidates",
    )
    parser.add_argument(
        "--stage",
        action="store_true",
        help="the execution stage instead: the distinct patches as groups",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-verify-inputs-") as tmp:
        if args.dataset and args.preds:
            dataset, preds, what = args.dataset, args.preds, f"{args.preds.name}"
        elif args.like:
            dataset, preds = like(Path(tmp), args.like, args.instances, args.image)
            what = f"shaped as the first {args.instances} instances of {args.like.name}: its "
            what += "candidates in its order, each distinct patch a distinct one here, right "
            what += "where the real one resolved"
        else:
            dataset, preds = generated(Path(tmp), args.instances, args.candidates, args.image)
            what = "the SWE-bench-shaped test image's records; right, wrong, variant, duplicate, "
            what += "unappliable and empty patches"
        instances = load(dataset, preds, args.image_template)
        totals = stage(instances) if args.stage else measure(instances, args.timeout)
        if args.harness and not args.stage:
            totals["official harness, a fresh container per candidate"] = harness(
                instances, dataset
            )
    meta = {
        "instances": len(instances),
        "lines": sum(len(t) for t in instances),
        "inputs": what,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "revision": revision(),
        "same": agree(totals, next(iter(totals))),
        "best": "One warm runtime with early stop"
        if args.stage
        else "Warm, deduplicated and stopped at the first resolved candidate, grading",
        "unit": "runtime per group" if args.stage else "container per candidate",
        "flags": " --stage" * args.stage
        + " --like" * bool(args.like)
        + " --harness" * args.harness,
        "how": "; their distinct patches as groups in `verification/execute.py` (Docker runtime at "
        "/testbed, the record's own test command and parser, a reproduction script)"
        if args.stage
        else "",
        "title": ("the execution stage, warm" if args.stage else "`evaluate --candidates`")
        + (", candidates shaped as real ones" if args.like else ""),
    }
    markdown = section(totals, meta)
    print(markdown)
    if not args.no_write:  # a shaped run has a block of its own
        name = "verify-exec" + ("-stage" if args.stage else "") + ("-like" if args.like else "")
        write(markdown, name)
    return 0 if meta["same"] else 1


if __name__ == "__main__":
    sys.exit(main())
