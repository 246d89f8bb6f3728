"""Where SWE-bench records come from, read as they come: a JSONL or JSON file, a parquet
file, or a dataset name loaded with the `datasets` library (the optional extra
``cwm-agent[datasets]``), from its local cache when the Hugging Face hub cannot be reached.

`batch` turns the records into Instances (only what the agent may see); `evaluate` keeps
them whole (the grading fields). Neither library is imported unless a parquet file or a
dataset name asks for it.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cwm_agent import console
from cwm_agent.errors import UsageError

DATASETS_HINT = "pip install 'cwm-agent[datasets]'"
# SWE-bench's own spellings, plus the Lite alias its older harness knew.
DATASET_ALIASES = {
    "full": "SWE-bench/SWE-bench",
    "verified": "SWE-bench/SWE-bench_Verified",
    "lite": "SWE-bench/SWE-bench_Lite",
}
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
PROBE_TIMEOUT = 3.0  # seconds to reach the hub before loading from the cache instead

Say = Callable[[str], None]


@dataclass(frozen=True)
class Source:
    """One input of records. ``kind``: jsonl, json, parquet, dataset, or folder (issue files)."""

    kind: str
    name: str  # the resolved path, or the dataset's hub id
    split: str | None = None  # datasets only

    @property
    def path(self) -> Path:
        return Path(self.name)

    def identity(self) -> dict[str, Any]:
        """What names this input in an OUTDIR's record of what made it."""
        found: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.split is not None:
            found["split"] = self.split
        return found

    def describe(self) -> str:
        return f"{self.name} (split {self.split})" if self.kind == "dataset" else self.name


def locate(spec: str, split: str = "test") -> Source:
    """What INPUT names: an existing file or folder, else a dataset alias or hub id."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return Source("folder", str(path.resolve()))
    if path.exists():
        suffix = path.suffix.lower()
        kind = {".parquet": "parquet", ".json": "json"}.get(suffix, "jsonl")
        return Source(kind, str(path.resolve()))
    name = DATASET_ALIASES.get(spec.strip().lower(), spec.strip())
    if _HUB_NAME.fullmatch(name) and not spec.startswith((".", "/", "~")):
        return Source("dataset", name, split)
    raise UsageError(
        f"INPUT {spec!r} is neither a file, a folder, nor a dataset name",
        hint="give a JSONL / JSON / parquet file, a folder of issue files, or a dataset "
        "(verified, lite, full, or a hub id such as princeton-nlp/SWE-bench_Verified)",
    )


Placed = list[tuple[str, dict[str, Any]]]  # (where an error names it, the record)


def read_records(source: Source, say: Say = console.say) -> Placed:
    """Every record of a file or dataset, in its order (folders are read by `instances`)."""
    if source.kind == "jsonl":
        placed = _jsonl(source.path)
    else:
        if source.kind == "parquet":
            records = _parquet(source.path)
        elif source.kind == "dataset":
            records = _dataset(source.name, source.split or "test", say)
        else:
            records = _json_list(source.path)
        placed = [(f"{source.describe()} record {n}", r) for n, r in enumerate(records, 1)]
    if not placed:
        raise UsageError(f"{source.describe()} holds no records", hint="one record per instance")
    return placed


def _jsonl(path: Path) -> Placed:
    placed = []
    try:
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                if line.strip():
                    where = f"{path}:{lineno}"
                    placed.append((where, _object(line, where)))
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"cannot read {path}: it is not UTF-8 text ({exc.reason})",
            hint="INPUT must be JSONL, JSON or parquet (a .parquet file needs that suffix)",
        ) from exc
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    return placed


def _object(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{where}: not valid JSON ({exc})",
            hint="INPUT must be JSONL: one JSON object per line (or a folder of issue files)",
        ) from exc
    if not isinstance(record, dict):
        raise UsageError(f"{where}: a record must be a JSON object")
    return record


def _json_list(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", hint="a .json INPUT holds a list") from exc
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise UsageError(f"{path}: a .json INPUT must hold a list of objects", hint="or use JSONL")
    return data


def _parquet(path: Path) -> list[dict[str, Any]]:
    try:
        pyarrow = importlib.import_module("pyarrow")
        parquet = importlib.import_module("pyarrow.parquet")
    except ImportError as exc:
        raise UsageError(f"reading {path} needs pyarrow", hint=DATASETS_HINT) from exc
    try:
        records: list[dict[str, Any]] = parquet.read_table(path).to_pylist()
    except (OSError, pyarrow.ArrowException) as exc:
        raise UsageError(f"cannot read {path} as parquet: {exc}") from exc
    return records


def _dataset(name: str, split: str, say: Say) -> list[dict[str, Any]]:
    offline = _offline_if_unreachable(say)
    try:
        datasets = importlib.import_module("datasets")
    except ImportError as exc:
        raise UsageError(f"loading the dataset {name} needs datasets", hint=DATASETS_HINT) from exc
    if offline and "datasets" in sys.modules:  # imported earlier: its config is already read
        datasets.config.HF_HUB_OFFLINE = True
    datasets.disable_progress_bars()  # its bars would cut into batch's display
    datasets.logging.set_verbosity_error()
    try:
        loaded = datasets.load_dataset(name, split=split)
    except ValueError as exc:  # an unknown split, mostly
        message = f"cannot load {name} split {split!r}: {exc}"
        raise UsageError(message, hint="check --split") from exc
    except (ConnectionError, OSError) as exc:  # FileNotFoundError and DatasetNotFoundError too
        raise UsageError(
            f"cannot load the dataset {name} (split {split}): {exc}",
            hint=f"it is not in the local cache ({datasets.config.HF_DATASETS_CACHE}) and the "
            "hub cannot serve it: load it once where the hub is reachable "
            f"(python -c \"import datasets; datasets.load_dataset('{name}', split='{split}')\") "
            "and copy that cache here (or set HF_DATASETS_CACHE), or save it as a parquet or "
            "JSONL file and pass the file",
        ) from exc
    return [dict(row) for row in loaded]


def _offline_if_unreachable(say: Say) -> bool:
    """Offline mode for this process when the hub does not answer within seconds.

    ``datasets`` would otherwise retry for about 25 s before it falls back to its cache.
    An explicit HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is left as the user set it.
    """
    if any(os.environ.get(var) for var in _OFFLINE_VARS):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT).close()
        return False
    except OSError as exc:
        say(f"the Hugging Face hub ({host}) cannot be reached ({exc}): using the local cache")
        os.environ["HF_HUB_OFFLINE"] = "1"
        return True
