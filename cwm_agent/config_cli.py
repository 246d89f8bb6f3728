"""`cwm-agent config show`: what a run would use, and where each value came from."""

from __future__ import annotations

import json

import click

from cwm_agent.config import resolve
from cwm_agent.console import visible
from cwm_agent.options import config_options, say_notices


@click.group("config")
def config_group() -> None:
    """Inspect the resolved configuration (flag > env > config file > default).

    \b
    Examples:
      cwm-agent config show
      cwm-agent config show --profile vllm-cwm --json
    """


@config_group.command("show")
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def show_command(config_path: str | None, profile: str | None, as_json: bool) -> None:
    """Print every setting `run` would use and where it came from. Secrets are never shown.

    \b
    Examples:
      cwm-agent config show
      CWM_AGENT_MAX_STEPS=50 cwm-agent config show --profile vllm-cwm
      cwm-agent config show --config ./ci.toml --json | jq .settings.model
    """
    resolved = resolve({}, config_path, profile)
    say_notices(resolved)
    doc = resolved.document()
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    # Values come from files and the environment: shown, never obeyed by the terminal.
    click.echo(visible(f"config file: {doc['config_file'] or '(none found)'}"))
    if doc["project_file"]:
        project = f"project file: {doc['project_file']} (only some settings: see README)"
        click.echo(visible(project))
    click.echo(visible(f"profile:     {doc['profile'] or '(none)'}"))
    key_state = "set (never shown or stored)" if doc["api_key_set"] else "not set"
    click.echo(f"OPENAI_API_KEY: {key_state}\n")
    rows = [
        (
            name,
            "-" if item["value"] is None else visible(str(item["value"])),
            visible(item["source"]),
        )
        for name, item in doc["settings"].items()
    ]
    width = [max(len(r[i]) for r in rows) for i in (0, 1)]
    for name, value, source in rows:
        click.echo(f"{name:<{width[0]}}  {value:<{width[1]}}  {source}")
    for model, entry in doc["prices"].items():  # [prices."MODEL"]: USD per million tokens
        shown = ", ".join(f"{key} {value:g}" for key, value in entry.items())
        click.echo(f"price of {model}: {shown} (USD per million tokens)")
