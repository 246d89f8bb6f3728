"""The Markdown of `bench_verify_real.py`: its three parts' saved results as tables."""

from __future__ import annotations

import argparse
import textwrap
from collections import defaultdict
from typing import Any

from report import machine, revision

FRESH = "fresh container per candidate"
WARM = "warm container, identical patches once"
FIRST = "warm container, identical once, --first-resolved"
HARNESS = "official harness, a fresh container per candidate"


def markdown(saved: dict[str, Any], got: dict[str, Any], args: argparse.Namespace) -> str:
    rows = got["rows"]
    ids = list(dict.fromkeys(r["instance_id"] for r in rows))
    flags = f" --instances {' '.join(ids)}" if args.instances else ""
    harnessed = _harnessed(saved.get("evaluate"))
    flags += " --harness " + " ".join(harnessed) if harnessed else ""
    whole = list(saved.get("whole", {}).get("instances", {}))
    flags += " --whole-suite " + " ".join(whole) if whole else ""
    when = "; ".join(f"{name} {part.get('started', '?')}" for name, part in saved.items())
    lines = [
        "## Verification at scale on real SWE-bench Lite instances (issue 20)",
        "",
        f"Measured on {machine()} (revision {revision()}), parts started: {when}; by `python "
        f"benchmarks/bench_verify_real.py --mirrors /work/.mirror --results DIR{flags}` (a "
        "part saved in DIR is reused with --reuse): the "
        f"{len(rows)} real candidates of `selection_dev.jsonl` (published runs, official "
        f"labels) for {len(ids)} of its instances whose repository is mirrored here "
        f"({', '.join(ids)}), in SWE-bench-shaped images built by `python "
        "benchmarks/build_swebench_images.py --mirrors /work/.mirror --check`.",
        "",
    ]
    if "evaluate" in saved:
        lines += evaluate_part(saved["evaluate"], got["labels"], rows)
    if "stage" in saved:
        lines += stage_part(saved["stage"], saved.get("evaluate"), saved.get("whole"), rows)
    if "select" in saved:
        lines += ["### Static + group on all of selection_dev.jsonl, and the reward stage", ""]
        lines += [f"`python benchmarks/bench_select.py --mirrors /work/.mirror --reps 1` "
                  f"({saved['select']['wall']:.0f} s), in the same run:", ""]  # fmt: skip
        lines += saved["select"]["markdown"].splitlines() + [""]
    return wrap(lines)


def evaluate_part(part: dict[str, Any], labels: dict[str, bool], rows: list[dict]) -> list[str]:
    totals = part["totals"]
    n = len(part["per_instance"]) or 1
    out = [
        "### `evaluate --candidates` against a fresh container per candidate",
        "",
        "| mode | runtime-s / instance | test runs / instance | containers | wall (s) |",
        "|---|--:|--:|--:|--:|",
    ]
    for name, total in totals.items():
        k = total.get("n", n)  # the harness ran on some instances only
        out.append(f"| {name}{f' ({k} instances)' if k != n else ''} | "
                   f"{total['seconds'] / k:.1f} | {total['runs'] / k:.1f} | "
                   f"{total['containers']} | {total['wall']:.0f} |")  # fmt: skip
    fresh = totals[FRESH]
    ratio = _ratio(fresh["seconds"], totals[FIRST]["seconds"])
    out += ["", f"Warm, identical patches once and --first-resolved: **{ratio}** fewer "
            f"runtime-seconds than a fresh container per candidate "
            f"({_ratio(fresh['runs'], totals[FIRST]['runs'])} fewer test runs); without "
            f"--first-resolved {_ratio(fresh['seconds'], totals[WARM]['seconds'])}. Resets "
            f"that could not be verified: {sum(t.get('fallbacks', 0) for t in totals.values())}"
            "."]  # fmt: skip
    if HARNESS in totals:
        ids = set(key.rsplit(":", 1)[0] for key in totals[HARNESS]["statuses"])
        first = sum(part["per_instance"][i][FIRST]["seconds"] for i in ids)
        out[-1] += (" The official harness (column by column, its `docker stop` waits 15 s "
                    f"per container) on {len(ids)} instance(s): "
                    f"{_ratio(totals[HARNESS]['seconds'], first)} the runtime-seconds of warm "
                    "+ --first-resolved there.")  # fmt: skip
    out += [""] + agreement(totals, labels, rows) + [""]
    return out


def agreement(totals: dict[str, Any], labels: dict[str, bool], rows: list[dict]) -> list[str]:
    fresh = totals[FRESH]["statuses"]
    same = {
        name: all(s == fresh[k] for k, s in t["statuses"].items() if s not in ("skipped",))
        for name, t in totals.items()
        if name != FRESH
    }
    graded = [k for k, s in fresh.items() if s in ("resolved", "unresolved", "error")]
    agree = [k for k in graded if (fresh[k] == "resolved") == labels[k]]
    differ = [k for k in graded if k not in agree]
    text = [
        "Verdicts: every mode gives the fresh container's verdict line by line: "
        + ", ".join(f"{name}: {'yes' if ok else '**NO**'}" for name, ok in same.items())
        + f". Against the published labels: **{len(agree)} of {len(graded)}** agree.",
    ]
    if differ:
        text += ["", "| instance | line | system | here | published |", "|---|--:|---|---|---|"]
        for key in differ:
            iid, line = key.rsplit(":", 1)
            row = rows[int(line) - 1]
            label = "resolved" if labels[key] else "unresolved"
            text.append(f"| {iid} | {line} | {row['system']} | {fresh[key]} | {label} |")
    return text


def _harnessed(evaluate: dict[str, Any] | None) -> list[str]:
    statuses = (evaluate or {}).get("totals", {}).get(HARNESS, {}).get("statuses", {})
    return list(dict.fromkeys(key.rsplit(":", 1)[0] for key in statuses))


def stage_part(
    part: dict[str, Any],
    evaluate: dict[str, Any] | None,
    whole_part: dict[str, Any] | None,
    rows: list[dict],
) -> list[str]:
    found = part["instances"]
    wholes = (whole_part or {}).get("instances", {})
    per_fresh = (evaluate or {}).get("per_instance", {})
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row["instance_id"]] += 1
    out = [
        "### The execution stage (what `select` runs) against a fresh container per candidate",
        "",
        "| instance | candidates | resolved (labels) | groups | fresh: runtime-s, runs "
        "| stage: runtime-s, runs | impacted test files | whole suite once (s) "
        "| chosen, static + group | chosen, + execute |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    sums = defaultdict(float)
    for iid, got in found.items():
        ex, plain = got["execute"], got["static_group"]
        fresh = per_fresh.get(iid, {}).get(FRESH, {})
        labels = [r["resolved"] for r in rows if r["instance_id"] == iid]
        whole = wholes.get(iid, {}).get("seconds")
        sums["fresh_s"] += fresh.get("seconds", 0.0)
        sums["fresh_runs"] += fresh.get("runs", 0)
        sums["stage_s"] += ex["cost"]["runtime_seconds"]
        sums["stage_runs"] += ex["cost"]["test_runs"]
        if whole is not None:
            sums["whole"] += whole * counts[iid]
            sums["whole_stage"] += ex["cost"]["runtime_seconds"]
        sums["plain_ok"] += plain["chosen_resolved"]
        sums["exec_ok"] += ex["chosen_resolved"]
        sums["oracle"] += any(labels)
        sums["random"] += sum(labels) / len(labels)
        out.append(
            f"| {iid} | {counts[iid]} | {sum(labels)} | {ex['funnel'].get('group', '-')} | "
            f"{fresh.get('seconds', 0):.0f}, {fresh.get('runs', '-')} | "
            f"{ex['cost']['runtime_seconds']:.0f}, {ex['cost']['test_runs']} | "
            f"{len(ex['tests'])} | {'-' if whole is None else f'{whole:.0f}'} | "
            f"{_choice(plain)} | {_choice(ex)} |"
        )
    n = len(found) or 1
    out += [
        "",
        f"Per instance: the stage **{sums['stage_s'] / n:.0f}** runtime-seconds and "
        f"{sums['stage_runs'] / n:.1f} test runs; a fresh container per candidate running the "
        f"record's eval script {sums['fresh_s'] / n:.0f} and {sums['fresh_runs'] / n:.1f}: "
        f"**{_ratio(sums['fresh_s'], sums['stage_s'])}** fewer runtime-seconds "
        f"({_ratio(sums['fresh_runs'], sums['stage_runs'])} fewer runs).",
    ]
    if sums["whole"]:
        whole = _ratio(sums["whole"], sums["whole_stage"])
        out[-1] += (" Against the whole suite per candidate (one run measured, times the "
                    f"candidates, where measured): **{whole}**.")  # fmt: skip
    out += [
        "",
        f"Chosen and resolved (labels), {len(found)} instances: static + group "
        f"{sums['plain_ok']:.0f}, with execution {sums['exec_ok']:.0f}; random "
        f"{sums['random']:.1f}, oracle {sums['oracle']:.0f}.",
        "",
    ]
    return out


def _choice(summary: dict[str, Any]) -> str:
    if not summary["chosen"]:
        return "none"
    mark = "resolved" if summary["chosen_resolved"] else "unresolved"
    return f"#{summary['chosen']} ({mark}; {summary['decided_by']})"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}×" if b else "∞"


def wrap(lines: list[str]) -> str:
    out = []
    for line in lines:
        keep = line.startswith(("|", "#")) or not line
        out += [line] if keep else textwrap.wrap(line, 92, break_on_hyphens=False)
    return "\n".join(out)


__all__ = ["markdown", "revision"]
