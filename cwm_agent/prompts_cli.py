"""`cwm-agent prompts list|show|import-cwm`: the prompt sets a run can use (``--prompts``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from cwm_agent import prompt_sets
from cwm_agent.console import say
from cwm_agent.prompt_sets import SET_TEMPLATES, PromptSet


@click.group("prompts")
def prompts_group() -> None:
    """The prompt sets: the bundled one (our words) and the ones you import or write.

    A run picks one with --prompts NAME|./DIR (setting `prompts`, env CWM_AGENT_PROMPTS;
    a folder is given as a path holding a '/', a bare NAME is only a bundled or imported set);
    it supplies the system, user, format-error, submission and test-generation texts.
    Named sets live in $XDG_CONFIG_HOME/cwm-agent/prompts/NAME/ (~/.config/...).

    \b
    Examples:
      cwm-agent prompts import-cwm ~/src/cwm        # CWM's own prompts, as the set "cwm"
      cwm-agent prompts list
      cwm-agent prompts show cwm
      cwm-agent run . --issue-file ISSUE.md --model facebook/cwm --prompts cwm
    """


@prompts_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def list_command(as_json: bool) -> None:
    """List the prompt sets, with the hash of the templates each one makes a run use.

    \b
    Examples:
      cwm-agent prompts list
      cwm-agent prompts list --json | jq '.[].sha256'
    """
    found = prompt_sets.available()
    if as_json:
        click.echo(json.dumps([s.record() for s in found], indent=2))
        return
    width = max(len(s.name) for s in found)
    for item in found:
        origin = item.manifest.get("source") or (
            "our own words" if item.directory is None else "written by hand"
        )
        click.echo(f"{item.name:<{width}}  {item.sha256[:12]}  {_where(item)}  ({origin})")


@prompts_group.command("show")
@click.argument("name")
@click.option("--template", type=click.Choice(SET_TEMPLATES), help="Only this template.")
def show_command(name: str, template: str | None) -> None:
    """Print the templates a set makes a run use (NAME: a set name, bundled, or a folder as ./DIR).

    \b
    Examples:
      cwm-agent prompts show cwm
      cwm-agent prompts show bundled --template system
      cwm-agent prompts show ./my-prompts
    """
    chosen = prompt_sets.load(name)
    own = set(chosen.own)
    click.echo(f"# prompt set {chosen.name}: {_where(chosen)}, sha256 {chosen.sha256}")
    if chosen.manifest.get("source"):
        commit = chosen.manifest.get("commit") or "unknown commit"
        click.echo(f"# imported from {chosen.manifest['source']} ({commit})")
    for item, path in chosen.files().items():
        if template and item != template:
            continue
        origin = "" if item in own else " (bundled)"
        click.echo(f"\n== {item}.j2{origin} ==\n{path.read_text(encoding='utf-8').rstrip()}")


@prompts_group.command("import-cwm")
@click.argument("checkout", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", default="cwm", show_default=True, help="Name of the set to write.")
@click.option("--force", is_flag=True, help="Replace a set of that name.")
def import_command(checkout: Path, name: str, force: bool) -> None:
    """Import CWM's own prompts from your checkout of facebookresearch/cwm.

    The prompt constants are read from CHECKOUT's source (parsed, never imported: CWM's RL
    stack needs GPU packages) and stored as a prompt set, composed the way CWM's SWE
    environment composes them. Nothing of CWM's text ships with cwm-agent.

    \b
    Examples:
      git clone https://github.com/facebookresearch/cwm ~/src/cwm
      cwm-agent prompts import-cwm ~/src/cwm
      cwm-agent prompts import-cwm ~/src/cwm --name cwm-release --force
    """
    from cwm_agent.cwm_prompts import import_templates

    templates, facts = import_templates(checkout)
    manifest = {
        "name": name,
        "kind": "imported from facebookresearch/cwm",
        **facts,
        "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    written = prompt_sets.write_set(name, templates, manifest, force=force)
    say(
        f"imported CWM's prompts from {checkout} as the set {name!r} "
        f"({written.directory}, sha256 {written.sha256[:12]}); use it with --prompts {name}"
    )


def _where(item: PromptSet) -> str:
    return str(item.directory) if item.directory is not None else "bundled with cwm-agent"
