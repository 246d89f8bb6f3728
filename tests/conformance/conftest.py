"""CWM's own code as the oracle: ``$CWM_ORACLE_DIR``, else ``SHARED_DATA/cwm``.

The folder (a subset of facebookresearch/cwm, see its ORACLE.md) is put on ``sys.path``
so the tests can call CWM's parser, session, prompt builder and tokenizer, and run its
edit/create plugin scripts. Nothing of it is copied into the project. Without the folder
(or without ``tiktoken`` for the tokenizer) the tests skip, saying why; under
``CWM_REQUIRE_ORACLE=1`` (CI) they fail instead.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA

ORACLE = Path(os.environ.get("CWM_ORACLE_DIR") or SHARED_DATA / "cwm")
SWE_ENV = "cwm/rl/envs/envs/swerl_tool.py"
TESTGEN_ENV = "cwm/rl/envs/envs/swerl_testgen_tool.py"
PLUGINS = ORACLE / "cwm/rl/swerl/plugins"
HOW = "set CWM_ORACLE_DIR to a copy of facebookresearch/cwm (see ../shared/data/cwm/ORACLE.md)"


def unavailable(why: str) -> None:
    message = f"the conformance tests need {why}: {HOW}"
    if os.environ.get("CWM_REQUIRE_ORACLE") == "1":
        pytest.fail(f"CWM_REQUIRE_ORACLE=1 but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def oracle() -> Path:
    if not (ORACLE / "ORACLE.md").is_file() or not (ORACLE / "cwm").is_dir():
        unavailable(f"CWM's code at {ORACLE}")
    if str(ORACLE) not in sys.path:
        sys.path.insert(0, str(ORACLE))
    return ORACLE


@pytest.fixture(scope="session")
def tokenizer(oracle):
    """CWM's own tokenizer class on the byte-level stand-in vocabulary (same text)."""
    try:
        import tiktoken  # noqa: F401
    except ImportError:
        unavailable("tiktoken (pip install -e '.[dev]')")
    from cwm.text.tokenizers import CWMInstructTokenizer

    return CWMInstructTokenizer(str(oracle / "bytes.tiktoken"))


def cwm_constants(relative: str) -> dict[str, str]:
    """The string constants of one of CWM's modules, read without importing it (its
    imports need CWM's RL stack): ``NAME = "..."`` and ``NAME = "...".strip()``."""
    tree = ast.parse((ORACLE / relative).read_text())
    found = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)):
            continue
        value = node.value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            found[node.targets[0].id] = value.value
        elif (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Attribute)
            and value.func.attr == "strip"
            and isinstance(value.func.value, ast.Constant)
        ):
            found[node.targets[0].id] = value.func.value.value.strip()
    return found


# -- CWM's prompts, formatted as its environments' start() formats them ---------------------


def cwm_system(timeout: float, context: int, turns: int) -> str:
    """The system prompt of CWM's SWE environment in think-tag mode (its eval config)."""
    from cwm.rl.envs.prompts import get_cwm_sys_prompt

    environment = cwm_constants(SWE_ENV)["SYSTEM_UBUNTU"].format(
        context_size=context, max_turns=turns, session_timeout=f"{int(timeout)}-second"
    )
    return get_cwm_sys_prompt(think=True, use_think_tag=True, environment=environment)


def cwm_user(issue: str, root: str) -> str:
    return cwm_constants(SWE_ENV)["USER_ISSUE_SOLVING"].format(issue=issue, repo_root=root)


def cwm_testgen(issue: str, root: str) -> str:
    return cwm_constants(TESTGEN_ENV)["USER_TESTGEN"].format(issue=issue, repo_root=root)


@pytest.fixture(scope="session")
def imported_set(oracle, tmp_path_factory) -> Path:
    """``cwm-agent prompts import-cwm`` of the oracle, through the real CLI: the set's folder."""
    from conftest import run_cli

    config_home = tmp_path_factory.mktemp("xdg-config")
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    result = run_cli(["prompts", "import-cwm", str(oracle)], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # what it did goes to stderr
    folder = config_home / "cwm-agent" / "prompts" / "cwm"
    assert sorted(p.name for p in folder.iterdir()) == [
        "format_error.j2", "repro_submission.j2", "repro_user.j2", "set.json", "submission.j2",
        "system.j2", "user.j2",
    ]  # fmt: skip
    return folder
