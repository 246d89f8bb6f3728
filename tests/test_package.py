"""Packaging contracts: quiet import, entry points, prompts shipped inside the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
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


def test_the_built_wheel_installs_and_runs_on_its_own(tmp_path):
    """`python -m build` makes a wheel that works in a fresh venv: its prompts and page
    templates inside, the demo's run end to end, `show --html` on its trajectory.

    The venv gets the wheel alone (``--no-deps``); the dependencies come from this
    environment through a ``.pth`` line, so the test needs no index, and cwm_agent itself
    can only come from the wheel (the fresh site-packages is searched first)."""
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(tmp_path.glob("cwm_agent-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = {f"cwm_agent/prompts/{p.name}" for p in (ROOT / "prompts").glob("*.j2")}
    templates = ROOT / "cwm_agent" / "show" / "templates"
    bundled |= {f"cwm_agent/show/templates/{p.name}" for p in templates.iterdir()}
    assert bundled <= names, sorted(bundled - names)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = sysconfig.get_paths()["purelib"]
    (Path(site) / "dependencies.pth").write_text(deps + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TMPDIR"] = str(tmp_path)  # the demo's trajectory: this test's own, no other checkout's
    where = subprocess.run(
        [py, "-c", "import cwm_agent; print(cwm_agent.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert where.stdout.startswith(site), where.stdout + where.stderr
    demo = subprocess.run(
        [py, str(ROOT / "examples" / "demo.py")], cwd=tmp_path, env=env, capture_output=True
    )
    assert demo.returncode == 0, demo.stderr.decode()[-2000:]
    assert demo.stdout.startswith(b"diff --git ")
    traj = tmp_path / "cwm-demo-trajectory.json"
    html = tmp_path / "page.html"
    shown = subprocess.run(
        [venv / "bin" / "cwm-agent", "show", str(traj), "--html", str(html)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "<script>" in html.read_text() and "buggy" in html.read_text()
