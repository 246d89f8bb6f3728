"""Settings that users configure: flag > env > config file > default, each with its source.

Every setting is one ``Setting`` below: its type, default, help, range, and the record
(``group``) and field it fills (``settings.py`` builds the records from them, ``options.py``
declares their flags). Adding one is one ``Setting`` plus one field of that record.

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
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cwm_agent.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - `tomli` is the same parser for 3.10
    import tomli as tomllib

LOCAL_FILE = "cwm-agent.toml"
_SECRET_KEY = re.compile(r"(^|_)(api_?key|key|secret|password|token)s?$", re.IGNORECASE)
JSON = "json"  # the kind of settings whose value is a JSON object (or null)


@dataclass(frozen=True)
class Setting:
    """One configurable value. ``kind``: str, int, float, bool, JSON or a tuple of choices.

    ``group`` names the record it fills (model, agent, runtime, scaling) and ``field`` the
    field there (default: the setting's name). ``minimum`` bounds numbers (``above``: the
    bound itself is refused). ``flags`` overrides the option declaration, e.g. a
    ``--x/--no-x`` pair.
    """

    name: str
    kind: Any
    default: Any
    help: str
    group: str
    field: str = ""
    minimum: float | None = None
    above: bool = False
    maximum: float | None = None
    flags: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def target(self) -> str:
        return self.field or self.name

    @property
    def env_vars(self) -> tuple[str, ...]:
        own = f"CWM_AGENT_{self.name.upper()}"
        return (own, "OPENAI_BASE_URL") if self.name == "base_url" else (own,)


def _settings(*specs: Setting) -> dict[str, Setting]:
    return {s.name: s for s in specs}


SETTINGS: dict[str, Setting] = _settings(
    # -- the model and how it is asked (ModelSettings) --
    Setting("model", str, None, "Model name.", "model", field="name"),
    Setting("base_url", str, None, "OpenAI-compatible API base URL.", "model"),
    Setting(
        "api",
        ("auto", "chat", "completions"),
        "auto",
        "chat: the server's /v1/chat/completions; completions: CWM's chat format rendered "
        "here and sent to /v1/completions; auto: completions for models named like CWM "
        "(the name contains 'cwm'), else chat.",
        "model",
    ),
    Setting("temperature", float, 1.0, "Sampling temperature.", "model", minimum=0),
    Setting("top_p", float, 0.95, "Nucleus sampling.", "model", minimum=0, above=True, maximum=1),
    Setting(
        "request_timeout",
        float,
        600.0,
        "Seconds to wait for one model reply.",
        "model",
        minimum=0,
        above=True,
    ),
    Setting(
        "max_retries",
        int,
        4,
        "Retries of a failed model request (429, 5xx, time-outs).",
        "model",
        minimum=0,
    ),
    Setting(
        "chat_template_kwargs",
        JSON,
        None,
        "JSON object for vLLM's chat_template_kwargs (default: CWM's thinking switches "
        "when the model name contains 'cwm'; '{}' sends none).",
        "model",
    ),
    # -- one episode's format and limits (AgentConfig) --
    Setting(
        "tool_format",
        ("cwm", "openai"),
        "cwm",
        "cwm: CWM's <tool: NAME> text; openai: native.",
        "agent",
    ),
    Setting("max_tokens", int, 65_536, "Tokens per model reply.", "agent", "max_reply_tokens", 1),
    Setting("max_steps", int, 128, "Turns before the run stops.", "agent", minimum=1),
    Setting("timeout", float, 120.0, "Seconds per command.", "agent", minimum=0, above=True),
    Setting("max_context", int, 131_072, "Context window in tokens.", "agent", minimum=1),
    Setting(
        "max_format_errors",
        int,
        5,
        "Consecutive format errors that end the run.",
        "agent",
        minimum=1,
    ),
    Setting(
        "max_output_tokens",
        int,
        32_768,
        "Tokens of one tool result before its middle is cut (CWM's per-message limit).",
        "agent",
        minimum=1,
    ),
    Setting(
        "max_patch_kb",
        int,
        1024,
        "KiB a patch may hold: a larger submission is refused (the model is told which "
        "files make it large); a larger working-tree diff is written beside the "
        "trajectory instead of into it.",
        "agent",
        minimum=1,
    ),
    Setting(
        "prompts",
        str,
        None,
        "Prompt set: a name from `cwm-agent prompts list`, or a folder of templates "
        "[default: the bundled set].",
        "agent",
    ),
    Setting(
        "submit_on_limit",
        bool,
        False,
        "At a limit without a submission, emit the working-tree diff if valid.",
        "agent",
    ),
    Setting(
        "trace_prediction",
        bool,
        False,
        "Before showing a test's result, compare the model's predicted trace.",
        "agent",
        flags=("--trace-prediction/--no-trace-prediction",),
    ),
    # -- where commands run (RuntimeSettings) --
    Setting("runtime", ("local", "docker"), "local", "Where commands run.", "runtime"),
    Setting("image", str, None, "Docker image (with --runtime docker).", "runtime"),
    Setting("workdir", str, "/repo", "Repository path inside the container.", "runtime"),
    Setting("repo_in_image", bool, False, "Use the repository already in the image.", "runtime"),
    Setting("network", bool, False, "Give the container networking (off by default).", "runtime"),
    Setting("memory", str, "4g", "Container memory limit.", "runtime"),
    Setting("pids_limit", int, 1024, "Container process limit.", "runtime", minimum=1),
    Setting(
        "shell_init",
        str,
        None,
        "Bash run quietly at the start of every shell session (and after each restart), "
        "e.g. 'source /opt/miniconda3/bin/activate testbed' [default: that line for "
        "SWE-bench images with a testbed env; '' for nothing].",
        "runtime",
    ),
    Setting(
        "sandbox",
        ("auto", "bwrap", "none"),
        "auto",
        "The local runtime's sandbox: bwrap (bubblewrap: read-only system, private /tmp, "
        "no network unless --network, own PID namespace), none, or auto (bwrap where it "
        "works).",
        "runtime",
    ),
    # -- test-time scaling (ScalingSettings) --
    Setting(
        "attempts",
        int,
        1,
        "Independent rollouts; with more than one, sample that many patches and select "
        "one with tests (CWM's test-time scaling).",
        "scaling",
        minimum=1,
    ),
    Setting(
        "test_cmd",
        str,
        None,
        "The repository's tests: run once on the unpatched base and on every distinct "
        "patch; the tests that pass on the base count, one each (from pytest's per-test "
        "report; a command that writes none counts by its exit code) [default: 'python3 -m "
        "pytest -q -p no:cacheprovider' when the repository has a tests folder or test_*.py "
        "files; '' for none].",
        "scaling",
    ),
    Setting(
        "test_timeout",
        float,
        900.0,
        "Seconds for one run of --test-cmd.",
        "scaling",
        minimum=0,
        above=True,
    ),
    Setting(
        "repro_tests",
        int,
        5,
        "Groups of model-written reproduction tests (same normalized text) kept for the "
        "selection: the largest among those that reproduce the issue on the base (0: none "
        "written).",
        "scaling",
        minimum=0,
    ),
    Setting(
        "repro_max_steps",
        int,
        128,
        "Turns of each reproduction-test rollout (CWM's test-generation budget).",
        "scaling",
        minimum=1,
    ),
    Setting(
        "early_stop", bool, False, "Stop verifying once one patch passes every test.", "scaling"
    ),
)

GROUPS = ("model", "agent", "runtime", "scaling")


def in_group(group: str) -> list[Setting]:
    return [s for s in SETTINGS.values() if s.group == group]


@dataclass(frozen=True)
class Resolved:
    """Every setting's value and where it came from (``flag --x``, ``env X``, ``file P``...)."""

    values: dict[str, Any]
    sources: dict[str, str]
    config_file: Path | None
    profile: str | None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def given(self, name: str) -> bool:
        """Whether the user set it anywhere (flag, env or file), not left at the default."""
        return self.sources[name] != "default"

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
    defaults: Mapping[str, Any] | None = None,
) -> Resolved:
    """Resolve every setting. ``flags`` holds only the options given on the command line;
    ``defaults`` replaces some defaults (a command's own, e.g. `best-of`'s attempts)."""
    env = os.environ if env is None else env
    path = find_config_file(config, env, cwd) if use_file else None
    profile = (profile or env.get("CWM_AGENT_PROFILE") or None) if use_file else None
    file_layer, profile = _file_layer(path, profile)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, spec in SETTINGS.items():
        if flags.get(name) is not None:
            where = f"flag {spec.flag}"
            values[name], sources[name] = _from_flag(spec, flags[name], where), where
            continue
        var = next((v for v in spec.env_vars if env.get(v)), None)
        if var is not None:
            values[name], sources[name] = _from_env(spec, var, env[var]), f"env {var}"
        elif name in file_layer:
            values[name], sources[name] = file_layer[name]
        else:
            values[name] = (defaults or {}).get(name, spec.default)
            sources[name] = "default"
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
    values = {}
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
        if spec.kind is JSON and isinstance(value, str):
            value = _json_object(spec, value, f"{path}: {where}{key}")
        if not _type_ok(spec, value):
            raise UsageError(f"{path}: {where}{key} = {value!r}: expected {_describe(spec)}")
        values[key] = _in_range(spec, float(value) if spec.kind is float else value, f"{key}")
    return values


def _type_ok(spec: Setting, value: Any) -> bool:
    if spec.kind is bool:
        return isinstance(value, bool)
    if spec.kind is JSON:
        return value is None or isinstance(value, dict)
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
    if spec.kind is JSON:
        return "a JSON object"
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return names[spec.kind]


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _from_env(spec: Setting, var: str, raw: str) -> Any:
    hint = f"fix or unset {var}"
    value: Any = None
    if spec.kind is JSON:
        value = _json_object(spec, raw, var)
    elif spec.kind is bool:
        value = True if raw.lower() in _TRUE else False if raw.lower() in _FALSE else None
    elif spec.kind in (int, float):
        try:
            value = spec.kind(raw)
        except ValueError:
            value = None
    elif not isinstance(spec.kind, tuple) or raw in spec.kind:
        value = raw
    if value is None and spec.kind is not JSON:
        raise UsageError(f"{var}={raw!r}: expected {_describe(spec)}", hint=hint)
    return _in_range(spec, value, var, hint)


def _from_flag(spec: Setting, value: Any, where: str) -> Any:
    if spec.kind is JSON and isinstance(value, str):
        value = _json_object(spec, value, spec.flag)
    return _in_range(spec, value, spec.flag)


def _json_object(spec: Setting, raw: str, where: str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not JSON: {exc}", hint=f"give {_describe(spec)}") from exc
    if value is not None and not isinstance(value, dict):
        raise UsageError(
            f"{where} must be {_describe(spec)}, not {type(value).__name__}",
            hint="e.g. '{\"enable_thinking\": true}', or '{}' for none",
        )
    return value


def _in_range(spec: Setting, value: Any, where: str, hint: str = "") -> Any:
    if spec.kind not in (int, float) or value is None:
        return value
    low, high = spec.minimum, spec.maximum
    if low is not None and (value < low or (spec.above and value == low)):
        bound = f"greater than {low:g}" if spec.above else f"at least {low:g}"
        raise UsageError(f"{where} must be {bound}, not {value!r}", hint=hint)
    if high is not None and value > high:
        raise UsageError(f"{where} must be at most {high:g}, not {value!r}", hint=hint)
    return value
