"""Verification at scale on real SWE-bench Lite instances: the figures of issue 20.

Inputs: the real candidates of ``selection_dev.jsonl`` (published runs, each with its
official ``resolved`` label) of the instances whose image ``build_swebench_images.py``
built (``--template``), their records from ``swebench_lite_test.jsonl``, and the
repositories' bare mirrors (``--mirrors``: the static stage's base code). Four parts,
each saved to ``--results`` as it ends (``--reuse`` renders saved parts without running):

1. ``evaluate --candidates`` (``verify_exec_modes.measure``): a fresh container per
   candidate against one warm container (identical patches once), with and without
   --first-resolved; ``--harness ID...``: the official ``run_evaluation`` too, on those
   instances. Verdicts against the published labels, line by line.
2. The execution stage as ``select`` runs it: the cascade (``cascade.select_instance``)
   with static + group + execute (impacted tests of the record's own test command, one warm
   runtime, early stop) against static + group alone: its cost beside part 1's fresh
   container per candidate (the record's eval script), and which candidate each chooses,
   against the labels.
3. ``--whole-suite ID...`` (part ``whole``): one run of the repository's whole test suite in
   those instances' images, the cost a fresh container per candidate would pay for that.
4. ``bench_select.py`` (static + group on all 1,537 candidates, the reward stage's cost
   against the scripted server), in the same run.

Prints Markdown and writes it into BENCHMARKS.md's ``verify-real`` block (unless
--no-write). Run one heavy job at a time: part 1 alone is hours of test runs.

    python benchmarks/bench_verify_real.py --mirrors /work/.mirror --results /tmp/vr
    python benchmarks/bench_verify_real.py --mirrors /work/.mirror --results /tmp/vr --reuse
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_verify_exec import load, write  # noqa: E402
from build_swebench_images import DATA, TEMPLATE, image_name, mirror_of  # noqa: E402
from verify_real_report import markdown  # noqa: E402


def inputs(data: Path, template: str, only: list[str] | None, folder: Path) -> dict[str, Any]:
    """The candidates (selection_dev order) and records of the instances with an image."""
    rows = [json.loads(line) for line in (data / "selection_dev.jsonl").read_text().splitlines()]
    records = {}
    for line in (data / "swebench_lite_test.jsonl").read_text().splitlines():
        record = json.loads(line)
        records[record["instance_id"]] = record
    wanted = [i for i in dict.fromkeys(r["instance_id"] for r in rows) if not only or i in only]
    present = [i for i in wanted if _image_exists(image_name(template, i))]
    chosen = [r for r in rows if r["instance_id"] in present]
    preds = folder / "preds.jsonl"
    preds.write_text(
        "".join(
            json.dumps(
                {
                    "instance_id": r["instance_id"],
                    "model_name_or_path": r["system"],
                    "model_patch": r["model_patch"],
                }
            )
            + "\n"  # fmt: skip
            for r in chosen
        )
    )
    dataset = folder / "dataset.jsonl"  # the harness takes each record's image
    dataset.write_text(
        "".join(
            json.dumps({**records[i], "image": image_name(template, i)}) + "\n" for i in present
        )
    )
    labels = {f"{r['instance_id']}:{n}": r["resolved"] for n, r in enumerate(chosen, 1)}
    return {"preds": preds, "dataset": dataset, "labels": labels, "rows": chosen,
            "records": {i: records[i] for i in present}}  # fmt: skip


def _image_exists(image: str) -> bool:
    proc = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
    return proc.returncode == 0


def flat(totals: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """JSON-ready: statuses keyed ``instance:line``."""
    out = {}
    for name, total in totals.items():
        statuses = {f"{k[0]}:{k[1]}": v for k, v in total["statuses"].items()}
        out[name] = {**total, "statuses": statuses, "fallbacks": len(total["fallbacks"])}
    return out


def part_evaluate(got: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from verify_exec_modes import harness, measure

    instances = load(got["dataset"], got["preds"], None)
    per_instance: dict[str, dict[str, Any]] = {}
    totals = measure(instances, args.timeout, per_instance)
    if args.harness:
        some = [tasks for tasks in instances if tasks[0].instance_id in args.harness]
        found = harness(some, got["dataset"])
        totals["official harness, a fresh container per candidate"] = {**found, "n": len(some)}
    return {"totals": flat(totals), "per_instance": per_instance}


def part_stage(got: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from verify_real_stage import select_both

    out: dict[str, Any] = {"instances": {}}
    by_instance: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for n, row in enumerate(got["rows"], 1):
        by_instance[row["instance_id"]].append((n, row))
    for iid, rows in by_instance.items():
        record = got["records"][iid]
        mirror = mirror_of(args.mirrors, record["repo"])
        found = select_both(record, rows, mirror, image_name(args.template, iid))
        out["instances"][iid] = found
        print(f"{iid}: stage {found['execute']['cost']}", file=sys.stderr, flush=True)
    return out


def part_whole(got: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from verify_real_stage import whole_suite

    out: dict[str, Any] = {"instances": {}}
    for iid in args.whole_suite or ():
        found = whole_suite(got["records"][iid], image_name(args.template, iid))
        out["instances"][iid] = found
        print(f"{iid}: whole suite {found.get('seconds')}", file=sys.stderr, flush=True)
        # Long runs: what is done survives an interrupted part (rename it to whole.json).
        (args.results / "whole.partial.json").write_text(json.dumps(out, indent=1))
    return out


def part_select(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_select.py"),
            "--data",
            str(args.data),
            "--mirrors",
            str(args.mirrors),
            "--reps",
            "1",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    )
    return {"markdown": proc.stdout.strip(), "wall": time.monotonic() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--template", default=TEMPLATE, help="the instance images' names")
    parser.add_argument("--instances", nargs="*", help="instance ids (default: every imaged)")
    parser.add_argument("--results", type=Path, required=True, help="each part's JSON")
    parser.add_argument("--parts", default="evaluate,stage,whole,select")
    parser.add_argument("--reuse", action="store_true", help="parts already saved are kept")
    parser.add_argument(
        "--harness", nargs="*", metavar="ID", help="part 1: the official harness on these"
    )
    parser.add_argument(
        "--whole-suite", nargs="*", metavar="ID", help="part whole: these instances' suite, once"
    )
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    got = inputs(args.data, args.template, args.instances, args.results)
    runs = {"evaluate": part_evaluate, "stage": part_stage, "whole": part_whole}
    saved: dict[str, Any] = {}
    for part in args.parts.split(","):
        path = args.results / f"{part}.json"
        if not (args.reuse and path.exists()):
            started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            found = part_select(args) if part == "select" else runs[part](got, args)
            found["started"] = started
            path.write_text(json.dumps(found, indent=1))
        saved[part] = json.loads(path.read_text())
    text = markdown(saved, got, args)
    print(text)
    if not args.no_write:
        write(text, "verify-real")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
