"""mini-swe-agent, the peer, installed from PyPI into its own venv (benchmarks/.venvs/mini)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".venvs" / "mini"
# Pinned so that figures compare like with like across runs. litellm 1.106 imports `mcp`
# as soon as a request declares tools (mini-swe-agent always does) without depending on
# it: without `mcp` every mini request fails with ModuleNotFoundError.
REQUIREMENTS = ["mini-swe-agent==2.4.6", "litellm==1.106.2", "mcp==2.3.0"]


def ensure_mini(python: str = sys.executable) -> Path:
    """The `mini` executable, installing it first if the venv is missing or outdated."""
    stamp = VENV / ".installed"
    wanted = "\n".join(REQUIREMENTS)
    if not (stamp.is_file() and stamp.read_text() == wanted):
        print(f"installing {', '.join(REQUIREMENTS)} into {VENV} ...", file=sys.stderr)
        subprocess.run([python, "-m", "venv", "--clear", str(VENV)], check=True)
        pip = [
            str(VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *REQUIREMENTS,
        ]
        subprocess.run(pip, check=True)
        stamp.write_text(wanted)
    return VENV / "bin" / "mini"


def mini_version() -> str:
    out = subprocess.run(
        [
            str(VENV / "bin" / "python"),
            "-m",
            "pip",
            "list",
            "--format=freeze",
            "--disable-pip-version-check",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    keep = ("mini-swe-agent", "litellm", "openai", "mcp")
    return ", ".join(line for line in out.splitlines() if line.split("==")[0] in keep)
