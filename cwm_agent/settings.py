"""Resolved command-line settings → the frozen records a run is built from.

One place for `run`, `batch` and `best-of`, so every command reads a setting the same way.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cwm_agent.errors import UsageError

if TYPE_CHECKING:
    from cwm_agent.agent import AgentConfig
    from cwm_agent.config import Resolved
    from cwm_agent.run import ModelSettings


def chat_template_kwargs(raw: str | None, model: str) -> dict[str, Any]:
    """``--chat-template-kwargs`` as the request's extra body (CWM's switches by default)."""
    from cwm_agent.run import default_extra_body

    if raw is None:
        return default_extra_body(model)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--chat-template-kwargs is not JSON: {exc}") from exc
    return {"chat_template_kwargs": value} if value else {}


def model_settings(cfg: Resolved, opts: dict[str, Any]) -> ModelSettings:
    from cwm_agent.run import ModelSettings

    if not cfg["model"]:
        raise UsageError(
            "no model given",
            hint="pass --model NAME, set CWM_AGENT_MODEL, or set model in a config file",
        )
    return ModelSettings(
        name=cfg["model"],
        base_url=cfg["base_url"],
        temperature=cfg["temperature"],
        top_p=cfg["top_p"],
        request_timeout=cfg["request_timeout"],
        max_retries=cfg["max_retries"],
        extra_body=chat_template_kwargs(opts["chat_template_kwargs"], cfg["model"]),
        api=cfg["api"],
    )


def agent_config(cfg: Resolved, opts: dict[str, Any]) -> AgentConfig:
    from cwm_agent.agent import AgentConfig

    return AgentConfig(
        tool_format=cfg["tool_format"],
        max_steps=cfg["max_steps"],
        max_context=cfg["max_context"],
        max_reply_tokens=cfg["max_tokens"],
        timeout=cfg["timeout"],
        max_format_errors=cfg["max_format_errors"],
        submit_on_limit=opts["submit_on_limit"],
    )
