"""The reward stage's scores on disk, keyed by what decides them: the verifier model, how it
is asked (chat or completions: another prompt, other logprobs), the prompt template, and
the prompt it renders (the issue, the change, the repository; by SHA-256). A second run
over the same candidates, a resume, or another selection that meets the same change asks
nothing again.

One small JSON file per score (``AB/ABCDEF....json``), written atomically; an unreadable
file is a miss. Only answers are kept: a failed request or a reply without YES/NO is
asked again next time.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cwm_agent.verification.store import write_atomic


def default_folder() -> Path:
    """``$XDG_CACHE_HOME/cwm-agent/verifier`` (``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cwm-agent" / "verifier"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def cache_key(model: str, transport: str, template_sha256: str, prompt: str) -> str:
    parts = [model, transport, template_sha256, sha256(prompt)]
    return sha256(json.dumps(parts))


class ScoreCache:
    """``folder`` None: no cache (nothing read, nothing written)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        if self.folder is None:
            return None
        try:
            found = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) and "score" in found else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        if self.folder is None:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(record, ensure_ascii=False))
        except OSError:
            pass  # a cache that cannot be written only costs a request next time
