"""Prompt sets: which templates write the system, user, format-error, test-generation and
submission texts.

The *bundled* set is the ``prompts/`` folder shipped in the wheel, in our own words. A
*named* set lives in ``$XDG_CONFIG_HOME/cwm-agent/prompts/NAME/`` (``cwm-agent prompts
import-cwm PATH`` writes CWM's own prompts there as the set ``cwm``); a *folder* set is
any directory of ``NAME.j2`` templates, given as a path (``./DIR``: a bare name is only
ever a set). A set may hold only some of the templates; the others come from the bundled
set. ``set.json`` beside the templates, when present, says where the set came from and
which tool formats its texts describe.

A set is identified in trajectories and by ``doctor`` by its name and the SHA-256 of the
templates a run would use (its own and the bundled ones it falls back to).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError

SET_TEMPLATES = (
    "system", "user", "format_error", "repro_user", "submission", "repro_submission",
)  # fmt: skip
BUNDLED = "bundled"
MANIFEST = "set.json"
TOOL_FORMATS = ("cwm", "openai")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HERE = Path(__file__).resolve().parent


def bundled_dir() -> Path:
    """The bundled templates: inside the installed package, else the source checkout's."""
    for candidate in (_HERE / "prompts", _HERE.parent / "prompts"):
        if (candidate / "system.j2").is_file():
            return candidate
    raise FileNotFoundError(
        f"prompt templates not found next to {_HERE}; reinstall cwm-agent (pip install cwm-agent)"
    )


def sets_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where named sets live: ``$XDG_CONFIG_HOME/cwm-agent/prompts`` (``~/.config/...``)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "cwm-agent" / "prompts"


@dataclass(frozen=True)
class PromptSet:
    """One prompt set. ``directory`` None is the bundled set alone."""

    name: str
    directory: Path | None = None
    tool_formats: tuple[str, ...] = TOOL_FORMATS
    manifest: Mapping[str, Any] = field(default_factory=dict)

    @property
    def own(self) -> list[str]:
        """The templates this set provides itself (the rest are the bundled ones)."""
        if self.directory is None:
            return list(SET_TEMPLATES)
        return [t for t in SET_TEMPLATES if (self.directory / f"{t}.j2").is_file()]

    def files(self) -> dict[str, Path]:
        """Template name -> the file a run uses for it."""
        own = set(self.own) if self.directory is not None else set()
        bundled = bundled_dir()
        return {
            t: (self.directory if t in own and self.directory else bundled) / f"{t}.j2"
            for t in SET_TEMPLATES
        }

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for name, path in sorted(self.files().items()):
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()

    def record(self) -> dict[str, Any]:
        """What trajectories and ``doctor --json`` say about the set."""
        return {
            "name": self.name,
            "path": str(self.directory or bundled_dir()),
            "sha256": self.sha256,
            "own_templates": self.own,
            "tool_formats": list(self.tool_formats),
            "source": self.manifest.get("source"),
        }

    def check_tool_format(self, tool_format: str) -> None:
        if tool_format not in self.tool_formats:
            raise UsageError(
                f"the prompt set {self.name!r} describes the {'/'.join(self.tool_formats)} "
                f"tool format, not {tool_format!r}",
                hint=f"use --tool-format {self.tool_formats[0]}, or another --prompts set",
            )


BUNDLED_SET = PromptSet(BUNDLED)


def load(spec: str | None, env: Mapping[str, str] | None = None) -> PromptSet:
    """The set ``spec`` names: None/"bundled", a set name, or a folder of templates.

    A folder is a path holding a ``/`` (``./NAME``): a bare name is only ever a bundled or
    imported set, so a checkout's ``./cwm`` folder never stands in for the set ``cwm``."""
    if not spec or spec == BUNDLED:
        return BUNDLED_SET
    if _is_path(spec):
        folder = Path(spec).expanduser()
        if folder.is_dir():
            return _from_dir(spec, folder.resolve())  # recorded as given: ./cwm is no set
        raise UsageError(
            f"no prompt folder {spec!r}: not a directory",
            hint="give an existing folder of NAME.j2 templates, or a set name "
            "(`cwm-agent prompts list` shows them)",
        )
    named = sets_dir(env) / spec
    if _NAME.fullmatch(spec) and named.is_dir():
        return _from_dir(spec, named)
    known = ", ".join(s.name for s in available(env))
    raise UsageError(
        f"no prompt set {spec!r} (the sets: {known}; imported ones live in {sets_dir(env)})",
        hint=f"`cwm-agent prompts list` shows them; give a folder as ./{spec}; "
        "`cwm-agent prompts import-cwm PATH` imports "
        "CWM's own from a checkout of facebookresearch/cwm",
    )


def _is_path(spec: str) -> bool:
    return "/" in spec or os.sep in spec or spec.startswith("~")


def _from_dir(name: str, folder: Path) -> PromptSet:
    manifest: dict[str, Any] = {}
    if (folder / MANIFEST).is_file():
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"the prompt set {name!r} has an unreadable {MANIFEST}: {exc}",
                hint=f"fix or delete {folder / MANIFEST}",
            ) from None
    formats = tuple(f for f in manifest.get("tool_formats", TOOL_FORMATS) if f in TOOL_FORMATS)
    found = PromptSet(name, folder, formats or TOOL_FORMATS, manifest)
    if not found.own:
        raise UsageError(
            f"the prompt set {name!r} ({folder}) holds none of the templates "
            f"{', '.join(t + '.j2' for t in SET_TEMPLATES)}",
            hint="put at least one of them there (the rest come from the bundled set)",
        )
    return found


def available(env: Mapping[str, str] | None = None) -> list[PromptSet]:
    """The bundled set, then every named set in the user's config folder."""
    found = [BUNDLED_SET]
    folder = sets_dir(env)
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and _NAME.fullmatch(entry.name):
                try:
                    found.append(_from_dir(entry.name, entry))
                except UsageError:
                    continue  # an empty or broken folder is not a set
    return found


def check_name(name: str) -> str:
    if name == BUNDLED or not _NAME.fullmatch(name):
        raise UsageError(
            f"{name!r} cannot name a prompt set",
            hint="use letters, digits, '.', '_' or '-' (and not 'bundled')",
        )
    return name


def write_set(
    name: str,
    templates: Mapping[str, str],
    manifest: Mapping[str, Any],
    *,
    force: bool = False,
    env: Mapping[str, str] | None = None,
) -> PromptSet:
    """Store ``templates`` (name -> Jinja2 source) as the named set ``name``."""
    folder = sets_dir(env) / check_name(name)
    if folder.exists() and not force:
        raise UsageError(
            f"the prompt set {name!r} exists already ({folder})",
            hint="pass --force to replace it, or --name to import under another name",
        )
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.j2"):
        old.unlink()
    for template, text in templates.items():
        (folder / f"{template}.j2").write_text(text, encoding="utf-8")
    (folder / MANIFEST).write_text(json.dumps(dict(manifest), indent=2) + "\n")
    return _from_dir(name, folder)
