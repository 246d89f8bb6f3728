"""Config files: which ones are read, and what each one may set.

- ``--config PATH`` (or env ``CWM_AGENT_CONFIG``): that file alone, trusted.
- Otherwise the user's own ``$XDG_CONFIG_HOME/cwm-agent/config.toml`` (``~/.config/...``),
  trusted, and on top of it the *project file* ``./cwm-agent.toml`` of the current
  directory. A project file comes with whatever checkout one works in, so it is not
  trusted: it may set only the settings marked ``project`` (how an episode runs in this
  repository: timeouts, the test command, sampling; a limit marked ``project_cap`` only
  below the user's own value or the default) and never where the model is (where
  the key goes), what the model is told (templates), how commands are confined, what runs
  on the host, or what a run may spend. The rest of it is ignored, and reading it is
  always said on stderr.

Top-level keys are the base; ``[profiles.NAME]`` tables override them when chosen with
``--profile NAME`` (env ``CWM_AGENT_PROFILE``, or ``profile = "NAME"`` in the file; a
project file's ``profile`` chooses among its own profiles only). Keys are never read from
a file: a key-like entry is refused so that it is not committed by mistake. A
``[prices."MODEL"]`` table (``input``, ``output``, ``cached_input``: USD per million
tokens) prices the model of that name where no flag, variable or key does; a project
file's is ignored like its budgets.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cwm_agent.config_values import Setting, from_file
from cwm_agent.errors import UsageError
from cwm_agent.redaction import is_secret_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - `tomli` is the same parser for 3.10
    import tomli as tomllib

LOCAL_FILE = "cwm-agent.toml"
PRICES = "prices"  # the [prices."MODEL"] table: input, output, cached_input (USD per 1M tokens)
PRICE_KEYS = ("input", "output", "cached_input")

PriceEntry = tuple[dict[str, float], str]  # a model's prices, and the file they came from


@dataclass(frozen=True)
class FileLayer:
    """What the config files set: name -> (value, source), and what was read or ignored."""

    values: dict[str, tuple[Any, str]]
    config_file: Path | None  # the trusted file (--config, or the user's own)
    project_file: Path | None  # ./cwm-agent.toml, read with the project rule
    profile: str | None
    ignored: tuple[str, ...] = ()  # project-file keys a project may not set
    project_keys: tuple[str, ...] = ()  # the settings a project file may set
    prices: dict[str, PriceEntry] = field(default_factory=dict)  # trusted files' [prices]
    capped: tuple[str, ...] = ()  # "timeout at 120": project values lowered to the cap

    @property
    def notices(self) -> tuple[str, ...]:
        """What to say on stderr: a project file is never read silently."""
        if self.project_file is None:
            return ()
        used = sorted({n for n, (_, src) in self.values.items() if src.startswith("project")})
        text = f"read {self.project_file} from the current directory (a project file)"
        text += f": {', '.join(used)}" if used else ": nothing it sets is used"
        if self.capped:
            text += (
                f"; capped {', '.join(self.capped)}: a project file may lower a limit, not "
                "raise it above your own value or the default"
            )
        if self.ignored:
            text += (
                f"; ignored {', '.join(sorted(set(self.ignored)))}: a project file may set "
                f"only {', '.join(self.project_keys)} (pass --config {self.project_file} "
                "to trust it)"
            )
        return (text,)


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "cwm-agent" / "config.toml"


def find_files(
    explicit: str | None, env: Mapping[str, str], cwd: Path | None = None
) -> tuple[Path | None, Path | None]:
    """(trusted file, project file). ``--config`` / ``CWM_AGENT_CONFIG`` must exist and is
    then the only file read."""
    explicit = explicit or env.get("CWM_AGENT_CONFIG") or None
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UsageError(f"config file not found: {path}", hint="check --config PATH")
        return path, None
    user = user_config_path(env)
    project = (cwd or Path.cwd()) / LOCAL_FILE
    trusted = user if user.is_file() else None
    if not project.is_file() or (trusted is not None and _same(project, trusted)):
        return trusted, None
    return trusted, project


def read_layer(
    settings: Mapping[str, Setting],
    explicit: str | None,
    profile: str | None,
    env: Mapping[str, str],
    cwd: Path | None = None,
) -> FileLayer:
    """The file layer of ``resolve``: the trusted file, then the project file's allowed keys."""
    trusted, project = find_files(explicit, env, cwd)
    chosen = profile or env.get("CWM_AGENT_PROFILE") or None
    tables = [(p, p is trusted, _read(p, settings)) for p in (trusted, project) if p]
    if chosen and not tables:
        raise UsageError(
            f"profile {chosen!r} asked for, but there is no config file",
            hint=f"create {user_config_path(env)}, or pass --config PATH",
        )
    if chosen and not any(chosen in table.profiles for _, _, table in tables):
        known = ", ".join(sorted({n for _, _, t in tables for n in t.profiles})) or "none"
        where = " or ".join(str(p) for p, _, _ in tables)
        raise UsageError(f"no profile {chosen!r} in {where}", hint=f"profiles defined: {known}")
    values: dict[str, tuple[Any, str]] = {}
    ignored: list[str] = []
    capped: list[str] = []
    prices: dict[str, PriceEntry] = {}
    used_profile = chosen
    for path, is_trusted, table in tables:
        if table.prices and not is_trusted:  # what a run may spend is the user's business
            ignored.append(PRICES)
        elif table.prices:
            prices.update(
                (model, (entry, f"file {path} [{PRICES}.{_quoted(model)}]"))
                for model, entry in table.prices.items()
            )
        name = chosen or table.default_profile
        if name is not None and chosen is None and name not in table.profiles:
            raise UsageError(
                f"{path}: profile = {name!r}, but there is no [profiles.{name}]",
                hint="define that profile or remove the line",
            )
        used_profile = used_profile or (name if is_trusted else None)
        kind = "file" if is_trusted else "project file"
        layer = {k: (v, f"{kind} {path}") for k, v in table.top.items()}
        if name is not None and name in table.profiles:
            source = f"{kind} {path} [profiles.{name}]"
            layer.update((k, (v, source)) for k, v in table.profiles[name].items())
        for key, item in layer.items():
            if is_trusted:
                values[key] = item
            elif settings[key].project:
                values[key] = _project_value(settings[key], item, values.get(key), capped)
            else:
                ignored.append(key)
    allowed = tuple(n for n, s in settings.items() if s.project)
    return FileLayer(
        values, trusted, project, used_profile, tuple(ignored), allowed, prices, tuple(capped)
    )


def _project_value(
    spec: Setting, item: tuple[Any, str], own: tuple[Any, str] | None, capped: list[str]
) -> tuple[Any, str]:
    """A project file's value; a capped limit at most the user's file value or the default
    (the cap noted in ``capped`` and in the value's source)."""
    value, source = item
    cap = own[0] if own is not None else spec.default
    if not spec.project_cap or value is None or cap is None or value <= cap:
        return item
    capped.append(f"{spec.name} at {cap:g}")
    return cap, f"{source} (capped at {cap:g})"


@dataclass(frozen=True)
class _Table:
    top: dict[str, Any]
    profiles: dict[str, dict[str, Any]]
    default_profile: str | None
    prices: dict[str, dict[str, float]] = field(default_factory=dict)


def _read(path: Path, settings: Mapping[str, Setting]) -> _Table:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from exc
    profiles = data.pop("profiles", {})
    default_profile = data.pop("profile", None)
    prices = _price_table(data.pop(PRICES, {}), path, settings)
    if not isinstance(profiles, dict) or not all(isinstance(t, dict) for t in profiles.values()):
        raise UsageError(f"{path}: 'profiles' must hold [profiles.NAME] tables")
    if default_profile is not None and not isinstance(default_profile, str):
        raise UsageError(f"{path}: profile = {default_profile!r}: expected a profile name")
    top = _checked(data, path, "", settings)
    # Every profile is checked, used or not: a typo or a key must not wait for its day.
    checked = {n: _checked(t, path, f"[profiles.{n}] ", settings) for n, t in profiles.items()}
    return _Table(top, checked, default_profile, prices)


def _price_table(
    table: Any, path: Path, settings: Mapping[str, Setting]
) -> dict[str, dict[str, float]]:
    """``[prices."MODEL"]`` tables, each value checked as its ``price_*`` setting is."""
    example = f'[{PRICES}."gpt-4.1"] input = 2.0, output = 8.0, cached_input = 0.5'
    if not isinstance(table, dict) or not all(isinstance(e, dict) for e in table.values()):
        raise UsageError(f"{path}: '{PRICES}' must hold one table per model", hint=example)
    prices: dict[str, dict[str, float]] = {}
    for model, entry in table.items():
        where = f"{path}: [{PRICES}.{_quoted(model)}]"
        unknown = sorted(set(entry) - set(PRICE_KEYS))
        if unknown:
            raise UsageError(
                f"{where}: unknown key {unknown[0]!r}",
                hint=f"a price has {', '.join(PRICE_KEYS)} (USD per million tokens)",
            )
        prices[model] = {
            key: from_file(settings[f"price_{key}"], value, f"{where} {key}")
            for key, value in entry.items()
        }
    return prices


def _quoted(model: str) -> str:
    return '"' + model.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _checked(
    table: dict[str, Any], path: Path, where: str, settings: Mapping[str, Setting]
) -> dict[str, Any]:
    values = {}
    for key, value in table.items():
        spec = settings.get(key)
        if spec is None and is_secret_name(key):
            raise UsageError(
                f"{path}: {where}{key}: keys are not read from config files",
                hint="remove it from the file and export OPENAI_API_KEY in the environment",
            )
        if spec is None:
            raise UsageError(
                f"{path}: {where}unknown setting {key!r}",
                hint="known settings: " + ", ".join(settings),
            )
        values[key] = from_file(spec, value, f"{path}: {where}{key}")
    return values


def _same(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False
