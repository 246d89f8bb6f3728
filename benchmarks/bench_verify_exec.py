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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "docker"))

import swebench_records as sr  # noqa: E402
from report import machine, revision  # noqa: E402
from verify_exec_modes import harness, measure, stage  # noqa: E402

from cwm_agent.evaluate import tasks as tasks_mod  # noqa: E402
from cwm_agent.evaluate.candidates import by_instance  # noqa: E402
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
