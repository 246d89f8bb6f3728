"""OUT on disk: ``selection.jsonl``, ``preds.jsonl``, ``summary.json``, ``report.html`` —
crash-safe and resumable.

An instance is *finished* when its record is a whole line of ``selection.jsonl`` and does
not ask to be retried (``retry``: the verifier failed after retries). Each record is
appended with one ``write`` and an fsync, after its prediction line. On start, ``repair``
keeps the last whole record per instance and rewrites ``preds.jsonl`` from the records, so
a kill at any moment loses only the instances that were running, and no prediction is
there without its record. One OUT takes one selection at a time (a lock file).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any

from cwm_agent.errors import UsageError
from cwm_agent.verification.store import write_atomic

LOCK = ".select.lock"
MANIFEST = "manifest.json"


class SelectionStore:
    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        self.selection_path = outdir / "selection.jsonl"
        self.preds_path = outdir / "preds.jsonl"
        self.summary_path = outdir / "summary.json"
        self.report_path = outdir / "report.html"
        self._lock = threading.Lock()
        self._fd: int | None = None

    def open(self) -> None:
        try:
            self.outdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the output folder: {exc}") from exc
        fd = os.open(self.outdir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(
                f"another cwm-agent select is writing to {self.outdir}",
                hint="wait for it to end, or pass a different -o OUT",
            ) from None
        self._fd = fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def check_manifest(self, made_by: dict[str, Any]) -> None:
        """OUT was made by this selection (inputs, instances, stages, verifier), or is new."""
        path = self.outdir / MANIFEST
        if path.is_file():
            try:
                before = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                before = None
            if isinstance(before, dict) and before != made_by:
                diff = [
                    k for k in sorted(set(before) | set(made_by)) if before.get(k) != made_by.get(k)
                ]
                shown = "; ".join(
                    f"{k}: {before.get(k)!r} there, {made_by.get(k)!r} now" for k in diff
                )
                raise UsageError(
                    f"{self.outdir} holds another selection ({shown})",
                    hint="pass a different -o OUT, or the same inputs and options to resume",
                )
        write_atomic(path, json.dumps(made_by, indent=2, ensure_ascii=False))

    def repair(self) -> dict[str, dict[str, Any]]:
        """The last whole record per instance; both files rewritten to match them."""
        records: dict[str, dict[str, Any]] = {}
        if self.selection_path.exists():
            raw = self.selection_path.read_text(encoding="utf-8", errors="surrogateescape")
            for line in raw.splitlines(keepends=True):
                record = _whole(line)
                if record is not None:
                    records.pop(record["instance_id"], None)
                    records[record["instance_id"]] = record
        self._rewrite(self.selection_path, "".join(_line(r) for r in records.values()))
        preds = [r["prediction"] for r in records.values() if r.get("prediction")]
        self._rewrite(self.preds_path, "".join(_line(p) for p in preds))
        return records

    def _rewrite(self, path: Path, text: str) -> None:
        current = (
            path.read_text(encoding="utf-8", errors="surrogateescape") if path.exists() else ""
        )
        if text != current:
            write_atomic(path, text.encode("utf-8", "surrogateescape"))

    def record(self, record: dict[str, Any]) -> None:
        """The prediction, then the record: a record on disk always has its prediction."""
        with self._lock:
            if record.get("prediction"):
                _append(self.preds_path, _line(record["prediction"]))
            _append(self.selection_path, _line(record))

    def write(self, path: Path, text: str) -> None:
        with self._lock:
            write_atomic(path, text)


def finished(records: dict[str, dict[str, Any]]) -> set[str]:
    return {iid for iid, record in records.items() if not record.get("retry")}


def _whole(line: str) -> dict[str, Any] | None:
    if not line.endswith("\n"):
        return None  # a kill cut the last append short
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if isinstance(record, dict) and isinstance(record.get("instance_id"), str):
        return record
    return None


def _line(document: dict[str, Any]) -> str:
    # ensure_ascii: a patch's non-UTF-8 bytes (surrogate escapes) survive as \\u escapes
    return json.dumps(document, ensure_ascii=True) + "\n"


def _append(path: Path, text: str) -> None:
    data = text.encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)  # one write: the line lands whole or is cut
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
