"""The five measurements. Each returns plain dicts of figures; report.py turns them into tables.

Runs of different harnesses are interleaved (A B A B ...) so that a noisy neighbour
slows both alike; every figure is a median over runs (and within a run, over steps).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from episodes import CHEAP, Harness
from harness import (
    ROOT,
    Run,
    make_fixture_repo,
    median,
    physical_floor,
    run_agent,
    time_command,
)


class Workspace:
    """A temp folder per benchmark run: fixture repositories, trajectories, logs."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cwm-bench-"))
        self._n = 0

    def fresh(self, label: str) -> Path:
        self._n += 1
        folder = self.root / f"{self._n:03d}-{label}"
        folder.mkdir()
        return folder

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def episode(ws: Workspace, h: Harness, steps: int, big: bool = False, **kw: Any) -> Run:
    folder = ws.fresh(h.name.replace(" ", "_"))
    repo = make_fixture_repo(folder / "repo")
    traj = folder / "traj.json"
    run = run_agent(
        lambda url: h.argv(url, repo, steps, traj, big),
        lambda k, body: h.reply(k, big),
        env=h.env,
        cwd=repo,
        log_path=folder / "log.txt",
        **kw,
    )
    if run.steps < steps:
        tail = Path(run.log).read_text(errors="replace")[-1500:]
        raise SystemExit(
            f"{h.name} made {run.steps}/{steps} requests (exit {run.returncode}):\n{tail}"
        )
    if h.traj_kind == "cwm":
        steps_data = json.loads(traj.read_text())["steps"]
        run.model_s = [s["model_seconds"] for s in steps_data]
        run.tool_s = [s["tool_seconds"] for s in steps_data]
    return run


def interleaved(
    harnesses: list[Harness], reps: int, one: Callable[[Harness], Run]
) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {h.name: [] for h in harnesses}
    for rep in range(reps):
        order = harnesses[rep % len(harnesses) :] + harnesses[: rep % len(harnesses)]
        for h in order:
            runs[h.name].append(one(h))
    return runs


# -- 1. per-step overhead -----------------------------------------------------------------
def episode_floor(ws: Workspace, steps: int, http_s: float, reps: int = 5) -> float:
    """Median over the episode's steps of (one HTTP round trip + that step's command via
    `bash -c`, edits as mini's `sed -i`): what the episode costs with no harness at all."""
    repo = make_fixture_repo(ws.fresh("floor") / "repo")
    cost: dict[str, float] = {}
    for command in CHEAP:
        text = command or "sed -i 's/^VALUE = 0$/VALUE = 0/' pkg/counter.py"
        samples = []
        for _ in range(reps):
            start = time.perf_counter()
            subprocess.run(["bash", "-c", text], cwd=repo, stdout=subprocess.DEVNULL, check=False)
            samples.append(time.perf_counter() - start)
        cost[str(command)] = median(samples)
    per_step = [http_s + cost[str(CHEAP[(k - 1) % len(CHEAP)])] for k in range(1, steps + 1)]
    return median(per_step)


def per_step(ws: Workspace, harnesses: list[Harness], steps: int, reps: int) -> dict[str, Any]:
    """The harnesses' step times, and the floors measured between their runs (the load on a
    shared machine drifts: a floor measured once, apart, would compare unlike moments)."""
    floors: list[dict[str, float]] = []

    def one(h: Harness) -> Run:
        if h is harnesses[0]:  # once per round of runs
            floor = physical_floor(reps=60)
            floor["episode"] = episode_floor(ws, steps, floor["http"], reps=5)
            floors.append(floor)
        return episode(ws, h, steps)

    runs = interleaved(harnesses, reps, one)
    out: dict[str, Any] = {"floor": {k: median([f[k] for f in floors]) for k in floors[0]}}
    for h in harnesses:
        rs = runs[h.name]
        row: dict[str, Any] = {
            "step_ms": median([median(r.intervals()) for r in rs]) * 1e3,
            "wall_per_step_ms": median([r.wall_per_step() for r in rs]) * 1e3,
            "end_ms": median([r.end - r.arrivals[-1] for r in rs]) * 1e3,
            "runs": len(rs),
        }
        if h.traj_kind == "cwm":
            row.update(_breakdown(rs))
        out[h.name] = row
    return out


def _breakdown(runs: list[Run]) -> dict[str, float]:
    """cwm-agent's own split of a step: model call, tool, and the rest (the harness)."""
    model, tool, rest = [], [], []
    for r in runs:
        ms, ts = r.model_s, r.tool_s
        model.append(median(ms))
        tool.append(median(ts))
        rest.append(median([iv - m - t for iv, m, t in zip(r.intervals(), ms, ts, strict=False)]))
    return {
        "model_ms": median(model) * 1e3,
        "tool_ms": median(tool) * 1e3,
        "rest_ms": median(rest) * 1e3,
    }


# -- 2. start-up --------------------------------------------------------------------------
def startup(
    ws: Workspace, harnesses: list[Harness], mini_exe: Path | None, reps: int
) -> dict[str, Any]:
    python = str(ROOT / ".venv" / "bin" / "python")
    commands: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "python -c pass": ([python, "-c", "pass"], None)
    }
    for h in harnesses:
        if h.traj_kind == "cwm":
            exe = str(ROOT / ".venv" / "bin" / "cwm-agent")
            commands[f"{h.name} --help"] = ([exe, "--help"], h.env)
        elif mini_exe is not None:
            commands["mini --help"] = ([str(mini_exe), "--help"], h.env)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(reps * 2):  # interleaved, one of each per round
        for name, (argv, env) in commands.items():
            samples[name].append(time_command(argv, env=env, reps=1))
    rows: dict[str, Any] = {name: median(values) for name, values in samples.items()}
    firsts: dict[str, list[float]] = {h.name: [] for h in harnesses}
    for rep in range(reps * 2):  # cwm-agent is quick to start: twice the runs, less noise
        for h in harnesses:
            if h.traj_kind == "cwm" or rep < reps:
                firsts[h.name].append(episode(ws, h, 1).first_request())
    for name, values in firsts.items():
        rows[f"{name} run: launch to first model request"] = median(values)
    return rows


def import_breakdown(
    ws: Workspace, h: Harness, reps: int = 3, top: int = 6
) -> list[tuple[str, float]]:
    """Top-level imports of `cwm-agent run` up to its first request (-X importtime)."""
    totals: dict[str, list[float]] = {}
    for _ in range(reps):
        traced = Harness(
            h.name, h.argv, {**h.env, "PYTHONPROFILEIMPORTTIME": "1"}, h.reply, h.traj_kind
        )
        run = episode(ws, traced, 1)
        for line in Path(run.log).read_text(errors="replace").splitlines():
            parts = line.split("|")
            if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
                name = parts[2]
                if len(name) - len(name.lstrip()) <= 1:  # top level (one space after "|")
                    totals.setdefault(name.strip(), []).append(int(parts[1]) / 1e6)
    ranked = sorted(((median(v), k) for k, v in totals.items()), reverse=True)[:top]
    return [(k, v) for v, k in ranked]


# -- 3. memory ----------------------------------------------------------------------------
MEMORY_MARKS = (1, 32, 64, 128)


def memory(ws: Workspace, harnesses: list[Harness], steps: int, reps: int) -> dict[str, Any]:
    runs = interleaved(harnesses, reps, lambda h: episode(ws, h, steps, big=True, sample_rss=True))
    marks = [m for m in MEMORY_MARKS if m <= steps]
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        rss = {m: median([r.rss_kb[m - 1] for r in rs]) / 1024 for m in marks}
        chars = {m: median([r.chars[m - 1] for r in rs]) / 2**20 for m in marks}
        first, last = marks[0], marks[-1]
        out[name] = {
            "peak_mib": median([r.peak_rss_kb for r in rs]) / 1024,
            "rss_mib": rss,
            "conversation_mib": chars,
            "growth_per_conversation": (rss[last] - rss[first])
            / max(1e-9, chars[last] - chars[first]),
            "step_ms_first": median([median(r.intervals()[:16]) for r in rs]) * 1e3,
            "step_ms_last": median([median(r.intervals()[-16:]) for r in rs]) * 1e3,
        }
    return out


# -- 4. docker ----------------------------------------------------------------------------
def docker_host() -> str | None:
    """DOCKER_HOST, or the engine scripts/provision-docker.sh starts, if one answers."""
    candidates = [os.environ.get("DOCKER_HOST")]
    state = os.environ.get("CWM_DOCKER_STATE", "/tmp/cwm-docker")
    candidates.append(f"unix://{state}/docker.sock")
    candidates.append("unix:///var/run/docker.sock")
    try:
        import docker
    except ImportError:
        return None
    for host in filter(None, candidates):
        if host.startswith("unix://") and not os.path.exists(host[len("unix://") :]):
            continue
        try:
            client = docker.DockerClient(base_url=host, timeout=5)
            client.ping()
            client.close()
            return host
        except Exception:
            continue
    return None


def raw_exec_round_trip(host: str, image: str, reps: int = 30) -> float:
    import docker

    client = docker.DockerClient(base_url=host)
    container = client.containers.run(
        image, ["sleep", "infinity"], detach=True, network_disabled=True, network_mode="none"
    )
    try:
        samples = []
        for i in range(reps + 3):
            start = time.perf_counter()
            container.exec_run(["true"])
            if i >= 3:
                samples.append(time.perf_counter() - start)
        return median(samples)
    finally:
        container.remove(force=True)
        client.close()


def docker_steps(
    ws: Workspace, h: Harness, host: str, image: str, steps: int, reps: int
) -> dict[str, Any]:
    def argv(url: str, repo: Path, n: int, traj: Path, big: bool) -> list[str]:
        return [*h.argv(url, repo, n, traj, big), "--runtime", "docker", "--image", image]

    docked = Harness(
        f"{h.name} (docker)", argv, {**h.env, "DOCKER_HOST": host}, h.reply, h.traj_kind
    )
    rs = [episode(ws, docked, steps) for _ in range(reps)]
    return {
        "step_ms": median([median(r.intervals()) for r in rs]) * 1e3,
        "first_ms": median([r.first_request() for r in rs]) * 1e3,
        "exec_ms": raw_exec_round_trip(host, image) * 1e3,
        **_breakdown(rs),
        "runs": len(rs),
    }


# -- 5. scaling ---------------------------------------------------------------------------
WINDOWS = ((1, 20), (41, 60), (101, 120))


def scaling(ws: Workspace, harnesses: list[Harness], steps: int, reps: int) -> dict[str, Any]:
    runs = interleaved(harnesses, reps, lambda h: episode(ws, h, steps))
    windows = [(a, b) for a, b in WINDOWS if b < steps]
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        # interval k runs from request k to request k+1: step k's whole cost
        out[name] = {
            f"{a}-{b}": median([median(r.intervals()[a - 1 : b]) for r in rs]) * 1e3
            for a, b in windows
        }
        out[name]["context_kib"] = {
            f"{a}-{b}": median([r.chars[b - 1] for r in rs]) / 1024 for a, b in windows
        }
    return out
