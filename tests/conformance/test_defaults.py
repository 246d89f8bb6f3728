"""cwm-agent's defaults against the facts in CWM's code and evaluation configs: the SWE
environment's limits (``SWERLConfig``), the sampling of its SWE-bench evaluation, the
environment it evaluates with (think tags), the tokenizer's stop tokens."""

from __future__ import annotations

import ast
import re

from cwm_agent.config import SETTINGS
from cwm_agent.models.cwm_chat import STOP_TOKENS
from cwm_agent.settings import AgentConfig, ModelSettings

from .conftest import ORACLE, SWE_ENV


def swerl_config() -> dict[str, object]:
    tree = ast.parse((ORACLE / SWE_ENV).read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SWERLConfig")
    return {
        n.target.id: ast.literal_eval(n.value)
        for n in cls.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.value
    }


def test_the_limits_are_cwms():
    cwm = swerl_config()
    ours = AgentConfig()
    assert ours.max_context == SETTINGS["max_context"].default == cwm["context_size"]
    assert ours.timeout == SETTINGS["timeout"].default == cwm["session_timeout"]
    assert ours.max_steps == SETTINGS["max_steps"].default == cwm["max_turns"]
    assert ours.max_reply_tokens == SETTINGS["max_tokens"].default == cwm["max_action_len"]
    assert ours.max_output_tokens == cwm["max_user_turn_len"]  # a tool result
    assert ours.issue_max_tokens == cwm["max_prompt_len"]  # the issue (CWM: the user turn)
    assert cwm["plugins"] is True  # edit and create are among its tools, as here


def test_the_sampling_and_the_environment_are_those_of_cwms_evaluation():
    config = (ORACLE / "evals/configs/eval_sbv.yaml").read_text()
    assert (
        float(re.search(r"temperature: ([\d.]+)", config).group(1))
        == ModelSettings("m").temperature
    )
    assert float(re.search(r"top_p: ([\d.]+)", config).group(1)) == ModelSettings("m").top_p
    # think tags (`<think>` text, the prefill): what --api completions renders
    assert "env_config: swerl_tool_env:think_tag:modal:eval" in config


def test_the_stop_tokens_are_cwms(tokenizer):
    assert {tokenizer.tkt_model.decode([t]) for t in tokenizer.stop_tokens} == set(STOP_TOKENS)
