"""The local runtime's start-up and disk against the size of the repository, side by side.

    python benchmarks/bench_local_startup.py            # 7 runs each; prints a table
    python benchmarks/bench_local_startup.py --reps 3 --write   # also BENCHMARKS.md's section

Launch of `cwm-agent run` to its first model request, on a one-file repository and on
sympy (its sdist from PyPI, about 2,000 files and 35 MB, committed as one repository with
files older than its index, as a checkout is), in each working-copy mode: the sandbox's
overlay (`--sandbox bwrap`) and the checkout (`--sandbox none`). Disk: the bytes under the
run's private folder at the first request (the overlay's mount point is empty on this
side; what the copy adds on disk is what shows). Runs are interleaved; figures are medians.
Target (issue 17): sympy adds at most 0.3 s over the one-file repository, and disk in
proportion to what changed.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOT, median, run_agent  # noqa: E402

SYMPY = "sympy==1.13.3"
CACHE = ROOT / "benchmarks" / ".cache"
ENV = {
    **os.environ,
    "OPENAI_API_KEY": "bench",
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@b",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@b",
}
DONE = "<think>\nDone.\n</think>\nNothing to do."
MARK = "BENCHMARKS:local-startup"


def sympy_tree(workdir: Path) -> Path:
    """sympy's sdist (downloaded once into benchmarks/.cache) as a committed repository."""
    CACHE.mkdir(parents=True, exist_ok=True)
    found = glob.glob(str(CACHE / "sympy-*.tar.gz"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             SYMPY, "-d", str(CACHE), "-q"],
            check=True,
        )  # fmt: skip
        found = glob.glob(str(CACHE / "sympy-*.tar.gz"))
    with tarfile.open(found[0]) as tar:
        tar.extractall(workdir, filter="data")
    repo = next(workdir.glob("sympy-*"))
    return commit(repo)


def commit(repo: Path) -> Path:
    old = time.time() - 3600  # a checkout's files predate its index
    for path in repo.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.utime(path, (old, old))
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run(["git", *args], cwd=repo, env=ENV, check=True, capture_output=True)
    return repo


def one_file(workdir: Path) -> Path:
    repo = workdir / "tiny"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    return commit(repo)


def private_bytes(tmp: Path) -> int:
    """Bytes under the run's private folders (the run's own TMPDIR holds nothing else)."""
    total = 0
    for dirpath, _, files in os.walk(tmp):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def one_run(repo: Path, mode: str, log: Path) -> tuple[float, int]:
    disk = [0]
    tmp = Path(tempfile.mkdtemp(prefix="run-", dir=log.parent))

    def reply(step: int, body: dict) -> dict:
        if step == 1:
            disk[0] = private_bytes(tmp)
        return {"content": DONE}

    cli = str(ROOT / ".venv" / "bin" / "cwm-agent")
    run = run_agent(
        lambda url: [cli, "run", str(repo), "--issue", "x", "--model", "m", "--base-url", url,
                     "--sandbox", mode, "--max-format-errors", "1", "-q"],
        reply, env={**ENV, "TMPDIR": str(tmp)}, cwd=repo, log_path=log,
    )  # fmt: skip
    return run.first_request(), disk[0]


def measure(reps: int) -> dict[tuple[str, str], tuple[float, int]]:
    with tempfile.TemporaryDirectory(prefix="cwm-bench-local-") as tmp:
        work = Path(tmp)
        repos = {"one file": one_file(work), "sympy": sympy_tree(work / "sympy")}
        samples: dict[tuple[str, str], list[tuple[float, int]]] = {}
        for _ in range(reps):
            for name, repo in repos.items():
                for mode in ("bwrap", "none"):
                    log = work / f"{name}-{mode}.log".replace(" ", "_")
                    samples.setdefault((name, mode), []).append(one_run(repo, mode, log))
                    print(f"  {name} / {mode}: {samples[(name, mode)][-1]}", file=sys.stderr)
    return {
        key: (median([s for s, _ in runs]), int(median([d for _, d in runs])))
        for key, runs in samples.items()
    }


def table(figures: dict[tuple[str, str], tuple[float, int]]) -> str:
    lines = [
        "| working copy | one-file repo | sympy (2k files, 35 MB) | sympy adds | disk at start "
        "(sympy) |",
        "|---|---|---|---|---|",
    ]
    names = {"bwrap": "sandbox: overlay of the user's tree", "none": "no sandbox: checkout"}
    for mode, label in names.items():
        tiny, _ = figures[("one file", mode)]
        big, disk = figures[("sympy", mode)]
        lines.append(
            f"| {label} | {tiny:.2f} s | {big:.2f} s | {big - tiny:+.2f} s | {disk / 1e6:.1f} MB |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md's section")
    args = parser.parse_args()
    text = table(measure(args.reps))
    print(text)
    if args.write:
        write_section(text, args.reps)
    return 0


def write_section(text: str, reps: int) -> None:
    path = ROOT / "BENCHMARKS.md"
    doc = path.read_text(encoding="utf-8")
    start, end = f"<!-- {MARK} -->", f"<!-- /{MARK} -->"
    cpus = os.cpu_count()
    when = time.strftime("%Y-%m-%d %H:%M %Z")
    body = (
        f"{start}\n_Measured {when} on this machine ({cpus} cores), {reps} interleaved runs "
        "each, medians; `python benchmarks/bench_local_startup.py --write`._\n\n"
        f"{text}\n{end}"
    )
    if start in doc:
        doc = doc[: doc.index(start)] + body + doc[doc.index(end) + len(end) :]
    else:
        title = "## Local runtime: start-up and disk against repository size"
        doc = f"{doc.rstrip()}\n\n{title}\n\n{body}\n"
    path.write_text(doc, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
