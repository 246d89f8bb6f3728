"""One setting's declaration (``Setting``) and the checks its value passes, wherever it
comes from (a flag, an environment variable, a config file).

A bad value is a ``UsageError`` that names its source (``--timeout``, ``CWM_AGENT_TIMEOUT``,
``FILE: timeout``): a number that is not finite or out of range, a base URL that is not
http(s), holds whitespace or names no host (neither a host name nor an IP address), a
size that is not one, a JSON object holding a key-like name at any depth.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cwm_agent.errors import UsageError
from cwm_agent.redaction import is_secret_name, url_without_credentials

JSON = "json"  # the kind of settings whose value is a JSON object (or null)


@dataclass(frozen=True)
class Setting:
    """One configurable value. ``kind``: str, int, float, bool, JSON or a tuple of choices.

    ``group`` names the record it fills (model, agent, runtime, scaling) and ``field`` the
    field there (default: the setting's name). ``minimum`` bounds numbers (``above``: the
    bound itself is refused). ``flags`` overrides the option declaration, e.g. a
    ``--x/--no-x`` pair. ``check`` returns what is wrong with a value, or None.
    ``project``: a checkout's own ``./cwm-agent.toml`` may set it (see ``config_files``);
    ``project_cap``: only lower it, to at most the user's own value or the default (a
    checkout must not hold a run for days by ``timeout = 1e12``).
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
    check: Callable[[Any], str | None] | None = None
    project: bool = False
    project_cap: bool = False

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

    def shown(self, value: Any) -> Any:
        """``value`` as it may be stored or shown: a URL setting's without ``user:password@``
        and secret-named query values (the client still uses them). Every URL setting,
        whatever its name."""
        if self.check is http_url and isinstance(value, str) and value:
            return url_without_credentials(value)
        return value


def http_url(value: str) -> str | None:
    """What is wrong with ``value`` as a model server's base URL, or None."""
    if any(c.isspace() or not c.isprintable() for c in value):
        # urlsplit drops tabs and newlines and keeps spaces: either way the client would
        # try a host no one meant, and retry it to exit 3 instead of saying so
        return "holds whitespace or a control character"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http(s) URL"
    if not _valid_host(parts.hostname, bracketed="[" in parts.netloc):
        return f"has the host {parts.hostname!r}, which is neither a host name nor an IP address"
    return None


_HOST_NAME = re.compile(r"[\w-]+(\.[\w-]+)*\.?")  # \w: letters of any script, digits, _


def _valid_host(host: str, *, bracketed: bool) -> bool:
    if bracketed:  # [::1], [fe80::1%25eth0]
        try:
            ipaddress.IPv6Address(host.replace("%25", "%"))
        except ValueError:
            return False
        return True
    return _HOST_NAME.fullmatch(host) is not None


_SIZE = re.compile(r"(\d+(?:\.\d+)?)([bkmg]?)b?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
MIN_SIZE = 1024**2  # a tmpfs smaller than this holds nothing useful; 0 is the kernel's "no limit"


def size_bytes(text: str) -> int:
    """A size as Docker's ``--memory`` takes it (``512m``, ``1.5g``, ``8mb``, bytes without
    a unit; binary units), in bytes. Parsed here: the docker SDK's parser costs 0.4 s of
    imports and passes ``nan`` and negative sizes through."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError("expected a number with b, k, m or g, e.g. 512m or 1g")
    return int(float(match[1]) * _UNITS[match[2].lower()])


def byte_size(value: str) -> str | None:
    """What is wrong with ``value`` as a tmpfs size, or None."""
    try:
        size = size_bytes(value)
    except ValueError as exc:
        return f"is not a size ({exc})"
    except OverflowError:  # digits beyond a float's range
        return "is too large"
    if size < MIN_SIZE:
        return "is too small (at least 1m)"
    if size >= 2**63:
        return "is too large"
    return None


def describe(spec: Setting) -> str:
    if isinstance(spec.kind, tuple):
        return "one of " + ", ".join(spec.kind)
    if spec.kind is JSON:
        return "a JSON object"
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return names[spec.kind]


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def from_env(spec: Setting, var: str, raw: str) -> Any:
    hint = f"fix or unset {var}"
    value: Any = None
    if spec.kind is JSON:
        value = json_object(spec, raw, var)
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
        raise UsageError(f"{var}={raw!r}: expected {describe(spec)}", hint=hint)
    return checked(spec, value, var, hint)


def from_flag(spec: Setting, value: Any) -> Any:
    if spec.kind is JSON and isinstance(value, str):
        value = json_object(spec, value, spec.flag)
    return checked(spec, value, spec.flag)


def from_file(spec: Setting, value: Any, where: str) -> Any:
    """A value read from a TOML file; ``where`` is ``FILE: [profiles.P] key``."""
    if spec.kind is JSON and isinstance(value, str):
        value = json_object(spec, value, where)
    if not _type_ok(spec, value):
        raise UsageError(f"{where} = {value!r}: expected {describe(spec)}")
    return checked(spec, float(value) if spec.kind is float else value, where)


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


def json_object(spec: Setting, raw: str, where: str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not JSON: {exc}", hint=f"give {describe(spec)}") from exc
    if value is not None and not isinstance(value, dict):
        raise UsageError(
            f"{where} must be {describe(spec)}, not {type(value).__name__}",
            hint="e.g. '{\"enable_thinking\": true}', or '{}' for none",
        )
    return value


def checked(spec: Setting, value: Any, where: str, hint: str = "") -> Any:
    """``value`` when it is in range, finite, passes ``spec.check`` and holds no key."""
    if value is None:
        return value
    if spec.kind in (int, float):
        _in_range(spec, value, where, hint)
    if spec.kind is JSON:
        _no_secret_names(value, where, "")
    problem = spec.check(value) if spec.check is not None else None
    if problem:
        shown = url_without_credentials(value) if isinstance(value, str) else value
        raise UsageError(f"{where} {shown!r} {problem}", hint=hint or _check_hint(spec))
    return value


def _in_range(spec: Setting, value: Any, where: str, hint: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{where} must be a finite number, not {value!r}", hint=hint)
    low, high = spec.minimum, spec.maximum
    if low is not None and (value < low or (spec.above and value == low)):
        bound = f"greater than {low:g}" if spec.above else f"at least {low:g}"
        raise UsageError(f"{where} must be {bound}, not {value!r}", hint=hint)
    if high is not None and value > high:
        raise UsageError(f"{where} must be at most {high:g}, not {value!r}", hint=hint)


def _no_secret_names(value: Any, where: str, path: str) -> None:
    """A key nested anywhere in a JSON setting would be sent to the server and stored."""
    if not isinstance(value, (dict, list)):
        return
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        inner = (f"{path}.{key}" if path else key) if isinstance(key, str) else f"{path}[{key}]"
        if isinstance(key, str) and is_secret_name(key):
            raise UsageError(
                f"{where}: {inner!r} looks like a key, and keys are not read from settings "
                "(this object is sent to the server and recorded in every trajectory)",
                hint="remove it; the API key comes only from env OPENAI_API_KEY",
            )
        _no_secret_names(item, where, inner)


def _check_hint(spec: Setting) -> str:
    if spec.check is byte_size:
        return "give a size such as 512m or 1g"
    return "e.g. http://gpu:8000/v1" if spec.name == "base_url" else f"see {spec.flag} --help"
