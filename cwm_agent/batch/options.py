"""The options `batch` shares with `run`, declared through the same setting definitions.

Model, runtime and limit flags are ``config.setting_option``s, exactly as `run` declares
them, so they resolve the same way (flag > env CWM_AGENT_* > config file and --profile >
default). The few flags that are not settings mirror `run`'s; `cwm_agent.settings` turns
them into the same frozen records for every command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cwm_agent.config import config_options, resolve_from_context, setting_option
from cwm_agent.errors import UsageError
from cwm_agent.scaling.cli import _scale_options

if TYPE_CHECKING:  # the agent's modules load only when a batch runs, not for --help
    from cwm_agent.config import Resolved

F = TypeVar("F", bound=Callable[..., Any])
INSTALL_HINT = "pip install 'cwm-agent[ray]'"

_MODEL_OPTIONS = [
    config_options,
    setting_option("model", help="Model name [env CWM_AGENT_MODEL]."),
    setting_option("base_url", help="OpenAI-compatible API base URL [env OPENAI_BASE_URL]."),
    setting_option("tool_format"),
    setting_option("api"),
    setting_option("temperature"),
    setting_option("top_p"),
    setting_option("max_tokens"),
    setting_option("request_timeout"),
    setting_option("max_retries"),
    click.option(
        "--chat-template-kwargs",
        default=None,
        help="JSON for vLLM's chat_template_kwargs (default: CWM's thinking switches "
        "when the model name contains 'cwm'; '{}' sends none).",
    ),
]

_RUNTIME_OPTIONS = [
    setting_option("runtime"),
    setting_option(
        "image", help="One Docker image for every instance; the repository is copied in."
    ),
    click.option(
        "--image-template",
        help="Docker image per instance, the repository inside at --workdir; "
        "placeholders {instance_id} and {instance_id_1776}.",
    ),
    setting_option(
        "workdir",
        help="Repository path in the container; /testbed when each instance has its own "
        "image (--image-template or the record's image).",
    ),
]

_LIMIT_OPTIONS = [
    setting_option("max_steps"),
    setting_option("timeout"),
    setting_option("max_context"),
    setting_option("max_format_errors"),
    click.option(
        "--submit-on-limit",
        is_flag=True,
        help="At a limit without a submission, emit the working-tree diff if valid.",
    ),
    click.option(
        "--trace-prediction/--no-trace-prediction",
        default=False,
        show_default=True,
        help="Before showing a test's result, compare the model's predicted trace.",
    ),
]


def _stack(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        for option in reversed(options):  # so --help lists them in the order written
            func = option(func)
        return func

    return decorate


def _declares(option: Callable[[F], F], name: str) -> bool:
    probe: Any = option(lambda: None)  # type: ignore[arg-type]
    return bool(probe.__click_params__[-1].name == name)


# `run`'s --attempts flags, less its --workers: in a batch --workers counts instances, and
# each instance's rollouts get workers of their own (one per attempt).
_SCALE_OPTIONS = [o for o in _scale_options(1) if not _declares(o, "workers")]

_EXECUTOR_OPTIONS = [
    click.option(
        "--executor",
        type=click.Choice(["thread", "ray"]),
        default="thread",
        show_default=True,
        help="What runs the instances: --workers threads here, or Ray tasks, one per "
        f"instance (needs: {INSTALL_HINT}).",
    ),
    click.option(
        "--ray-address",
        metavar="ADDR",
        help="With --executor ray: join this Ray cluster (head:6379 from a node, or "
        "ray://head:10001) [default: start a local Ray instance with --workers CPUs].",
    ),
]

model_options = _stack(_MODEL_OPTIONS)
runtime_options = _stack(_RUNTIME_OPTIONS)
limit_options = _stack(_LIMIT_OPTIONS)
scale_options = _stack(_SCALE_OPTIONS)
executor_options = _stack(_EXECUTOR_OPTIONS)


def resolve_settings(opts: dict[str, Any]) -> Resolved:
    """Each setting from its flag, env, config file or default (like `run`)."""
    return resolve_from_context(click.get_current_context(), opts)


def workdir_given(cfg: Resolved) -> bool:
    """Whether the user chose --workdir (anywhere), or batch may pick /testbed itself."""
    return cfg.sources["workdir"] != "default"


def check_scaling(opts: dict[str, Any], temperature: float) -> None:
    """`--attempts K` flags that cannot work, refused before any instance runs."""
    if opts["attempts"] > 1 and temperature <= 0:
        raise UsageError(
            "--attempts needs sampling, but --temperature is 0: every attempt would be the same",
            hint="use --temperature 1.0 (CWM's default) or a single attempt",
        )
