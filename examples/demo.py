"""`make demo`: the real agent loop on the bundled example, with a SCRIPTED model.

No model service and no network are needed: the model's replies come from
examples/demo_script.json, served by a scripted OpenAI-compatible HTTP server on
127.0.0.1 and reached through the real `openai` client. Everything else is real: a
temporary git repository, the bash session, the edit tool, patch validation.

The model is named "scripted-cwm", so cwm-agent uses the transport it verifies for CWM
(`--api auto` picks completions): it renders CWM's chat format itself and calls
/v1/completions with a prompt that already ends in the `<think>` prefill. The scripted
replies therefore start with the reasoning, not with `<think>`.

The patch goes to stdout (as with `cwm-agent run`); the story goes to stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAJECTORY = Path(tempfile.gettempdir()) / "cwm-demo-trajectory.json"

from cwm_agent.scripted_server import ScriptedServer  # noqa: E402


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def make_repo(workdir: Path) -> Path:
    repo = workdir / "buggy-calc"
    shutil.copytree(HERE / "buggy-calc", repo, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-c", "user.name=demo", "-c", "user.email=demo@example.invalid"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "buggy calc"], cwd=repo, check=True)
    return repo


def run_tests(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "unittest", "-q"], cwd=repo, capture_output=True, text=True
    )


def main() -> int:
    say("cwm-agent demo: the model is SCRIPTED (examples/demo_script.json) and served over")
    say("real HTTP on 127.0.0.1; the repository, shell, tools and patch checks are real.\n")
    replies = json.loads((HERE / "demo_script.json").read_text())
    with tempfile.TemporaryDirectory(prefix="cwm-demo-") as tmp, ScriptedServer(replies) as server:
        repo = make_repo(Path(tmp))
        say(f"before: {run_tests(repo).stderr.strip().splitlines()[-1]}")
        cmd = [
            sys.executable, "-m", "cwm_agent", "run", str(repo),
            "--issue-file", str(HERE / "buggy-calc" / "ISSUE.md"),
            "--base-url", server.base_url, "--model", "scripted-cwm",
            "--traj", str(TRAJECTORY), "-v",
        ]  # fmt: skip
        env = {**os.environ, "OPENAI_API_KEY": "demo"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        say(proc.stderr.rstrip())
        if proc.returncode != 0:
            say(f"cwm-agent exited with {proc.returncode}")
            return proc.returncode
        sys.stdout.write(proc.stdout)
        check = subprocess.run(["git", "apply", "-"], cwd=repo, input=proc.stdout, text=True)
        if check.returncode != 0:
            say("the patch did not apply")
            return 1
        after = run_tests(repo)
        say(f"after git apply: {after.stderr.strip().splitlines()[-1]}")
        return after.returncode


if __name__ == "__main__":
    sys.exit(main())
