"""OUTDIR on disk: preds.jsonl, one folder per instance, summary.json — crash-safe.

The rules that make a SIGKILL at any moment harmless:

- an instance's ``result.json`` is written last, atomically (temp file + rename), so it
  exists only for an attempt that ended; it says whether the attempt produced a
  prediction (``prediction`` is not null);
- a prediction line is appended to ``preds.jsonl`` with one ``write`` and an fsync, under
  a lock, *before* ``result.json``;
- on start, ``repair`` rewrites ``preds.jsonl`` from what is on disk: it drops truncated
  lines and lines of instances without a finished ``result.json`` (they run again),
  keeps the last line per instance, and restores lines that a kill lost.

An instance is finished when it has both ``result.json`` with a prediction and its line.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any

from cwm_agent.batch.instances import Instance
from cwm_agent.batch.scaled import SCALED_FILES
from cwm_agent.errors import UsageError
from cwm_agent.verification import layout
from cwm_agent.verification.store import write_atomic

PREDICTION_KEYS = ("instance_id", "model_name_or_path", "model_patch")


class OutputStore:
    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        self.preds_path = outdir / layout.PREDICTIONS
        self.summary_path = outdir / layout.SUMMARY
        self._lock = threading.Lock()
        self._dir_lock: int | None = None

    # -- the whole directory ----------------------------------------------------------
    def open(self) -> None:
        """Create OUTDIR and hold its lock: two batches writing one OUTDIR would race."""
        try:
            self.outdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the output directory: {exc}") from exc
        fd = os.open(self.outdir / ".batch.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(
                f"another cwm-agent batch is writing to {self.outdir}",
                hint="wait for it to end, or pass a different -o OUTDIR",
            ) from None
        self._dir_lock = fd  # released by the kernel when the process ends, however it ends
        self._remove_stale_temp_files()

    def _remove_stale_temp_files(self) -> None:
        """Temp files of atomic writes a kill interrupted; ours alone, as we hold the lock."""
        for pattern in (".*.tmp", "*/.*.tmp"):
            for path in self.outdir.glob(pattern):
                path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._dir_lock is not None:
            os.close(self._dir_lock)
            self._dir_lock = None

    def load_results(self) -> dict[str, dict[str, Any]]:
        """Every readable ``result.json`` in OUTDIR, by instance id."""
        results: dict[str, dict[str, Any]] = {}
        for path in sorted(self.outdir.glob("*/result.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # cannot happen with atomic writes; such an instance just runs again
            if isinstance(doc, dict) and isinstance(doc.get("instance_id"), str):
                results[doc["instance_id"]] = doc
        return results

    def repair(self, results: dict[str, dict[str, Any]]) -> set[str]:
        """Make ``preds.jsonl`` hold exactly one line per finished instance; return their ids."""
        lines = self._read_predictions()
        wanted: dict[str, dict[str, Any]] = {}
        for iid, doc in results.items():
            if doc.get("prediction"):
                wanted[iid] = lines.get(iid) or doc["prediction"]
        text = "".join(_line(p) for p in wanted.values())
        current = self.preds_path.read_text(encoding="utf-8") if self.preds_path.exists() else ""
        if text != current:
            write_atomic(self.preds_path, text)
        return set(wanted)

    def forget(self, instances: list[Instance]) -> None:
        """``--redo-existing``: these instances are no longer finished.

        Their ``result.json`` goes first, then their lines: a kill in between leaves lines
        without a finished result, which the next ``repair`` drops (they run again).
        """
        for instance in instances:
            (self.instance_dir(instance) / layout.RESULT).unlink(missing_ok=True)
        ids = {i.instance_id for i in instances}
        kept = [p for iid, p in self._read_predictions().items() if iid not in ids]
        write_atomic(self.preds_path, "".join(_line(p) for p in kept))

    def _read_predictions(self) -> dict[str, dict[str, Any]]:
        """Valid lines, the last one per instance; truncated or foreign lines are skipped."""
        if not self.preds_path.exists():
            return {}
        found: dict[str, dict[str, Any]] = {}
        raw = self.preds_path.read_text(encoding="utf-8", errors="replace")
        for line in raw.splitlines(keepends=True):
            if not line.endswith("\n"):
                continue  # a kill cut the last append short
            try:
                pred = json.loads(line)
            except ValueError:
                continue
            if isinstance(pred, dict) and all(k in pred for k in PREDICTION_KEYS):
                found.pop(pred["instance_id"], None)  # re-insert: keeps file order = last order
                found[pred["instance_id"]] = pred
        return found

    # -- one instance -----------------------------------------------------------------
    def instance_dir(self, instance: Instance) -> Path:
        return self.outdir / instance.dirname

    def begin(self, instance: Instance) -> Path:
        """A new attempt: the folder exists and holds no outcome of an earlier attempt."""
        folder = self.instance_dir(instance)
        folder.mkdir(parents=True, exist_ok=True)
        for name in (layout.RESULT, layout.PATCH, layout.TRAJECTORY):
            (folder / name).unlink(missing_ok=True)
        for pattern in SCALED_FILES:  # --attempts K records
            for path in folder.glob(pattern):
                path.unlink()
        return folder

    def record(self, instance: Instance, doc: dict[str, Any]) -> None:
        """Store an attempt's outcome in the crash-safe order: patch, prediction, result."""
        folder = self.instance_dir(instance)
        if doc.get("patch_base64"):  # the exact bytes (a non-UTF-8 file's lines too)
            write_atomic(folder / layout.PATCH, base64.b64decode(doc["patch_base64"]))
        elif doc.get("patch"):
            write_atomic(folder / layout.PATCH, doc["patch"])
        if doc.get("prediction"):
            self._append_prediction(doc["prediction"])
        write_atomic(folder / layout.RESULT, json.dumps(doc, indent=2, ensure_ascii=False))

    def _append_prediction(self, prediction: dict[str, Any]) -> None:
        data = _line(prediction).encode("utf-8")
        with self._lock:
            fd = os.open(self.preds_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                written = os.write(fd, data)  # one write: the line lands whole or is cut
                while written < len(data):  # only on a full disk or similar
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            finally:
                os.close(fd)

    def write_summary(self, summary: dict[str, Any]) -> None:
        with self._lock:
            write_atomic(self.summary_path, json.dumps(summary, indent=2, ensure_ascii=False))


def _line(prediction: dict[str, Any]) -> str:
    return json.dumps(prediction, ensure_ascii=False) + "\n"
