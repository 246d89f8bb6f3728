"""Throughput of `cwm-agent batch`: 64 instances, a scripted model with a fixed reply delay.

Each instance is a SWE-bench-style record solved against a clone in --repos-dir (so the
per-instance checkout at base_commit is included): four model replies (edit, `git diff >
fix.patch`, submit, summary), each answered after --delay seconds. The real CLI runs in a
subprocess per worker count; its peak RSS comes from os.wait4 (the largest process of its
tree: the batch process itself, or one of its shells). Prints a markdown table.

    python benchmarks/bench_batch.py                    # 64 instances, 50 ms, 1/4/8 workers
    python benchmarks/bench_batch.py --instances 16 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from batch_support import Scripts, fix_script, issue, make_repo  # noqa: E402

from cwm_agent.scripted_server import ScriptedServer  # noqa: E402

REPLIES_PER_INSTANCE = 4


def make_input(workdir: Path, count: int) -> tuple[Path, Path, list[str]]:
    repos = workdir / "repos"
    base = make_repo(repos / "bench__calc")
    ids = [f"bench__calc-{n:03d}" for n in range(count)]
    records = [
        {"instance_id": i, "repo": "bench/calc", "base_commit": base, "problem_statement": issue(i)}
        for i in ids
    ]
    input_path = workdir / "instances.jsonl"
    input_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return input_path, repos, ids


def run_batch(input_path: Path, repos: Path, outdir: Path, workers: int, base_url: str) -> dict:
    env = {**os.environ, "CWM_AGENT_HOME": str(outdir.parent / "home")}
    args = [sys.executable, "-m", "cwm_agent", "batch", str(input_path), "-o", str(outdir)]
    args += ["--repos-dir", str(repos), "--workers", str(workers), "--max-steps", "8"]
    args += ["--model", "bench", "--base-url", base_url, "-q"]
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    summary = json.loads((outdir / "summary.json").read_text())
    if proc.returncode != 0 or summary["finished"] != summary["instances"]:
        raise SystemExit(f"batch failed (exit {proc.returncode}):\n{stderr}\n{summary}")
    cpu = usage.ru_utime + usage.ru_stime  # the batch process and every process it reaped
    return {"wall": wall, "cpu": cpu, "peak_mib": usage.ru_maxrss / 1024, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.05, help="Seconds per model reply.")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        workdir = Path(tmp)
        input_path, repos, ids = make_input(workdir, args.instances)
        scripts = Scripts({i: fix_script(delay=args.delay) for i in ids})
        rows = []
        with ScriptedServer(scripts) as server:
            for workers in args.workers:
                outdir = workdir / f"out-{workers}"
                rows.append(
                    (workers, run_batch(input_path, repos, outdir, workers, server.base_url))
                )
    print(report(rows, args))
    return 0


def report(rows: list[tuple[int, dict]], args: argparse.Namespace) -> str:
    model_floor = REPLIES_PER_INSTANCE * args.delay
    lines = [
        f"Batch of {args.instances} instances, scripted model answering after "
        f"{args.delay * 1000:.0f} ms ({REPLIES_PER_INSTANCE} replies per instance, so "
        f"{model_floor * 1000:.0f} ms of model time each); {os.cpu_count()} CPUs.",
        "",
        "| workers | wall (s) | instances/s | s per instance | speed-up | CPU s per instance "
        "| peak RSS (MiB) |",
        "|--:|--:|--:|--:|--:|--:|--:|",
    ]
    base = rows[0][1]["wall"]
    for workers, row in rows:
        rate = args.instances / row["wall"]
        lines.append(
            f"| {workers} | {row['wall']:.2f} | {rate:.2f} | {row['wall'] / args.instances:.3f} "
            f"| {base / row['wall']:.2f}× | {row['cpu'] / args.instances:.3f} "
            f"| {row['peak_mib']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
