"""Patch structure checks over real submissions: every malformed one rejected, every real one kept.

Runs the repository-free layer of `cwm-agent validate` (``patches.check_structure``:
unidiff parsing, chatter, hunk counts, hunkless file diffs, binary changes without
data) over

- model_patches_malformed.jsonl: chatty answers and empty diffs that real systems saved
  as patches. Every one must be rejected with a message that names the problem.
- model_patches.jsonl: real predictions. Every non-empty patch's structure must pass;
  empty predictions must be rejected as empty.

The data is only read, never copied. Prints a markdown report; exits 1 on any miss.

    python benchmarks/bench_patches.py
    python benchmarks/bench_patches.py --data /path/to/data
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cwm_agent.errors import PatchError  # noqa: E402
from cwm_agent.patches import check_structure  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
# A message "names the problem" when it says what and where (line, file, hunk) or that
# there is nothing: these are the shapes check_structure's messages take.
NAMES_THE_PROBLEM = re.compile(
    r"line \d+|the diff for '|bad hunk|no diff headers|the patch is empty|no complete file header"
)


def rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def kind(message: str) -> str:
    """The problem's category: quotes and numbers blanked, up to the first explanation."""
    general = re.sub(r"\d+", "N", re.sub(r"'[^']*'", "'…'", message))
    return re.split(r": |; | \(line N: ", general, maxsplit=1)[0].strip()


def check_malformed(records: list[dict]) -> tuple[list[str], Counter, float]:
    misses, kinds, started = [], Counter(), time.perf_counter()
    for record in records:
        try:
            check_structure(record["model_patch"])
        except PatchError as exc:
            if not NAMES_THE_PROBLEM.search(exc.message):
                misses.append(f"{record['instance_id']}: vague message {exc.message[:80]!r}")
            kinds[kind(exc.message)] += 1
        else:
            misses.append(f"{record['instance_id']}: ACCEPTED ({record.get('note', '')})")
    return misses, kinds, time.perf_counter() - started


def check_real(records: list[dict]) -> tuple[list[str], int, int, float]:
    misses, accepted, empty, started = [], 0, 0, time.perf_counter()
    for record in records:
        text = record["model_patch"]
        try:
            patch = check_structure(text)
        except PatchError as exc:
            if not text.strip() and exc.message == "the patch is empty":
                empty += 1
            else:
                misses.append(f"{record['instance_id']}: REJECTED: {exc.message[:120]}")
            continue
        if not text.strip():
            misses.append(f"{record['instance_id']}: empty patch ACCEPTED")
        elif not patch.endswith("\n"):
            misses.append(f"{record['instance_id']}: normalized patch lacks a final newline")
        else:
            accepted += 1
    return misses, accepted, empty, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the JSONL files")
    args = parser.parse_args(argv)
    malformed = rows(args.data / "model_patches_malformed.jsonl")
    real = rows(args.data / "model_patches.jsonl")

    bad_misses, kinds, bad_seconds = check_malformed(malformed)
    real_misses, accepted, empty, real_seconds = check_real(real)

    print("# Patch structure checks\n")
    print("| data set | records | expected | got | misses | ms per patch |")
    print("|---|---:|---|---|---:|---:|")
    rejected = len(malformed) - sum("ACCEPTED" in m for m in bad_misses)
    print(
        f"| model_patches_malformed.jsonl | {len(malformed)} | all rejected, problem named "
        f"| {rejected} rejected | {len(bad_misses)} | {1000 * bad_seconds / len(malformed):.2f} |"
    )
    print(
        f"| model_patches.jsonl | {len(real)} | non-empty accepted, empty rejected "
        f"| {accepted} accepted, {empty} empty rejected | {len(real_misses)} "
        f"| {1000 * real_seconds / len(real):.2f} |"
    )
    print("\n## Why the malformed ones were rejected\n")
    print("| problem | count |")
    print("|---|---:|")
    for problem, count in kinds.most_common():
        print(f"| {problem} | {count} |")
    misses = bad_misses + real_misses
    if misses:
        print("\n## Misses\n")
        for miss in misses:
            print(f"- {miss}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
