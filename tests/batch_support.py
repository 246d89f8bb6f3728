"""Helpers for the batch tests (no tests here): repositories with a base commit, scripts."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import cwm, git

# tests/docker/swebench_records.py: the SWE-bench image's records (benchmarks use it too).
sys.path.insert(0, str(Path(__file__).resolve().parent / "docker"))
swebench_records = importlib.import_module("swebench_records")
SWEBENCH_IMAGE = os.environ.get("CWM_TEST_SWEBENCH_IMAGE", swebench_records.IMAGE)

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED_UPSTREAM = "def add(a, b):\n    return a + b  # fixed upstream, after the base commit\n"
MODEL_ERROR = {"status": 500, "headers": {"x-should-retry": "false"}}  # fails fast, no retries


def fix_script(module: str = "calc.py", delay: float = 0.0) -> list[Any]:
    edit = f"{module}\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE"
    replies = [cwm("edit", edit), cwm("bash", "git diff > fix.patch"), cwm("submit", "fix.patch")]
    replies.append("<think>\nDone.\n</think>\nFixed add().")
    return [{"content": r, "delay": delay} if delay else r for r in replies]


def busy_script(steps: int, delay: float) -> list[Any]:
    """An agent that keeps working (for interrupting it)."""
    return [{"content": cwm("bash", "sleep 0.05; echo working"), "delay": delay}] * steps


def make_repo(path: Path, module: str = "calc.py") -> str:
    """A repository whose base commit has the bug; a later commit (HEAD) fixed it upstream.

    Returns the base commit: a patch made at HEAD would not apply there, and vice versa.
    """
    path.mkdir(parents=True)
    (path / module).write_text(BUGGY)
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    base = git(path, "rev-parse", "HEAD").strip()
    (path / module).write_text(FIXED_UPSTREAM)
    git(path, "commit", "-q", "-am", "upstream fix")
    return base


def issue(key: str) -> str:
    return f"[{key}] add() subtracts instead of adding."


class Scripts:
    """Replies keyed by the ``[key]`` marker in the issue; the step = assistant turns so far.

    Stateless per request, so parallel workers each follow their own instance's script.
    """

    def __init__(self, scripts: dict[str, list[Any]]) -> None:
        self.scripts = scripts

    def key(self, body: dict[str, Any]) -> str | None:
        messages = body.get("messages") or []
        user = messages[1]["content"] if len(messages) > 1 else ""
        return next((k for k in self.scripts if f"[{k}]" in user), None)

    def __call__(self, body: dict[str, Any]) -> Any:
        key = self.key(body)
        if key is None:
            return None
        step = sum(m["role"] == "assistant" for m in body["messages"])
        script = self.scripts[key]
        return script[step] if step < len(script) else None


def requests_by_key(server: Any, scripts: Scripts) -> dict[str, int]:
    counts: dict[str, int] = {}
    for request in server.requests:
        if request.method == "POST":
            key = scripts.key(request.body or {})
            counts[key or "?"] = counts.get(key or "?", 0) + 1
    return counts


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_preds(outdir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (outdir / "preds.jsonl").read_text().splitlines()]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def batch_args(server: Any, input_path: Path, outdir: Path, *extra: str) -> list[str]:
    args = ["batch", str(input_path), "-o", str(outdir), "--model", "m"]
    return [*args, "--base-url", server.base_url, "--max-steps", "6", *extra]


def start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cwm_agent", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the batch")
        time.sleep(0.02)


def count_lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


class ByPhrase(Scripts):
    """Scripts keyed by a phrase of the issue text (SWE-bench issues carry no ``[key]``)."""

    def __init__(self, scripts: dict[str, list[Any]], phrases: dict[str, str]) -> None:
        super().__init__(scripts)
        self.phrases = phrases

    def key(self, body: dict[str, Any]) -> str | None:
        messages = body.get("messages") or []
        user = messages[1]["content"] if len(messages) > 1 else ""
        return next((k for k, phrase in self.phrases.items() if phrase in user), None)


def needs(what: str) -> None:
    """Skip without ``what`` (a Docker engine, an image, a package); under
    CWM_REQUIRE_DOCKER=1 (CI), fail instead."""
    message = f'needs {what}: run `eval "$(sudo scripts/provision-docker.sh)"` and `make test`'
    if os.environ.get("CWM_REQUIRE_DOCKER") == "1":
        pytest.fail(f"CWM_REQUIRE_DOCKER=1 but the test {message}", pytrace=False)
    pytest.skip(message)


def swebench_engine() -> Any:
    """A Docker client with the SWE-bench-shaped image, and the swebench package."""
    from cwm_agent.errors import RuntimeFailure
    from cwm_agent.runtimes.docker_engine import connect

    if importlib.util.find_spec("swebench") is None:
        needs("the swebench package (pip install -e '.[dev]')")
    if shutil.which("docker") is None:
        needs("the docker CLI (the official harness runs it)")
    try:
        client = connect()
    except RuntimeFailure as exc:
        needs(f"a Docker engine ({exc.message})")
    try:
        client.images.get(SWEBENCH_IMAGE)
    except Exception:  # noqa: BLE001 - ImageNotFound or anything else: not usable
        needs(f"the image {SWEBENCH_IMAGE}")
    return client


def leftover_containers(client: Any, run_ids: set[str]) -> list[str]:
    """Containers still there of these runs (other tests may share the engine)."""
    from cwm_agent.runtimes.docker_engine import LABEL

    assert run_ids, "no run ids to look for"
    found = []
    for run_id in sorted(run_ids):
        label = {"label": f"{LABEL}={run_id}"}
        found += [c.name for c in client.containers.list(all=True, filters=label)]
    return found


def run_ids(outdir: Path) -> set[str]:
    """Every run id a batch OUTDIR records: trajectories, rollouts, the evaluation."""
    found = set()
    for path in [*outdir.glob("*/trajectory.json"), *outdir.glob("*/attempt-*.json")]:
        found.add(read_json(path)["run_id"])
    report = outdir / "evaluation" / "report.json"
    if report.exists():
        found.add(read_json(report)["evaluation"]["run_id"])
    return found


def seed_hf_cache(cache: Path, repo_id: str, split: str, records: list[dict[str, Any]]) -> None:
    """Put ``records`` in a `datasets` cache as if ``repo_id`` had been loaded from the hub
    once: written by the library's own builder, in the layout its offline loading reads."""
    from datasets.packaged_modules.json.json import Json

    work = cache.parent / f"{cache.name}-build"
    data = write_jsonl(work.parent / f"{cache.name}-{split}.jsonl", records)
    name = repo_id.split("/")[-1]
    builder = Json(
        cache_dir=str(work), dataset_name=name, data_files={split: str(data)}, hash="seeded"
    )
    builder.download_and_prepare()
    built = Path(builder.cache_dir).parents[1]  # .../<name>/<config-id>/0.0.0/seeded
    target = cache / f"{repo_id.split('/')[0]}___{built.parent.name}" / "default"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(built), str(target))  # the config "default", as the hub's datasets have
    shutil.rmtree(work)
