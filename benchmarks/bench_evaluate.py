"""Grading throughput: `cwm-agent evaluate` beside the official harness, same inputs.

Both grade the same predictions (right and wrong patches, alternating) of the same records
in the same local image, the SWE-bench-shaped test image of `scripts/provision-docker.sh`
(records from tests/docker/swebench_records.py), with the same number of workers: the
harness as its users run it (`python -m swebench.harness.run_evaluation`, which finds the
image on the engine and neither builds nor pulls it), then `cwm-agent evaluate`, in
alternation when --reps > 1. Figures: wall time, instances per minute, the verdicts (they
must be the same, instance by instance), and how long the harness spends stopping each
container (from its own run_instance.log timestamps). The result goes to its section of
BENCHMARKS.md unless --no-write.

    python benchmarks/bench_evaluate.py                  # 12 instances, 2 workers
    python benchmarks/bench_evaluate.py --instances 4 --workers 1 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "docker"))

import swebench_records as sr  # noqa: E402
from report import machine, revision  # noqa: E402

START, END = "<!-- bench:evaluate:start -->", "<!-- bench:evaluate:end -->"
MD = ROOT / "BENCHMARKS.md"
KEYS = ("resolved_ids", "unresolved_ids", "error_ids", "empty_patch_ids")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - \w+ - (.*)$")


def inputs(folder: Path, count: int, image: str) -> tuple[Path, Path]:
    dataset = sr.write_jsonl(folder / "dataset.jsonl", sr.records(count, image))
    kinds = ["gold" if n % 4 in (1, 2) else "wrong" for n in range(1, count + 1)]
    rows = [sr.prediction(n, kind, "bench") for n, kind in enumerate(kinds, 1)]
    return dataset, sr.write_jsonl(folder / "preds.jsonl", rows)


def run_harness(folder: Path, dataset: Path, preds: Path, workers: int) -> dict:
    folder.mkdir()
    args = [sys.executable, "-m", "swebench.harness.run_evaluation", "--dataset_name", str(dataset)]
    args += ["--predictions_path", str(preds), "--run_id", "bench", "--max_workers", str(workers)]
    args += ["--report_dir", str(folder)]
    wall = timed(args, folder)
    logs = sorted(
        (folder / "logs" / "run_evaluation" / "bench" / "bench").glob("*/run_instance.log")
    )
    stops = [s for s in (stop_seconds(p) for p in logs) if s is not None]
    return {"wall": wall, "report": read(folder / "bench.bench.json"), "stops": stops}


def run_ours(folder: Path, dataset: Path, preds: Path, workers: int) -> dict:
    args = [sys.executable, "-m", "cwm_agent", "evaluate", str(preds), "-d", str(dataset)]
    args += ["-o", str(folder), "--workers", str(workers), "-q"]
    wall = timed(args, folder.parent)
    return {"wall": wall, "report": read(folder / "report.json"), "stops": []}


def timed(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(args[:4])} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return time.perf_counter() - started


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def stop_seconds(log: Path) -> float | None:
    """From "Attempting to stop container" to "Attempting to remove container"."""
    times = {}
    for line in log.read_text(errors="replace").splitlines():
        match = STAMP.match(line)
        if match:
            for key, phrase in (("stop", "Attempting to stop"), ("remove", "Attempting to remove")):
                if match.group(2).startswith(phrase):
                    times[key] = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
    if "stop" not in times or "remove" not in times:
        return None
    return (times["remove"] - times["stop"]).total_seconds()


def section(res: dict) -> str:
    n, workers = res["instances"], res["workers"]
    theirs, ours = res["harness"], res["ours"]
    per_min = lambda wall: 60 * n / wall  # noqa: E731
    ratio = statistics.median(theirs["walls"]) / statistics.median(ours["walls"])
    stop = f"{statistics.median(theirs['stops']):.1f} s" if theirs["stops"] else "n/a"
    same = "yes, instance by instance" if res["same"] else "**NO**"
    lines = [
        "## Grading: `cwm-agent evaluate` beside the official harness",
        "",
        f"Measured {res['date']} on {res['machine']} (revision {res['revision']}), by "
        f"`benchmarks/bench_evaluate.py`: {n} predictions (right and wrong patches) of the "
        "SWE-bench-shaped test image's records, graded in that local image by each, "
        f"{workers} worker(s), median of {res['reps']} run(s).",
        "",
        "| grader | wall (s) | instances / min | resolved | unresolved | errors |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, run in (
        (f"swebench {res['swebench']} `run_evaluation`", theirs),
        ("`cwm-agent evaluate`", ours),
    ):
        wall = statistics.median(run["walls"])
        report = run["report"]
        lines.append(
            f"| {name} | {wall:.1f} | {per_min(wall):.1f} | {len(report['resolved_ids'])} | "
            f"{len(report['unresolved_ids'])} | {len(report['error_ids'])} |"
        )
    lines += [
        "",
        f"`cwm-agent evaluate` grades **{ratio:.1f}×** the harness's instances per minute "
        f"(target: at least 4×); the same verdicts: {same}. The harness spends a median "
        f"{stop} per instance in `docker stop --time=15` (its containers' PID 1, `tail -f "
        "/dev/null`, ignores SIGTERM, so every stop waits out the 15 s); `evaluate` removes "
        "its container with SIGKILL once the eval script has ended, and copies files in from "
        "memory. Everything that decides a verdict (test spec, apply fallbacks, eval script, "
        "log parser) is swebench's own in both.",
        "",
    ]
    return "\n".join(wrapped(lines))


def wrapped(lines: list[str]) -> list[str]:
    """Prose at 92 columns, as the rest of BENCHMARKS.md; tables and headings as they are."""
    out = []
    for line in lines:
        keep = line.startswith(("|", "#")) or not line
        out += [line] if keep else textwrap.wrap(line, 92, break_on_hyphens=False)
    return out


def write(markdown: str) -> None:
    block = f"{START}\n{markdown}{END}"
    text = MD.read_text()
    if START in text and END in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    MD.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--image", default=os.environ.get("CWM_TEST_SWEBENCH_IMAGE", sr.IMAGE))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    from importlib.metadata import version

    runs: dict[str, dict] = {
        "harness": {"walls": [], "stops": []},
        "ours": {"walls": [], "stops": []},
    }
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        work = Path(tmp)
        dataset, preds = inputs(work, args.instances, args.image)
        for rep in range(args.reps):
            order = [("harness", run_harness), ("ours", run_ours)]
            for name, run in order if rep % 2 == 0 else order[::-1]:
                got = run(work / f"{name}-{rep}", dataset, preds, args.workers)
                runs[name]["walls"].append(got["wall"])
                runs[name]["stops"] += got["stops"]
                runs[name]["report"] = got["report"]
                print(f"{name}: {got['wall']:.1f} s", file=sys.stderr)
    same = all(runs["harness"]["report"][k] == runs["ours"]["report"][k] for k in KEYS)
    res = {
        "instances": args.instances,
        "workers": args.workers,
        "reps": args.reps,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "revision": revision(),
        "swebench": version("swebench"),
        "same": same,
        **runs,
    }
    markdown = section(res)
    print(markdown)
    if not args.no_write:
        write(markdown)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
