"""Build SWE-bench-shaped images for real SWE-bench Lite instances, from local git mirrors.

For every instance of ``selection_dev.jsonl`` (or ``--instances``) whose repository has a
bare mirror under ``--mirrors`` (``OWNER+NAME/repo``) and an environment in
``benchmarks/swebench_envs/OWNER__NAME.txt``, two images, laid out as SWE-bench's:

- an environment image per repository, FROM ``cwm-agent-test:latest`` (Debian's Python
  3.11 and git): ``/opt/miniconda3`` with the conda stand-in of ``tests/docker/swebench``
  (``source /opt/miniconda3/bin/activate; conda activate testbed``), the env ``testbed``
  with the pinned dependencies, and their wheels kept in ``/opt/wheels`` with pip set to
  use only them (the eval scripts re-run the spec's ``pip install -e .``, and the graders
  run without network);
- an instance image FROM it: the repository at ``/testbed`` at ``base_commit`` (its
  history up to there and the newest tag before it: nothing later), installed in the env
  with the install command of the record's own eval script.

Wheels are downloaded once by the host's pip (``--cache``); the builds reach no index.
Idempotent: an image whose recipe (base image, Dockerfile, wheels, commit) is unchanged is
not rebuilt. ``--check`` then grades, with ``cwm-agent evaluate --candidates``, each
instance's gold patch (must be resolved), a patch that changes nothing the tests see (must
not be), and the empty patch (never run). Needs ``DOCKER_HOST``; mirrors are only read.

    python benchmarks/build_swebench_images.py --mirrors /work/.mirror --check
    python benchmarks/build_swebench_images.py --mirrors /work/.mirror \\
        --instances mwaskom__seaborn-3010 --template 'mine.{instance_id_1776}:latest'
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENVS = Path(__file__).resolve().parent / "swebench_envs"
DATA = Path(os.environ.get("CWM_SHARED_DATA") or ROOT.parent / "shared" / "data")
ACTIVATE = ROOT / "tests" / "docker" / "swebench" / "activate"
TEMPLATE = "cwm-sweb.eval.x86_64.{instance_id_1776}:latest"
BASE = "cwm-agent-test:latest"
CACHE = Path(os.environ.get("CWM_DOCKER_CACHE", "/var/cache/cwm-agent"))
NOOP = "diff --git a/cwm_noop.txt b/cwm_noop.txt\nnew file mode 100644\n--- /dev/null\n"
NOOP += "+++ b/cwm_noop.txt\n@@ -0,0 +1 @@\n+changes nothing the tests see\n"

# What an isolated `pip install -e .` of these repositories asks for (their pyproject.toml).
BACKENDS = ("setuptools", "wheel", "setuptools_scm[toml]", "setuptools_scm_git_archive")
BACKENDS += ("flit_core>=3.2,<4",)

ENV_DOCKERFILE = """\
FROM {base}
# python3-venv: the envs; patch: the harness's last apply fallback.
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv patch \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv --without-pip /opt/miniconda3 \\
 && rm -f /opt/miniconda3/bin/activate* /opt/miniconda3/bin/Activate.ps1
COPY activate /opt/miniconda3/bin/activate
COPY wheels/ /opt/wheels/
RUN python3 -m venv /opt/miniconda3/envs/testbed \\
 && /opt/miniconda3/envs/testbed/bin/pip install --no-cache-dir --disable-pip-version-check \\
        --no-index --find-links /opt/wheels -r /opt/wheels/requirements.txt
# The eval scripts' `pip install -e .` finds what it needs here, with no network.
COPY pip.conf /etc/pip.conf
# matplotlib's font cache, built once here rather than by every test run (in every mode).
RUN /opt/miniconda3/envs/testbed/bin/python -c "import matplotlib.pyplot" 2>/dev/null || true
ENV PATH=/opt/miniconda3/bin:$PATH
"""

PIP_CONF = "[global]\nno-index = true\nfind-links = /opt/wheels\ndisable-pip-version-check = true\n"

INSTANCE_DOCKERFILE = """\
FROM {env}
COPY testbed/ /testbed/
RUN git config --global --add safe.directory /testbed \\
 && cd /testbed && . /opt/miniconda3/bin/activate && conda activate testbed && {install}
WORKDIR /testbed
CMD ["/bin/bash"]
"""


def log(text: str) -> None:
    print(f"[build-swebench] {text}", file=sys.stderr, flush=True)


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, text=True, **kwargs)


def records(data: Path, wanted: list[str] | None) -> list[dict[str, Any]]:
    """The records of the wanted instances (default: every selection_dev instance)."""
    if not wanted:
        lines = (data / "selection_dev.jsonl").read_text().splitlines()
        wanted = sorted({json.loads(line)["instance_id"] for line in lines if line.strip()})
    by_id = {}
    for line in (data / "swebench_lite_test.jsonl").read_text().splitlines():
        record = json.loads(line)
        by_id[record["instance_id"]] = record
    return [by_id[i] for i in wanted]


def env_file(repo: str) -> Path:
    return ENVS / (repo.replace("/", "__") + ".txt")


def env_versions(repo: str) -> set[str]:
    """The versions (a record's ``version``) the env file is for: its ``# versions:`` line."""
    for line in env_file(repo).read_text().splitlines():
        if line.startswith("# versions:"):
            return set(line.split(":", 1)[1].split())
    return set()


def mirror_of(mirrors: Path, repo: str) -> Path:
    return mirrors / repo.replace("/", "+") / "repo"


def install_command(record: dict[str, Any]) -> str:
    """The spec's install, as the record's eval script re-runs it."""
    for line in record["eval_script"].splitlines():
        if line.startswith("python -m pip install"):
            return line
    raise SystemExit(f"{record['instance_id']}: no install line in its eval script")


def image_name(template: str, instance_id: str) -> str:
    from cwm_agent.verification.store import image_from_template

    return image_from_template(template, instance_id)


def wheels(requirements: Path, cache: Path) -> Path:
    """The env's wheels (and the build backends of an isolated `pip install -e .`)."""
    digest = recipe_of(requirements.read_text(), *BACKENDS)
    folder = cache / f"swebench-env-wheels-{requirements.stem}-{digest}"
    if (folder / ".complete").exists():
        return folder
    log(f"wheels: pip download -r {requirements.name} (once)")
    part = folder.with_name(folder.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
    pip += ["--python-version", "3.11", "-d", str(part)]
    run([*pip, "-r", str(requirements)])
    run([*pip, *BACKENDS])
    shutil.copy(requirements, part / "requirements.txt")
    (part / ".complete").write_text("\n".join(sorted(p.name for p in part.iterdir())))
    shutil.rmtree(folder, ignore_errors=True)
    part.rename(folder)
    return folder


def recipe_of(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def label(image: str) -> str | None:
    proc = subprocess.run(
        ["docker", "image", "inspect", "-f", '{{index .Config.Labels "cwm-agent.recipe"}}', image],
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def image_id(image: str) -> str:
    return run(["docker", "image", "inspect", "-f", "{{.Id}}", image], capture_output=True).stdout


def build(tag: str, recipe: str, context: Path, logs: Path) -> None:
    log(f"build: {tag}")
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the legacy builder: --network=host
    args = ["docker", "build", "--network=host", "--label", f"cwm-agent.recipe={recipe}"]
    with (logs / f"{tag.replace('/', '_').replace(':', '_')}.log").open("w") as out:
        proc = subprocess.run([*args, "-t", tag, str(context)], stdout=out, stderr=out, env=env)
    if proc.returncode:
        raise SystemExit(f"docker build of {tag} failed: see {out.name}")


def env_image(repo: str, cache: Path, logs: Path) -> str:
    requirements = env_file(repo)
    tag = f"cwm-sweb.env.x86_64.{repo.replace('/', '_1776_').lower()}:latest"
    folder = wheels(requirements, cache)
    dockerfile = ENV_DOCKERFILE.format(base=BASE)
    recipe = recipe_of(
        image_id(BASE),
        dockerfile,
        PIP_CONF,
        ACTIVATE.read_text(),
        (folder / ".complete").read_text(),
    )
    if label(tag) == recipe:
        log(f"build: {tag} present")
        return tag
    with tempfile.TemporaryDirectory(prefix="sweb-env-") as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(dockerfile)
        shutil.copy(ACTIVATE, context / "activate")
        (context / "pip.conf").write_text(PIP_CONF)
        shutil.copytree(folder, context / "wheels")
        build(tag, recipe, context, logs)
    return tag


def testbed(mirror: Path, commit: str, into: Path) -> None:
    """The repository at ``commit``: its history up to there and the newest tag before it
    (versioneer and setuptools_scm read it), on a branch, with no remote."""
    git = ["git", "-C", str(into)]
    run(["git", "init", "-q", "-b", "main", str(into)])
    refs = [commit]
    tag = subprocess.run(
        ["git", "-C", str(mirror), "describe", "--tags", "--abbrev=0", commit],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if tag:
        refs.append(f"refs/tags/{tag}:refs/tags/{tag}")
    run([*git, "fetch", "-q", "--no-tags", str(mirror), *refs])
    run([*git, "checkout", "-q", "-B", "main", commit])
    run([*git, "reflog", "expire", "--expire=now", "--all"])
    run([*git, "gc", "-q", "--prune=now"])


def instance_image(record: dict[str, Any], env: str, mirror: Path, tag: str, logs: Path) -> None:
    install = install_command(record)
    dockerfile = INSTANCE_DOCKERFILE.format(env=env, install=install)
    recipe = recipe_of(image_id(env), dockerfile, record["base_commit"])
    if label(tag) == recipe:
        log(f"build: {tag} present")
        return
    with tempfile.TemporaryDirectory(prefix="sweb-instance-") as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(dockerfile)
        testbed(mirror, record["base_commit"], context / "testbed")
        build(tag, recipe, context, logs)


def check(chosen: list[dict[str, Any]], template: str, folder: Path, keep: Path) -> bool:
    """Gold resolved, a no-op not, the empty patch never run: per instance."""
    preds = folder / "check-preds.jsonl"
    rows = []
    for record in chosen:
        for name, patch in (("gold", record["patch"]), ("noop", NOOP), ("empty", "")):
            rows.append(
                {
                    "instance_id": record["instance_id"],
                    "model_name_or_path": name,
                    "model_patch": patch,
                }  # fmt: skip
            )
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = folder / "check-dataset.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in chosen))
    out = keep / "check-evaluation"
    shutil.rmtree(out, ignore_errors=True)
    args = [sys.executable, "-m", "cwm_agent", "evaluate", str(preds), "-d", str(dataset)]
    args += ["--image-template", template, "--candidates", "-o", str(out), "-q", "--workers", "1"]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    report = json.loads((out / "report.json").read_text())
    want = {"gold": "resolved", "noop": "unresolved", "empty": "empty"}
    good = True
    for entry in report["candidates"]:
        ok = entry["status"] == want[entry["model_name_or_path"]]
        good &= ok
        log(f"check: {entry['instance_id']} {entry['model_name_or_path']}: {entry['status']}"
            + ("" if ok else f" (expected {want[entry['model_name_or_path']]})"))  # fmt: skip
    log(f"check: evaluate's report and logs in {out}")
    return good


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=Path, required=True, help="OWNER+NAME/repo mirrors")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--instances", nargs="*", help="instance ids (default: selection_dev's)")
    parser.add_argument("--template", default=TEMPLATE, help="instance image names")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where wheels are kept")
    parser.add_argument("--check", action="store_true", help="grade gold, no-op, empty patches")
    parser.add_argument("--logs", type=Path, default=Path(tempfile.gettempdir()) / "sweb-build")
    args = parser.parse_args(argv)
    args.logs.mkdir(parents=True, exist_ok=True)
    chosen, envs = [], {}
    for record in records(args.data, args.instances):
        repo, iid = record["repo"], record["instance_id"]
        missing = None
        if not mirror_of(args.mirrors, repo).is_dir():
            missing = f"no mirror of {repo}"
        elif not env_file(repo).exists() or record["version"] not in env_versions(repo):
            missing = f"no env for {repo} {record['version']} in {ENVS.name}/"
        if missing:
            if args.instances or mirror_of(args.mirrors, repo).is_dir():
                log(f"skip: {iid}: {missing}")
            continue
        if repo not in envs:
            envs[repo] = env_image(repo, args.cache, args.logs)
        tag = image_name(args.template, iid)
        instance_image(record, envs[repo], mirror_of(args.mirrors, repo), tag, args.logs)
        chosen.append(record)
    log(f"images: {len(chosen)} instance(s): " + " ".join(r["instance_id"] for r in chosen))
    if args.check and chosen:
        with tempfile.TemporaryDirectory(prefix="sweb-check-") as tmp:
            good = check(chosen, args.template, Path(tmp), args.logs)
        return 0 if good else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
