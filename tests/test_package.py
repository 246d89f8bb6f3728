"""Packaging contracts: quiet import, entry points, prompts shipped inside the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_prints_nothing_and_creates_nothing(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}
    code = "import cwm_agent, cwm_agent.cli, cwm_agent.agent, cwm_agent.run"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    assert list(tmp_path.iterdir()) == []


def test_import_does_not_load_heavy_libraries():
    code = (
        "import sys, cwm_agent.cli; "
        "print(sorted(m for m in ('openai', 'docker', 'unidiff', 'rich', 'git', 'jinja2') "
        "if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "[]"


def test_python_dash_m_and_help():
    proc = subprocess.run(
        [sys.executable, "-m", "cwm_agent", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    for command in ("run", "validate"):
        assert command in proc.stdout


def test_installed_wheel_finds_its_prompts(tmp_path):
    """Build the wheel, install it alone into a fresh venv, find the prompts from there."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("cwm_agent-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "cwm_agent/prompts/system.j2" in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "from cwm_agent import prompts; d = prompts.prompts_dir(); print(d); "
        "print((d / 'user.j2').read_text()[:20])"
    )
    proc = subprocess.run([py, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    location, rendered = proc.stdout.splitlines()[:2]
    assert "site-packages" in location and str(ROOT) not in location
    assert rendered.startswith("Please resolve")
