"""Selection without execution on real candidates: `cwm-agent select`, static + group.

On `selection_dev.jsonl` (1,537 real candidate patches of 11 published runs for 175
SWE-bench Lite instances, each with its official verdict; records from
`swebench_lite_test.jsonl`), through the real CLI:

- resolved among the chosen (one per instance, by the official verdicts), against a random
  candidate (expected value), majority vote over normalized patches (ties at random,
  expected value), the best single system and the oracle (any candidate resolved);
- the throughput of the static and group stages, candidates a minute: the whole command's
  wall time (start-up and reading included) and the stages' own time (from summary.json);
- with and without base code: base code exists here only for seaborn, xarray and astropy
  (bare mirrors, linked into a temporary --repos-dir with --mirrors); for those instances
  the apply and compile checks run, for the others they are not_checked;
- the reward stage's cost per candidate against the scripted server (logprobs on, no
  delay, an empty cache): requests, tokens (as the scripted server counts them: characters
  / 4) and seconds. Its scores are constant: the choice it makes is not a figure.

The data and the mirrors are only read. Prints Markdown (machine and date included); the
lead copies figures into BENCHMARKS.md.

    python benchmarks/bench_select.py --mirrors /work/.mirror
    python benchmarks/bench_select.py --repos-dir ~/clones --reps 3 --no-reward
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cwm_agent.scripted_server import ScriptedServer  # noqa: E402
from cwm_agent.verification.identity import patch_hash  # noqa: E402

DATA = Path(os.environ.get("CWM_SHARED_DATA") or ROOT.parent / "shared" / "data")


def sha(patch: str) -> str:
    return hashlib.sha256(patch.encode("utf-8", "surrogateescape")).hexdigest()


def load(data: Path) -> list[dict[str, Any]]:
    with (data / "selection_dev.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def baselines(rows: list[dict[str, Any]]) -> dict[str, float]:
    by_instance: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_instance[row["instance_id"]].append(row)
    random_pick = majority = oracle = 0.0
    for found in by_instance.values():
        random_pick += sum(r["resolved"] for r in found) / len(found)
        oracle += any(r["resolved"] for r in found)
        groups: dict[str, list[bool]] = defaultdict(list)
        for r in found:
            groups[patch_hash(r["model_patch"]) or sha(r["model_patch"])].append(r["resolved"])
        top = max(len(g) for g in groups.values())
        tied = [g for g in groups.values() if len(g) == top]
        majority += sum(sum(g) / len(g) for g in tied) / len(tied)
    systems = Counter(r["system"] for r in rows if r["resolved"])
    best, count = systems.most_common(1)[0]
    return {
        "oracle": oracle,
        "random": random_pick,
        "majority": majority,
        "best_system": count,
        "best_system_name": best,
    }


def write_inputs(rows: list[dict[str, Any]], folder: Path, only: set[str] | None = None) -> Path:
    path = folder / ("preds-subset.jsonl" if only else "preds.jsonl")
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            if only is None or row["instance_id"] in only:
                line = {
                    "instance_id": row["instance_id"],
                    "model_name_or_path": row["system"],
                    "model_patch": row["model_patch"],
                }
                handle.write(json.dumps(line) + "\n")
    return path


def link_mirrors(mirrors: Path, folder: Path) -> Path:
    """DIR/owner__name -> MIRRORS/owner+name/repo, for every mirror there."""
    repos = folder / "repos"
    repos.mkdir()
    for mirror in sorted(mirrors.glob("*+*/repo")):
        owner, name = mirror.parent.name.split("+", 1)
        (repos / f"{owner}__{name}").symlink_to(mirror)
    return repos


def run_select(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cwm_agent", "select", *args, "-q"],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 3):
        raise SystemExit(f"select failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.stderr


def resolved(out: Path, labels: dict[tuple[str, str], bool]) -> tuple[int, int]:
    chosen = 0
    hits = 0
    for line in (out / "selection.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["chosen"]:
            chosen += 1
            hits += labels[(record["instance_id"], record["chosen"]["patch_sha256"])]
    return hits, chosen


def measure(name: str, args: list[str], out: Path, reps: int, labels: dict, env: dict) -> dict:
    walls, stage_walls = [], []
    for rep in range(reps):
        target = out.with_name(f"{out.name}-{rep}")
        wall, _ = run_select([*args, "-o", str(target)], env)
        summary = json.loads((target / "summary.json").read_text())
        walls.append(wall)
        stage_walls.append(
            sum(summary["stage_cost"][s]["wall_seconds"] for s in ("static", "group"))
        )
    hits, chosen = resolved(target, labels)
    candidates = summary["funnel"]["candidates"]
    return {
        "name": name,
        "instances": summary["instances"],
        "candidates": candidates,
        "after_static": summary["funnel"].get("static"),
        "groups": summary["funnel"].get("group"),
        "resolved": hits,
        "chosen": chosen,
        "decided_by": summary["decided_by"],
        "wall": statistics.median(walls),
        "stage_wall": statistics.median(stage_walls),
        "per_minute": candidates / statistics.median(walls) * 60,
        "stage_per_minute": candidates / statistics.median(stage_walls) * 60,
        "not_checked": sum(1 for w in summary["warnings"] if "could not run" in w["kind"]),
    }


def reward_cost(preds: Path, records: Path, folder: Path, env: dict) -> dict:
    reply = {"logprobs": [{"YES": math.log(0.5), "NO": math.log(0.5)}]}
    with ScriptedServer(lambda body: reply) as server:
        args = [str(preds), "--dataset", str(records), "--stages", "static,group,reward"]
        args += ["--model", "judge", "--base-url", server.base_url, "--verifier-workers", "4"]
        args += ["--verifier-cache", str(folder / "cache"), "-o", str(folder / "reward")]
        wall, _ = run_select(args, env)
        posts = [r for r in server.requests if r.method == "POST"]
    summary = json.loads((folder / "reward" / "summary.json").read_text())
    cost = summary["stage_cost"]["reward"]
    groups = summary["funnel"]["group"]
    return {
        "requests": len(posts),
        "groups": groups,
        "candidates": summary["funnel"]["candidates"],
        "tokens": cost["tokens"],
        "stage_seconds": cost["wall_seconds"],
        "wall": wall,
    }


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(base: dict, runs: list[dict], reward: dict | None, reps: int) -> str:
    n = 175
    today = datetime.date.today().isoformat()
    lines = [f"Machine: {machine_line()}; {today}; median of {reps} run(s).", ""]
    lines += [row("selection on selection_dev.jsonl", "resolved", "instances", "share")]
    lines += [row("---", "---", "---", "---")]
    best = f"best single system ({base['best_system_name']})"
    for name, value in [
        ("oracle (any candidate resolved)", f"{base['oracle']:.0f}"),
        ("random candidate (expected)", f"{base['random']:.1f}"),
        ("majority vote, ties at random (expected)", f"{base['majority']:.1f}"),
        (best, f"{base['best_system']}"),
    ]:
        lines.append(row(name, value, n, f"{float(value) / n:.1%}"))
    for run in runs:
        share = f"{run['resolved'] / run['instances']:.1%}"
        lines.append(
            row(f"select, static + group, {run['name']}", run["resolved"], run["instances"], share)
        )
    head = [
        "run",
        "candidates",
        "after static",
        "groups",
        "decided by",
        "command wall s",
        "candidates/min (command)",
        "stage s",
        "candidates/min (stages)",
    ]
    lines += ["", row(*head), row(*["---"] * len(head))]
    for run in runs:
        decided = ", ".join(f"{k} {v}" for k, v in run["decided_by"].items())
        lines.append(
            row(
                run["name"],
                run["candidates"],
                run["after_static"],
                run["groups"],
                decided,
                f"{run['wall']:.2f}",
                f"{run['per_minute']:,.0f}",
                f"{run['stage_wall']:.2f}",
                f"{run['stage_per_minute']:,.0f}",
            )
        )
    if reward:
        lines += ["", *_reward_rows(reward)]
    return "\n".join(lines)


def _reward_rows(reward: dict) -> list[str]:
    c = reward["candidates"]
    requests = f"{reward['requests']} for {reward['groups']} groups of {c} candidates"
    seconds = reward["stage_seconds"]
    return [
        row("reward stage against the scripted server (no cache)", "value"),
        row("---", "---"),
        row("requests", f"{requests} ({reward['requests'] / c:.2f} a candidate)"),
        row(
            "tokens (characters / 4)",
            f"{reward['tokens']:,} ({reward['tokens'] / c:,.0f} a candidate)",
        ),
        row("stage seconds", f"{seconds:.2f} ({seconds / c * 1000:.1f} ms a candidate)"),
        row("command wall seconds", f"{reward['wall']:.2f}"),
    ]


def machine_line() -> str:
    from report import machine

    return machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--mirrors", type=Path, help="a folder of OWNER+NAME/repo bare mirrors")
    parser.add_argument("--repos-dir", type=Path, help="clones (instead of --mirrors)")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--no-reward", action="store_true")
    opts = parser.parse_args()
    rows = load(opts.data)
    labels = {(r["instance_id"], sha(r["model_patch"])): r["resolved"] for r in rows}
    records = opts.data / "swebench_lite_test.jsonl"
    env = {**os.environ, "XDG_CACHE_HOME": tempfile.mkdtemp(prefix="bench-select-cache-")}
    with tempfile.TemporaryDirectory(prefix="bench-select-") as tmp:
        folder = Path(tmp)
        preds = write_inputs(rows, folder)
        repos = opts.repos_dir or (link_mirrors(opts.mirrors, folder) if opts.mirrors else None)
        common = [str(preds), "--dataset", str(records), "--stages", "static,group"]
        runs = [measure("no base code", common, folder / "none", opts.reps, labels, env)]
        if repos is not None:
            with_base = [*common, "--repos-dir", str(repos)]
            runs.append(
                measure(
                    "base code where there is a clone",
                    with_base,
                    folder / "base",
                    opts.reps,
                    labels,
                    env,
                )
            )
            covered = {r["instance_id"] for r in rows if _has_clone(r["instance_id"], repos)}
            subset = write_inputs(rows, folder, covered)
            sub = [str(subset), "--dataset", str(records), "--stages", "static,group"]
            runs.append(
                measure(
                    f"only the {len(covered)} instances with a clone, base code",
                    [*sub, "--repos-dir", str(repos)],
                    folder / "sub",
                    opts.reps,
                    labels,
                    env,
                )
            )
            runs.append(
                measure(
                    f"the same {len(covered)} instances, no base code",
                    sub,
                    folder / "subnone",
                    opts.reps,
                    labels,
                    env,
                )
            )
        reward = None if opts.no_reward else reward_cost(preds, records, folder, env)
    print(markdown(baselines(rows), runs, reward, opts.reps))


def _has_clone(instance_id: str, repos: Path) -> bool:
    owner_name = instance_id.rsplit("-", 1)[0]  # owner__name-NUMBER
    return (repos / owner_name).exists()


if __name__ == "__main__":
    main()
