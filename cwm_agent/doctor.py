"""`cwm-agent doctor`: check what a run needs, each problem with the fix.

Checks: the configuration, the API key, the model endpoint (reachable, the model listed),
the Docker engine and image, git, the prompt templates, the trajectories folder. A missing
Docker engine is a warning unless the runtime is docker. Exit 0 without failures, else 1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

import click

from cwm_agent.config import Resolved, resolve
from cwm_agent.console import visible
from cwm_agent.errors import UsageError
from cwm_agent.options import check_runs_home, config_options, setting_option, typed_settings

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
_MARKS = {OK: ("ok", "green"), WARN: ("warn", "yellow"), FAIL: ("FAIL", "red"), SKIP: ("skip", "")}
_SERVER_HINT = (
    "start the model server, or fix --base-url / OPENAI_BASE_URL / base_url in the config"
)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    hint: str = ""


def check_config(
    flags: dict[str, Any], config: str | None, profile: str | None
) -> tuple[Check, Resolved]:
    try:
        resolved = resolve(flags, config, profile)
    except UsageError as exc:
        fallback = resolve(flags, use_file=False)
        return Check("config", FAIL, exc.message, exc.hint or "fix the config file"), fallback
    where = str(resolved.config_file) if resolved.config_file else "no config file (defaults)"
    if resolved.profile:
        where += f", profile {resolved.profile}"
    for notice in resolved.notices:  # a project file is never read silently, here neither
        where += f"; {notice}"
    return Check("config", OK, where), resolved


def check_key() -> Check:
    if os.environ.get("OPENAI_API_KEY"):
        return Check("api key", OK, "OPENAI_API_KEY is set")
    return Check(
        "api key",
        WARN,
        "OPENAI_API_KEY is not set (fine for servers without auth, such as a local vLLM)",
        "export OPENAI_API_KEY=... if the server wants a key",
    )


def check_endpoint(base_url: str | None, timeout: float) -> tuple[Check, list[str] | None]:
    """GET /models through the model client; returns the served model ids when it answers."""
    import openai  # lazy: ~0.5 s

    from cwm_agent.factory import open_model
    from cwm_agent.settings import ModelSettings

    settings = ModelSettings("-", base_url, request_timeout=timeout, max_retries=0)
    client = open_model(settings)
    url = client.base_url_shown
    try:
        ids = client.served_models()
    except openai.AuthenticationError as exc:
        problem = Check(
            "endpoint", FAIL, f"{url} refused the key ({exc.status_code})", "check OPENAI_API_KEY"
        )
    except openai.NotFoundError:
        problem = Check(
            "endpoint",
            WARN,
            f"{url} is reachable but does not serve GET /models",
            "the model name cannot be checked",
        )
    except openai.APIStatusError as exc:
        problem = Check("endpoint", FAIL, f"{url}/models answered {exc.status_code}", _SERVER_HINT)
    except openai.APIConnectionError as exc:
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        problem = Check("endpoint", FAIL, f"cannot reach {url}: {exc.message}{cause}", _SERVER_HINT)
    else:
        return Check("endpoint", OK, f"{url} answers ({len(ids)} models served)"), ids
    finally:
        client.close()
    return problem, None


def check_model(model: str | None, served: list[str] | None) -> Check:
    if not model:
        return Check(
            "model",
            FAIL,
            "no model set",
            "pass --model, set CWM_AGENT_MODEL, or set model in the config",
        )
    if served is None:
        return Check("model", SKIP, f"{model}: not checked (no model list from the endpoint)")
    if model in served:
        return Check("model", OK, f"{model} is served")
    listed = ", ".join(served[:8]) + (" ..." if len(served) > 8 else "")
    return Check(
        "model",
        FAIL,
        f"{model} is not among the served models: {listed or 'none'}",
        "pass --model with one of the served names",
    )


def check_docker(runtime: str, image: str | None) -> list[Check]:
    """The engine (a warning when absent, unless the runtime is docker) and the image."""
    needed = runtime == "docker"
    missing = FAIL if needed else WARN
    why = "" if needed else " (needed only for --runtime docker)"
    try:
        import docker  # lazy, optional extra
    except ImportError:
        hint = "reinstall cwm-agent: the docker SDK is one of its dependencies"
        return [Check("docker", missing, "the docker Python SDK is not installed" + why, hint)]
    try:
        client = docker.from_env(timeout=5)
        version = client.version().get("Version", "?")
    except docker.errors.DockerException as exc:
        host = os.environ.get("DOCKER_HOST") or "the default socket"
        hint = "start dockerd, or point DOCKER_HOST at a running engine"
        checks = [Check("docker", missing, f"no Docker engine at {host}{why}: {exc}", hint)]
        if image:
            checks.append(Check("image", SKIP, f"{image}: not checked (no engine)"))
        return checks
    checks = [Check("docker", OK, f"Docker Engine {version}")]
    if image:
        checks.append(_check_image(client, image))
    elif needed:
        hint = "pass --image IMAGE (or set image in the config); cwm-agent never pulls"
        checks.append(Check("image", FAIL, "the docker runtime needs an image: none is set", hint))
    client.close()
    return checks


def _check_image(client: Any, image: str) -> Check:
    import docker

    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound:
        hint = f"docker pull {image} (or docker build -t {image} .); cwm-agent never pulls"
        return Check("image", FAIL, f"{image} is not present in the engine", hint)
    except docker.errors.DockerException as exc:
        return Check("image", FAIL, f"{image}: {exc}", "check the engine")
    return Check("image", OK, f"{image} is present ({found.short_id})")


def check_git() -> Check:
    exe = shutil.which("git")
    if exe is None:
        return Check("git", FAIL, "git is not on PATH", "install git (e.g. apt-get install git)")
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True)
    return Check("git", OK if proc.returncode == 0 else FAIL, proc.stdout.strip() or exe)


def check_prompts(spec: str | None = None) -> Check:
    """The bundled templates compile, and so does the prompt set in use (named, hashed)."""
    from cwm_agent import prompt_sets, prompts

    try:
        folder = prompts.prompts_dir()
        names = sorted(p.name for p in folder.glob("*.j2"))
        for name in names:
            prompts.environment(None).get_template(name)
    except Exception as exc:  # missing folder, broken template: either way, reinstall
        return Check("prompts", FAIL, f"{type(exc).__name__}: {exc}", "reinstall cwm-agent")
    try:
        chosen = prompt_sets.load(spec)
        own = str(chosen.directory) if chosen.directory else None
        for name in chosen.own:
            prompts.environment(own).get_template(f"{name}.j2")
    except UsageError as exc:
        return Check("prompts", FAIL, exc.message, exc.hint)
    except Exception as exc:  # a template of the set does not compile
        hint = "fix the template, or re-import the set (cwm-agent prompts import-cwm PATH --force)"
        return Check("prompts", FAIL, f"prompt set {spec}: {type(exc).__name__}: {exc}", hint)
    used = f"prompt set {chosen.name} (sha256 {chosen.sha256[:12]})"
    return Check("prompts", OK, f"{len(names)} templates in {folder}; {used}")


def check_runs_dir() -> Check:
    from cwm_agent.trajectory import default_runs_dir

    folder = default_runs_dir()
    try:
        check_runs_home(None)  # what run and best-of refuse
    except UsageError as exc:
        return Check("trajectories", FAIL, exc.message, exc.hint)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if os.access(existing, os.W_OK):
        return Check("trajectories", OK, f"written to {folder}")
    hint = "set CWM_AGENT_HOME to a writable folder, or pass --traj PATH to run"
    return Check("trajectories", FAIL, f"{existing} is not writable", hint)


def check_sandbox(runtime: str, choice: str) -> Check:
    """The local runtime's sandbox: available, asked for but missing, or turned off."""
    if runtime != "local":
        return Check("sandbox", SKIP, f"not used with --runtime {runtime}")
    if choice == "none":
        return Check("sandbox", WARN, "turned off (--sandbox none): commands run with your rights")
    from cwm_agent.runtimes.sandbox import works

    why_not = works()
    if why_not is None:
        return Check("sandbox", OK, "bubblewrap works: commands run sandboxed")
    hint = "apt-get install bubblewrap (or the distribution's package); --sandbox none to opt out"
    return Check("sandbox", FAIL if choice == "bwrap" else WARN, f"no sandbox: {why_not}", hint)


def run_checks(
    flags: dict[str, Any], config: str | None, profile: str | None, timeout: float
) -> list[Check]:
    config_check, cfg = check_config(flags, config, profile)
    endpoint, served = check_endpoint(cfg["base_url"], timeout)
    return [
        config_check,
        check_key(),
        endpoint,
        check_model(cfg["model"], served),
        *check_docker(cfg["runtime"], cfg["image"]),
        check_sandbox(cfg["runtime"], cfg["sandbox"]),
        check_git(),
        check_prompts(cfg["prompts"]),
        check_runs_dir(),
    ]


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for check in checks:
        mark, colour = _MARKS[check.status]
        badge = click.style(f"{mark:<4}", fg=colour or None, bold=True)
        # Details quote servers (model ids, error bodies) and config files: shown, not obeyed.
        lines.append(f"{badge}  {check.name:<{width}}  {visible(check.detail)}")
        if check.hint and check.status in (WARN, FAIL):
            lines.append(f"{'':4}  {'':<{width}}  fix: {visible(check.hint)}")
    failures = sum(c.status == FAIL for c in checks)
    warnings = sum(c.status == WARN for c in checks)
    lines.append(f"\n{failures} failure(s), {warnings} warning(s)")
    return "\n".join(lines)


@click.command()
@config_options
@setting_option("base_url", help="Model endpoint to check [env OPENAI_BASE_URL].")
@setting_option("model", help="Model that must be served [env CWM_AGENT_MODEL].")
@setting_option("runtime", help="With docker, a missing engine or image is a failure.")
@setting_option("image", help="Docker image that must be present.")
@setting_option("prompts", help="Prompt set whose templates must compile.")
@setting_option("sandbox", help="The local runtime's sandbox that must work (bwrap: a failure).")
@click.option(
    "--connect-timeout", type=float, default=5.0, show_default=True, help="Seconds to wait."
)
@click.option("--json", "as_json", is_flag=True, help="Print the checks as one JSON document.")
def doctor(**opts: Any) -> None:
    """Check that everything a run needs is in place, with a fix for each problem.

    Uses the same settings as `run` (flags, env, config file and --profile). Prints the
    report on stdout; exits 0 when nothing failed, 1 otherwise.

    \b
    Examples:
      cwm-agent doctor
      cwm-agent doctor --profile vllm-cwm
      cwm-agent doctor --base-url http://gpu:8000/v1 --model facebook/cwm
      cwm-agent doctor --runtime docker --image swebench/sweb.eval.x86_64.django_1776_django-11099
    """
    ctx = click.get_current_context()
    flags = typed_settings(ctx, opts)
    checks = run_checks(flags, opts["config_path"], opts["profile"], opts["connect_timeout"])
    if opts["as_json"]:
        ok = not any(c.status == FAIL for c in checks)
        click.echo(json.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        click.echo(render(checks))
    ctx.exit(1 if any(c.status == FAIL for c in checks) else 0)
