"""`make bench`: cwm-agent against mini-swe-agent and the machine's floor, side by side.

    python benchmarks/bench.py                  # everything; refreshes BENCHMARKS.md
    python benchmarks/bench.py --quick          # fewer runs, shorter episodes (a smoke test)
    python benchmarks/bench.py --only per_step,startup --no-write
    python benchmarks/bench.py --baseline-rev HEAD~1   # also an older cwm-agent, same run

Prints the tables on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402
import sections  # noqa: E402
from episodes import Harness, cwm_harness, mini_harness  # noqa: E402
from harness import ROOT  # noqa: E402
from peers import ensure_mini, mini_version  # noqa: E402

SECTIONS = ("per_step", "startup", "memory", "docker", "scaling")
DOCKER_IMAGE = "cwm-agent-test:latest"  # built by scripts/provision-docker.sh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=5, help="runs per harness (default 5)")
    parser.add_argument("--steps", type=int, default=60, help="per-step episode length")
    parser.add_argument("--quick", action="store_true", help="2 runs, short episodes")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--no-mini", action="store_true", help="skip mini-swe-agent")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        action="append",
        default=[],
        help="another cwm-agent source tree to compare (repeatable)",
    )
    parser.add_argument("--baseline-rev", help="a git revision of cwm-agent to compare")
    parser.add_argument("--docker-image", default=DOCKER_IMAGE)
    args = parser.parse_args(argv)
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    reps = 2 if args.quick else args.reps
    steps = 20 if args.quick else args.steps
    scaling_steps, memory_steps = (41, 32) if args.quick else (121, 128)

    started = time.perf_counter()
    ws = sections.Workspace()
    try:
        harnesses, mini_exe = _harnesses(args, ws)
        res = {
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "machine": report.machine(),
            "command": os.environ.get("BENCH_COMMAND", "").strip()
            or shlex.join(
                ["python", "benchmarks/bench.py", *(sys.argv[1:] if argv is None else argv)]
            ),
            "revision": report.revision(),
            "mini_versions": mini_version() if mini_exe else "",
            "reps": reps,
            "steps": steps,
            "scaling_steps": scaling_steps,
            "memory_steps": memory_steps,
        }
        cwm = harnesses[0]
        if "per_step" in only:
            _progress(f"per-step: {steps}-step episodes × {reps} per harness, and the floor")
            res["per_step"] = sections.per_step(ws, harnesses, steps, reps)
            res["floor"] = res["per_step"].pop("floor")
        if "startup" in only:
            _progress("start-up")
            res["startup"] = sections.startup(ws, harnesses, mini_exe, reps)
            res["imports"] = sections.import_breakdown(ws, cwm)
        if "memory" in only:
            _progress(f"memory: {memory_steps}-step episodes with 30 KB observations")
            res["memory"] = sections.memory(ws, harnesses, memory_steps, min(reps, 3))
        if "docker" in only:
            res["docker"] = _docker(ws, cwm, args.docker_image, steps, min(reps, 3))
        if "scaling" in only:
            _progress(f"scaling: {scaling_steps}-step episodes")
            res["scaling"] = sections.scaling(ws, harnesses, scaling_steps, min(reps, 3))
        res["elapsed"] = time.perf_counter() - started
        markdown = report.render(res)
    finally:
        ws.close()
    print(markdown)
    if not args.no_write:
        report.write(markdown)
        _progress(f"wrote {report.MD}")
    _progress(f"took {time.perf_counter() - started:.0f} s")
    return 0


def _harnesses(
    args: argparse.Namespace, ws: sections.Workspace
) -> tuple[list[Harness], Path | None]:
    home = ws.fresh("home")
    harnesses = [cwm_harness(home)]
    baselines = [(p.name, p) for p in args.baseline_src]
    if args.baseline_rev:
        baselines.append((args.baseline_rev, _checkout(args.baseline_rev, ws.fresh("baseline"))))
    for label, src in baselines:
        harnesses.append(cwm_harness(home, src.resolve(), f"cwm-agent ({label})"))
    mini_exe = None
    if not args.no_mini:
        mini_exe = ensure_mini()
        harnesses.append(mini_harness(mini_exe, home))
    return harnesses, mini_exe


def _checkout(rev: str, dest: Path) -> Path:
    """The package and prompts of a git revision, extracted (read-only for the repository)."""
    archive = subprocess.run(
        ["git", "archive", rev, "cwm_agent", "prompts"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def _docker(ws: sections.Workspace, cwm: Harness, image: str, steps: int, reps: int) -> object:
    host = sections.docker_host()
    if host is None:
        _progress("docker: no engine reachable, skipped")
        start = 'eval "$(sudo scripts/provision-docker.sh)"'
        return f"no Docker engine reachable (set DOCKER_HOST, or start one: `{start}`)"
    import docker

    try:
        docker.DockerClient(base_url=host).images.get(image)
    except Exception:
        return f"image {image} not found on {host} (scripts/provision-docker.sh builds it)"
    _progress(f"docker: {steps}-step episodes on {host}")
    result = sections.docker_steps(ws, cwm, host, image, steps, reps)
    return {**result, "image": image}


def _progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
