"""`cwm-agent evaluate`: grade SWE-bench predictions the way the official harness does."""

from __future__ import annotations

import importlib.util

from cwm_agent.errors import UsageError

SWEBENCH_INSTALL_HINT = "pip install 'cwm-agent[swebench]'"


def require_swebench() -> None:
    """A usage error (exit 2), before anything runs, when swebench is not installed."""
    try:
        installed = importlib.util.find_spec("swebench") is not None
    except (ImportError, ValueError):
        installed = False
    if not installed:
        raise UsageError("grading needs the swebench package", hint=SWEBENCH_INSTALL_HINT)
