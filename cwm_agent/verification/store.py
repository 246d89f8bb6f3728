"""Files that batch, select and evaluate write to their output folders, and their names.

- ``write_atomic``: readers see the old file or the new one, never a half-written one;
- ``folder_name``: an instance's folder, safe on any filesystem (any length of id);
- ``image_from_template``: an instance's image, SWE-bench's naming included.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from cwm_agent.errors import UsageError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
# A file name holds at most 255 bytes: longer ids keep their head and add a hash of the
# whole id (stable across runs, so a resume finds the folder; distinct ids stay apart).
MAX_FOLDER_NAME = 120
_HASH_CHARS = 16


def write_atomic(path: Path, text: str | bytes) -> None:
    """Readers see the old file or the new one, never a half-written one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def folder_name(instance_id: str) -> str:
    """An instance's folder name in OUTDIR: the id, made safe for any filesystem."""
    name = _UNSAFE.sub("_", instance_id)
    name = "_" + name if name.startswith(".") else name
    if len(name) <= MAX_FOLDER_NAME:
        return name
    digest = hashlib.sha256(instance_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{name[: MAX_FOLDER_NAME - _HASH_CHARS - 1]}-{digest[:_HASH_CHARS]}"


def image_from_template(template: str, instance_id: str) -> str:
    """``{instance_id}`` as is; ``{instance_id_1776}`` the way SWE-bench names its images."""
    # Docker image names are lower-case; SWE-bench lower-cases ids for its images too.
    id_1776 = instance_id.replace("__", "_1776_").lower()
    try:
        return template.format(instance_id=instance_id, instance_id_1776=id_1776)
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(
            f"--image-template {template!r} is not a valid template: {exc!r}",
            hint="use the placeholders {instance_id} and {instance_id_1776}",
        ) from exc
