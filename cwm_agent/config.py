"""Settings that users configure: flag > env > config file > default, each with its source.

Every setting is one ``Setting`` below: its type, default, help, range, and the record
(``group``) and field it fills (``settings.py`` builds the records from them, ``options.py``
declares their flags). Adding one is one ``Setting`` plus one field of that record.

Which config files are read, and what a project's own ``./cwm-agent.toml`` may set (only
the settings marked ``project=True`` here), is ``config_files.py``; how each value is
checked is ``config_values.py``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cwm_agent.config_files import (
    LOCAL_FILE,
    FileLayer,
    PriceEntry,
    read_layer,
    user_config_path,
)
from cwm_agent.config_values import JSON, Setting, byte_size, from_env, from_flag, http_url

__all__ = ["JSON", "LOCAL_FILE", "SETTINGS", "Resolved", "Setting", "resolve", "user_config_path"]


def _settings(*specs: Setting) -> dict[str, Setting]:
    return {s.name: s for s in specs}


SETTINGS: dict[str, Setting] = _settings(
    # -- the model and how it is asked (ModelSettings) --
    Setting("model", str, None, "Model name.", "model", field="name"),
    Setting("base_url", str, None, "OpenAI-compatible API base URL.", "model", check=http_url),
    Setting(
        "api",
        ("auto", "chat", "completions"),
        "auto",
        "chat: the server's /v1/chat/completions; completions: CWM's chat format rendered "
        "here and sent to /v1/completions; auto: completions for models named like CWM "
        "(the name contains 'cwm') with --tool-format cwm, else chat.",
        "model",
    ),
    Setting(
        "temperature",
        float,
        1.0,
        "Sampling temperature (0-2).",
        "model",
        minimum=0,
        maximum=2,
        project=True,
    ),
    Setting(
        "top_p",
        float,
        0.95,
        "Nucleus sampling.",
        "model",
        minimum=0,
        above=True,
        maximum=1,
        project=True,
    ),
    Setting(
        "request_timeout",
        float,
        600.0,
        "Seconds to wait for one model reply.",
        "model",
        minimum=0,
        above=True,
    ),
    Setting(
        "max_retries",
        int,
        4,
        "Retries of a failed model request (429, 5xx, time-outs).",
        "model",
        minimum=0,
    ),
    Setting(
        "chat_template_kwargs",
        JSON,
        None,
        "JSON object for vLLM's chat_template_kwargs (default: CWM's thinking switches "
        "when the model name contains 'cwm'; '{}' sends none).",
        "model",
    ),
    Setting(
        "price_input",
        float,
        None,
        "USD per million input (prompt) tokens of --model; with --price-output the run's "
        'cost is counted and shown [default: the config file\'s [prices."MODEL"] table; '
        "none: tokens only].",
        "model",
        minimum=0,
    ),
    Setting(
        "price_output",
        float,
        None,
        "USD per million output (completion) tokens of --model.",
        "model",
        minimum=0,
    ),
    Setting(
        "price_cached_input",
        float,
        None,
        "USD per million prompt tokens the server read from its cache (where it reports "
        "them) [default: the input price].",
        "model",
        minimum=0,
    ),
    # -- one episode's format and limits (AgentConfig) --
    Setting(
        "tool_format",
        ("cwm", "openai"),
        "cwm",
        "cwm: CWM's <tool: NAME> text; openai: native.",
        "agent",
    ),
    Setting("max_tokens", int, 65_536, "Tokens per model reply.", "agent", "max_reply_tokens", 1),
    Setting("max_steps", int, 128, "Turns before the run stops.", "agent", minimum=1),
    Setting(
        "timeout",
        float,
        120.0,
        "Seconds per command.",
        "agent",
        minimum=0,
        above=True,
        project=True,
        project_cap=True,
    ),
    Setting("max_context", int, 131_072, "Context window in tokens.", "agent", minimum=1),
    Setting(
        "max_format_errors",
        int,
        5,
        "Consecutive format errors that end the run.",
        "agent",
        minimum=1,
        project=True,
    ),
    Setting(
        "max_output_tokens",
        int,
        32_768,
        "Tokens of one tool result before its middle is cut (CWM's per-message limit).",
        "agent",
        minimum=1,
        project=True,
        project_cap=True,
    ),
    Setting(
        "max_patch_kb",
        int,
        1024,
        "KiB a patch may hold: a larger submission is refused (the model is told which "
        "files make it large); a larger working-tree diff is written beside the "
        "trajectory instead of into it.",
        "agent",
        minimum=1,
    ),
    Setting(
        "prompts",
        str,
        None,
        "Prompt set: a name from `cwm-agent prompts list`, or a folder of templates "
        "given as a path (./DIR) [default: the bundled set].",
        "agent",
    ),
    Setting(
        "submit_on_limit",
        bool,
        False,
        "At a limit without a submission, emit the working-tree diff if valid.",
        "agent",
        project=True,
    ),
    Setting(
        "trace_prediction",
        bool,
        False,
        "Before showing a test's result, compare the model's predicted trace.",
        "agent",
        flags=("--trace-prediction/--no-trace-prediction",),
    ),
    Setting(
        "max_cost",
        float,
        None,
        "Budget in USD: once the model requests cost this much the run ends as at a step "
        "limit (per instance in batch; all attempts together with --attempts). Needs a price.",
        "agent",
        minimum=0,
        above=True,
    ),
    Setting(
        "max_total_tokens",
        int,
        None,
        "Token budget (prompt + completion, every request; no price needed): once used, "
        "the run ends as at a step limit (per instance in batch; all attempts together "
        "with --attempts).",
        "agent",
        minimum=1,
    ),
    # -- where commands run (RuntimeSettings) --
    Setting("runtime", ("local", "docker"), "local", "Where commands run.", "runtime"),
    Setting("image", str, None, "Docker image (with --runtime docker).", "runtime"),
    Setting("workdir", str, "/repo", "Repository path inside the container.", "runtime"),
    Setting("repo_in_image", bool, False, "Use the repository already in the image.", "runtime"),
    Setting("network", bool, False, "Give the container networking (off by default).", "runtime"),
    Setting("memory", str, "4g", "Container memory limit.", "runtime"),
    Setting("pids_limit", int, 1024, "Container process limit.", "runtime", minimum=1),
    Setting(
        "shell_init",
        str,
        None,
        "Bash run quietly at the start of every shell session (and after each restart), "
        "e.g. 'source /opt/miniconda3/bin/activate testbed' [default: that line for "
        "SWE-bench images with a testbed env; '' for nothing].",
        "runtime",
    ),
    Setting(
        "sandbox",
        ("auto", "bwrap", "none"),
        "auto",
        "The local runtime's sandbox: bwrap (bubblewrap: read-only system, private /tmp, "
        "no network unless --network, own PID namespace), none, or auto (bwrap where it "
        "works).",
        "runtime",
    ),
    Setting(
        "tmp_size",
        str,
        None,
        "The local sandbox's in-memory folders (/tmp, /dev/shm, /run): at most this size "
        "each, e.g. 512m or 1g; writing past it fails with 'No space left on device', and "
        "/dev itself is made read-only. Needs bubblewrap 0.6+; not for --sandbox none or "
        "--runtime docker [default: the kernel's, half the memory each].",
        "runtime",
        check=byte_size,
    ),
    # -- test-time scaling (ScalingSettings) --
    Setting(
        "attempts",
        int,
        1,
        "Independent rollouts; with more than one, sample that many patches and select "
        "one with tests (CWM's test-time scaling).",
        "scaling",
        minimum=1,
    ),
    Setting(
        "test_cmd",
        str,
        None,
        "The repository's tests, for the execution stage: run on the unpatched base and "
        "with each candidate change in one warm runtime; the tests that pass on the base "
        "count, one each. {tests} in it is replaced by the impacted test files; without it "
        "the command runs as given, read per test from pytest's report, else by its exit "
        "status [default: the SWE-bench record's own command, else pytest, on the impacted "
        "test files; '' for none].",
        "scaling",
        project=True,
    ),
    Setting(
        "test_timeout",
        float,
        900.0,
        "Seconds for one run of the tests.",
        "scaling",
        minimum=0,
        above=True,
        project=True,
        project_cap=True,
    ),
    Setting(
        "repro_tests",
        int,
        5,
        "Groups of model-written reproduction tests (same normalized text) that count: the "
        "largest among those that reproduce the issue on the base (0: none written).",
        "scaling",
        minimum=0,
    ),
    Setting(
        "repro_max_steps",
        int,
        128,
        "Turns of each reproduction-test rollout (CWM's test-generation budget).",
        "scaling",
        minimum=1,
    ),
    Setting(
        "early_stop",
        bool,
        True,
        "Stop executing candidates once one passes every check (the choice is the same: a "
        "later one could at best tie, and ties go to the earlier).",
        "scaling",
        flags=("--early-stop/--no-early-stop",),
        project=True,
    ),
    Setting(
        "max_test_runs",
        int,
        None,
        "Budget of the execution stage per instance: test and reproduction-script runs; "
        "the candidates it does not reach are not run, with the reason [default: none].",
        "scaling",
        minimum=1,
    ),
    Setting(
        "max_seconds",
        float,
        None,
        "Budget of the execution stage per instance: seconds [default: none].",
        "scaling",
        minimum=0,
        above=True,
    ),
    Setting(
        "verifier_model",
        str,
        None,
        "A verifier model that scores each distinct change from the issue, without running "
        "it (the reward stage: P(YES) from the answer's logprobs).",
        "scaling",
    ),
    Setting(
        "verifier_base_url",
        str,
        None,
        "The verifier's OpenAI-compatible endpoint [default: --base-url].",
        "scaling",
        check=http_url,
    ),
    # -- the whole batch's budgets (BatchLimits; `batch` only) --
    Setting(
        "max_total_cost",
        float,
        None,
        "Budget in USD of the whole batch (what OUTDIR's instances spent in earlier "
        "sessions included): once spent, no instance starts and running ones end at their "
        "next step.",
        "batch",
        minimum=0,
        above=True,
    ),
    Setting(
        "max_batch_tokens",
        int,
        None,
        "Token budget of the whole batch, as --max-total-cost but in tokens.",
        "batch",
        minimum=1,
    ),
)

GROUPS = ("model", "agent", "runtime", "scaling", "batch")


def in_group(group: str) -> list[Setting]:
    return [s for s in SETTINGS.values() if s.group == group]


@dataclass(frozen=True)
class Resolved:
    """Every setting's value and where it came from (``flag --x``, ``env X``, ``file P``...)."""

    values: dict[str, Any]
    sources: dict[str, str]
    config_file: Path | None
    profile: str | None
    project_file: Path | None = None  # ./cwm-agent.toml, read with the project rule
    ignored: tuple[str, ...] = ()  # what the project file set and may not
    notices: tuple[str, ...] = ()  # to say on stderr (a project file is never read silently)
    price_table: Mapping[str, PriceEntry] = field(default_factory=dict)  # [prices."MODEL"]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def given(self, name: str) -> bool:
        """Whether the user set it anywhere (flag, env or file), not left at the default."""
        return self.sources[name] != "default"

    def table_prices(self, model: str | None) -> dict[str, float]:
        """``[prices."MODEL"]`` of the trusted config file for ``model``: input, output,
        cached_input (those it sets)."""
        entry = self.price_table.get(model or "")
        return dict(entry[0]) if entry else {}

    def shown(self, name: str) -> Any:
        """The value as it may be shown or stored: a URL without its credentials."""
        return SETTINGS[name].shown(self.values[name])

    def document(self) -> dict[str, Any]:
        """The `config show --json` shape: no secrets, only whether the key is set."""
        return {
            "config_file": str(self.config_file) if self.config_file else None,
            "project_file": str(self.project_file) if self.project_file else None,
            "ignored": list(self.ignored),
            "profile": self.profile,
            "api_key_set": bool(os.environ.get("OPENAI_API_KEY")),
            "settings": {
                name: {"value": self.shown(name), "source": self.sources[name]} for name in SETTINGS
            },
            "prices": {model: entry for model, (entry, _) in self.price_table.items()},
        }


def resolve(
    flags: Mapping[str, Any],
    config: str | None = None,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    use_file: bool = True,
    defaults: Mapping[str, Any] | None = None,
) -> Resolved:
    """Resolve every setting. ``flags`` holds only the options given on the command line;
    ``defaults`` replaces some defaults (a command's own, e.g. `best-of`'s attempts)."""
    env = os.environ if env is None else env
    files = FileLayer({}, None, None, None)
    if use_file:
        files = read_layer(SETTINGS, config, profile, env, cwd)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, spec in SETTINGS.items():
        if flags.get(name) is not None:
            values[name], sources[name] = from_flag(spec, flags[name]), f"flag {spec.flag}"
            continue
        var = next((v for v in spec.env_vars if env.get(v)), None)
        if var is not None:
            values[name], sources[name] = from_env(spec, var, env[var]), f"env {var}"
        elif name in files.values:
            values[name], sources[name] = files.values[name]
        else:
            values[name] = (defaults or {}).get(name, spec.default)
            sources[name] = "default"
    _price_from_table(values, sources, files.prices)
    return Resolved(
        values, sources, files.config_file, files.profile, files.project_file,
        files.ignored, files.notices, files.prices,
    )  # fmt: skip


def _price_from_table(
    values: dict[str, Any], sources: dict[str, str], table: Mapping[str, PriceEntry]
) -> None:
    """The model's ``[prices."MODEL"]`` entry fills the prices no flag, variable or key set."""
    entry = table.get(values.get("model") or "")
    if entry is None:
        return
    prices, source = entry
    for key, value in prices.items():
        name = f"price_{key}"
        if sources[name] == "default":
            values[name], sources[name] = value, source
