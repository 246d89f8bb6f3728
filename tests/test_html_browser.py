"""The `show --html` page in a real headless browser (Debian's chromium): it renders every
step, its inline script runs, hostile text stays text, and a screenshot comes out.

Skips without chromium unless CWM_REQUIRE_BROWSER=1 (CI installs it:
`apt-get install -y --no-install-recommends chromium fonts-dejavu-core`).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from test_show import HOSTILE, hostile_copy, make_trajectory

from cwm_agent.show.html import render_html
from cwm_agent.show.view import load_view

WIDTH, HEIGHT = 1280, 1800


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CWM_REQUIRE_BROWSER") == "1":
            pytest.fail("CWM_REQUIRE_BROWSER=1 but chromium is not installed")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return exe


def browser(exe: str, profile: Path, *args: str) -> subprocess.Popen[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    return subprocess.Popen(
        [exe, *flags, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def test_page_renders_in_headless_chromium(tmp_path):
    exe = chromium()
    traj = hostile_copy(make_trajectory(tmp_path), tmp_path / "hostile.json")
    data = json.loads(traj.read_text())
    page = tmp_path / "page.html"
    page.write_text(render_html(load_view(data)), encoding="utf-8")
    url = page.as_uri()
    shot = tmp_path / "shot.png"
    # Two browsers at once (separate profiles): the DOM after scripts ran, and a screenshot.
    dom_proc = browser(exe, tmp_path / "p1", "--dump-dom", url)
    shot_proc = browser(
        exe, tmp_path / "p2", f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", url
    )
    dom, _ = dom_proc.communicate(timeout=60)
    shot_proc.communicate(timeout=60)
    assert dom_proc.returncode == 0 and shot_proc.returncode == 0

    steps = data["steps"]
    assert f'data-ready="{len(steps)}"' in dom  # the inline script ran, saw every step
    sections = re.split(r'<section class="step ', dom)[1:]
    assert len(sections) == len(steps)
    for section, step in zip(sections, steps, strict=True):
        assert f'id="step-{step["step"]}"' in section
        action = step["action"]
        if action is None:
            continue
        shown = action["args"].get("command") or action["args"].get("path") or ""
        assert html.escape(shown, quote=False) in section, (step["step"], shown)
    # Hostile model text stayed text: no element was injected, the payload is visible.
    assert "<img" not in dom and "onerror=alert(1)&gt;" in dom
    assert dom.count("<script") == 1
    assert html.escape(HOSTILE.split("<img")[0], quote=False) in dom
    assert '<span class="d-add">+    return a + b' in dom

    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    assert (width, height) == (WIDTH, HEIGHT)
    assert len(png) > 30_000  # a page of text and colour, not a blank canvas
