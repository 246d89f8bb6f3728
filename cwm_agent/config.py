"""Settings that users configure: flag > env > config file > default, each with its source.

The config file is TOML, found at ``--config PATH`` (or env ``CWM_AGENT_CONFIG``), else
``./cwm-agent.toml``, else ``$XDG_CONFIG_HOME/cwm-agent/config.toml`` (``~/.config/...``).
Top-level keys are the base; ``[profiles.NAME]`` tables override them when chosen with
``--profile NAME`` (env ``CWM_AGENT_PROFILE``, or ``profile = "NAME"`` in the file). Keys
never come from a file: a key-like entry is refused so that it is not committed by mistake.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from cwm_agent.errors import UsageError

try:  # Python 3.11+; `tomli` is the same parser for 3.10
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

LOCAL_FILE = "cwm-agent.toml"
_SECRET_KEY = re.compile(r"(^|_)(api_?key|key|secret|password|token)s?$", re.IGNORECASE)


@dataclass(frozen=True)
class Setting:
    name: str
    kind: Any  # str, int, float, or a tuple of allowed strings
    default: Any
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_vars(self) -> tuple[str, ...]:
        own = f"CWM_AGENT_{self.name.upper()}"
        return (own, "OPENAI_BASE_URL") if self.name == "base_url" else (own,)


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("model", str, None, "Model name."),
        Setting("base_url", str, None, "OpenAI-compatible API base URL."),
        Setting(
            "tool_format", ("cwm", "openai"), "cwm", "cwm: CWM's <tool: NAME> text; openai: native."
        ),
        Setting(
            "api",
            ("chat", "completions"),
            "chat",
            "chat: the server's /v1/chat/completions; completions: CWM's chat format rendered "
            "here and sent to /v1/completions.",
        ),
        Setting("temperature", float, 1.0, "Sampling temperature."),
        Setting("top_p", float, 0.95, "Nucleus sampling."),
        Setting("max_tokens", int, 65_536, "Tokens per model reply."),
        Setting("request_timeout", float, 600.0, "Seconds to wait for one model reply."),
        Setting("max_retries", int, 4, "Retries of a failed model request (429, 5xx, time-outs)."),
        Setting("runtime", ("local", "docker"), "local", "Where commands run."),
        Setting("image", str, None, "Docker image (with --runtime docker)."),
        Setting("workdir", str, "/repo", "Repository path inside the container."),
        Setting("max_steps", int, 128, "Turns before the run stops."),
        Setting("timeout", float, 120.0, "Seconds per command."),
        Setting("max_context", int, 131_072, "Context window in tokens."),
        Setting("max_format_errors", int, 5, "Consecutive format errors that end the run."),
    )
}


@dataclass(frozen=True)
class Resolved:
    """Every setting's value and where it came from (``flag --x``, ``env X``, ``file P``...)."""

    values: dict[str, Any]
    sources: dict[str, str]
    config_file: Path | None
    profile: str | None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def document(self) -> dict[str, Any]:
        """The `config show --json` shape: no secrets, only whether the key is set."""
        return {
            "config_file": str(self.config_file) if self.config_file else None,
            "profile": self.profile,
            "api_key_set": bool(os.environ.get("OPENAI_API_KEY")),
            "settings": {
                name: {"value": self.values[name], "source": self.sources[name]}
                for name in SETTINGS
            },
        }


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "cwm-agent" / "config.toml"


def find_config_file(
    explicit: str | None, env: Mapping[str, str], cwd: Path | None = None
) -> Path | None:
    """``--config`` / ``CWM_AGENT_CONFIG`` (must exist), else the first that exists."""
    explicit = explicit or env.get("CWM_AGENT_CONFIG") or None
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UsageError(f"config file not found: {path}", hint="check --config PATH")
        return path
    for path in ((cwd or Path.cwd()) / LOCAL_FILE, user_config_path(env)):
        if path.is_file():
            return path
    return None


def resolve(
    flags: Mapping[str, Any],
    config: str | None = None,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    use_file: bool = True,
) -> Resolved:
    """Resolve every setting. ``flags`` holds only the options given on the command line."""
    env = os.environ if env is None else env
    path = find_config_file(config, env, cwd) if use_file else None
    profile = (profile or env.get("CWM_AGENT_PROFILE") or None) if use_file else None
    file_layer, profile = _file_layer(path, profile)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, spec in SETTINGS.items():
        if flags.get(name) is not None:
            values[name], sources[name] = flags[name], f"flag {spec.flag}"
            continue
        var = next((v for v in spec.env_vars if env.get(v)), None)
        if var is not None:
            values[name], sources[name] = _from_env(spec, var, env[var]), f"env {var}"
        elif name in file_layer:
            values[name], sources[name] = file_layer[name]
        else:
            values[name], sources[name] = spec.default, "default"
    return Resolved(values, sources, path, profile)


def _file_layer(path: Path | None, profile: str | None) -> tuple[dict[str, Any], str | None]:
    if path is None:
        if profile:
            raise UsageError(
                f"profile {profile!r} asked for, but there is no config file",
                hint=f"create ./{LOCAL_FILE} or {user_config_path()}, or pass --config PATH",
            )
        return {}, None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from exc
    profiles = data.pop("profiles", {})
    default_profile = data.pop("profile", None)
    if not isinstance(profiles, dict) or not all(isinstance(t, dict) for t in profiles.values()):
        raise UsageError(f"{path}: 'profiles' must hold [profiles.NAME] tables")
    layer = {k: (v, f"file {path}") for k, v in _checked(data, path, "").items()}
    # Every profile is checked, used or not: a typo or a key must not wait for its day.
    checked = {n: _checked(t, path, f"[profiles.{n}] ") for n, t in profiles.items()}
    profile = profile or default_profile
    if profile is not None:
        if profile not in checked:
            known = ", ".join(sorted(checked)) or "none"
            raise UsageError(
                f"no profile {profile!r} in {path}", hint=f"profiles defined there: {known}"
            )
        for key, value in checked[profile].items():
            layer[key] = (value, f"file {path} [profiles.{profile}]")
    return layer, profile


def _checked(table: dict[str, Any], path: Path, where: str) -> dict[str, Any]:
    for key, value in table.items():
        spec = SETTINGS.get(key)
        if spec is None and _SECRET_KEY.search(key):
            raise UsageError(
                f"{path}: {where}{key}: keys are not read from config files",
                hint="remove it from the file and export OPENAI_API_KEY in the environment",
            )
        if spec is None:
            raise UsageError(
                f"{path}: {where}unknown setting {key!r}",
                hint="known settings: " + ", ".join(SETTINGS),
            )
        if not _type_ok(spec, value):
            raise UsageError(f"{path}: {where}{key} = {value!r}: expected {_describe(spec)}")
    return {k: float(v) if SETTINGS[k].kind is float else v for k, v in table.items()}


def _type_ok(spec: Setting, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(spec.kind, tuple):
        return value in spec.kind
    if spec.kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, spec.kind)


def _describe(spec: Setting) -> str:
    if isinstance(spec.kind, tuple):
        return "one of " + ", ".join(spec.kind)
    return {str: "a string", int: "an integer", float: "a number"}[spec.kind]


def _from_env(spec: Setting, var: str, raw: str) -> Any:
    try:
        value: Any = spec.kind(raw) if spec.kind in (int, float) else raw
    except ValueError:
        value = None
    if value is None or (isinstance(spec.kind, tuple) and raw not in spec.kind):
        raise UsageError(f"{var}={raw!r}: expected {_describe(spec)}", hint=f"fix or unset {var}")
    return value


# -- click glue --------------------------------------------------------------------------


def setting_option(name: str, *decls: str, **kwargs: Any) -> Callable[[Any], Any]:
    """A click option for a setting: no click default, so `resolve` can tell it was not given."""
    spec = SETTINGS[name]
    kind = click.Choice(list(spec.kind)) if isinstance(spec.kind, tuple) else spec.kind
    kwargs.setdefault("help", spec.help)
    if spec.default is not None:  # shown by hand: click would print a default=None option bare
        kwargs["help"] += f"  [default: {spec.default}]"
    return click.option(*(decls or (spec.flag,)), name, type=kind, default=None, **kwargs)


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--config`` and ``--profile``, shared by every command that reads settings."""
    func = click.option(
        "--profile",
        metavar="NAME",
        help="Use [profiles.NAME] of the config file [env CWM_AGENT_PROFILE].",
    )(func)
    return click.option(
        "--config",
        "config_path",
        metavar="PATH",
        help=f"Config file [env CWM_AGENT_CONFIG; default ./{LOCAL_FILE}, "
        "then ~/.config/cwm-agent/config.toml].",
    )(func)


def typed_settings(ctx: click.Context, params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings the user typed on this command line (the flag layer)."""
    typed = click.core.ParameterSource.COMMANDLINE
    return {n: params[n] for n in SETTINGS if ctx.get_parameter_source(n) is typed}


def resolve_from_context(ctx: click.Context, params: Mapping[str, Any]) -> Resolved:
    """Resolve with the settings the user typed on this command line."""
    return resolve(typed_settings(ctx, params), params.get("config_path"), params.get("profile"))


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
    doc = resolved.document()
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"config file: {doc['config_file'] or '(none found)'}")
    click.echo(f"profile:     {doc['profile'] or '(none)'}")
    key_state = "set (never shown or stored)" if doc["api_key_set"] else "not set"
    click.echo(f"OPENAI_API_KEY: {key_state}\n")
    rows = [
        (name, "-" if item["value"] is None else str(item["value"]), item["source"])
        for name, item in doc["settings"].items()
    ]
    width = [max(len(r[i]) for r in rows) for i in (0, 1)]
    for name, value, source in rows:
        click.echo(f"{name:<{width[0]}}  {value:<{width[1]}}  {source}")
