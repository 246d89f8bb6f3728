"""What made an OUTDIR: its input, model and the settings that change results.

``manifest.json`` is written when a batch first opens OUTDIR. A later batch on the same
OUTDIR must match it, or it is refused before anything runs, naming the difference:
otherwise a resume with another ``--model`` would skip every finished instance as done,
and another INPUT would mix its predictions into the same ``preds.jsonl``. Which
instances run (``--filter``, ``--slice``, ``--limit``...) and how (``--workers``, the
executor, timeouts of requests, container limits, prices, the batch's total budgets)
are free to change between runs; a run's own budgets (``--max-cost``,
``--max-total-tokens``) change results, as ``--max-steps`` does, and are recorded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cwm_agent import __version__
from cwm_agent.batch.plan import BatchConfig
from cwm_agent.errors import UsageError
from cwm_agent.settings import stored
from cwm_agent.verification import layout
from cwm_agent.verification.sources import Source
from cwm_agent.verification.store import write_atomic

MANIFEST = layout.MANIFEST
# How the model is reached and the container bounded: not what the agent produces.
_OPERATIONAL = {
    "model.name",  # recorded once, as "model"
    "model.base_url",
    "model.request_timeout",
    "model.max_retries",
    "model.chat_template_kwargs",  # recorded as what is sent: model.extra_body
    "model.price_input",  # prices say what a run cost; a price list may change
    "model.price_output",
    "model.price_cached_input",
    "scaling.verifier_base_url",  # where the verifier is: its model name is what decides
    "scaling.verifier_prices",
    "runtime.memory",
    "runtime.pids_limit",
    "runtime.tmp_size",
    "runtime.base_commit",  # each record's own
}
_SHOWN = 6  # differences named in the refusal


def made_by(config: BatchConfig, source: Source) -> dict[str, Any]:
    """The manifest this batch would write: input, model, and every result-changing setting."""
    base = config.base
    settings: dict[str, Any] = {}
    for group, record in (
        ("model", base.model),
        ("agent", base.agent),
        ("runtime", base.runtime),
        ("scaling", base.scaling),
    ):
        for key, value in stored(group, record).items():  # no URL with its credentials
            settings[f"{group}.{key}"] = value
    settings.update(
        {
            "model.api": base.model.transport,
            "model.extra_body": base.model.extra_body,
            "batch.image_template": config.image_template,
            "batch.repo": str(config.repo) if config.repo else None,
        }
    )
    kept = {k: v for k, v in sorted(settings.items()) if k not in _OPERATIONAL}
    manifest = {"input": source.identity(), "model": base.model.name, "settings": kept}
    normal: dict[str, Any] = json.loads(json.dumps(manifest))  # tuples as JSON has them
    return normal


def check(outdir: Path, current: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    """Refuse a batch that differs from what made OUTDIR; record it when OUTDIR is new."""
    path = outdir / MANIFEST
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        recorded = None
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"cannot read {path}: {exc}",
            hint="it records what made OUTDIR; restore it, or use a new -o OUTDIR",
        ) from exc
    if recorded is None:
        _check_legacy(outdir, current, results)
        document = {**current, "created_by": f"cwm-agent {__version__}", "created_at": time.time()}
        write_atomic(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        return
    differences = _differences(recorded, current)
    if differences:
        shown = "; ".join(differences[:_SHOWN])
        more = f" (and {len(differences) - _SHOWN} more)" if len(differences) > _SHOWN else ""
        raise UsageError(
            f"{outdir} was made by a different batch: {shown}{more}",
            hint=f"re-run with what made it (see {path}), or pass a new -o OUTDIR; a resume "
            "must not mix predictions of two inputs or two configurations",
        )


def _differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    found = []
    for key in ("input", "model"):
        if recorded.get(key) != current[key]:
            found.append(f"{key} {_show(recorded.get(key))} there, {_show(current[key])} now")
    then, now = recorded.get("settings") or {}, current["settings"]
    # Settings one side does not know (a newer or older cwm-agent) are not a difference.
    for key in sorted(set(then) & set(now)):
        if then[key] != now[key]:
            found.append(f"{key} {_show(then[key])} there, {_show(now[key])} now")
    return found


def _show(value: Any) -> str:
    if isinstance(value, dict) and set(value) <= {"kind", "name", "split"}:
        split = f" (split {value['split']})" if value.get("split") else ""
        return f"{value.get('name')!r}{split}"
    return repr(value)


def _check_legacy(outdir: Path, current: dict[str, Any], results: dict[str, Any]) -> None:
    """An OUTDIR from before manifests: its results name their model, at least."""
    models = {d.get("model_name_or_path") for d in results.values()} - {None}
    if models and models != {current["model"]}:
        raise UsageError(
            f"{outdir} holds results of model {', '.join(sorted(map(str, models)))}, "
            f"not {current['model']!r}",
            hint="re-run with that --model, or pass a new -o OUTDIR",
        )
