"""The frozen records a run is built from, and the one builder that fills them.

Each record's fields are filled from the settings of its group (``config.SETTINGS``,
resolved flag > env > config file > default), field by field, so a new setting is one
``Setting`` plus one field here. ``RunSettings`` ties them to one repository and run id.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cwm_agent import prompt_sets
from cwm_agent.config import GROUPS, SETTINGS, Resolved, in_group
from cwm_agent.config_values import size_bytes
from cwm_agent.costs import Budget, Prices, checked_prices
from cwm_agent.errors import UsageError
from cwm_agent.protocol import CHARS_PER_TOKEN
from cwm_agent.trajectory import new_run_id

CWM_CHAT_TEMPLATE_KWARGS = {"enable_thinking": True, "preserve_previous_think": True}


def default_extra_body(model_name: str) -> dict[str, Any]:
    """vLLM's chat-template switches for CWM; other models get none."""
    if "cwm" in model_name.lower():
        return {"chat_template_kwargs": dict(CWM_CHAT_TEMPLATE_KWARGS)}
    return {}


@dataclass(frozen=True)
class ModelSettings:
    name: str
    base_url: str | None = None
    api: str = "auto"  # chat: /v1/chat/completions; completions: CWM format rendered here
    temperature: float = 1.0
    top_p: float = 0.95
    request_timeout: float = 600.0
    max_retries: int = 4
    chat_template_kwargs: dict[str, Any] | None = None  # None: the default for the model
    price_input: float | None = None  # USD per million tokens (costs.py); None: not priced
    price_output: float | None = None
    price_cached_input: float | None = None
    native_tools: bool = False  # not a setting: --tool-format openai (filled by build)

    @property
    def prices(self) -> Prices:
        return Prices(self.price_input, self.price_output, self.price_cached_input)

    @property
    def transport(self) -> str:
        """The API actually used: ``auto`` is completions (CWM's own format, rendered here)
        for CWM-named models, else chat; native function calling always needs chat."""
        if self.api != "auto":
            return self.api
        if self.native_tools:
            return "chat"
        return "completions" if "cwm" in self.name.lower() else "chat"

    @property
    def extra_body(self) -> dict[str, Any]:
        """What every request adds: vLLM's chat_template_kwargs (``{}`` given: none)."""
        if self.chat_template_kwargs is None:
            return default_extra_body(self.name)
        given = self.chat_template_kwargs
        return {"chat_template_kwargs": given} if given else {}

    def public(self) -> dict[str, Any]:
        """What the trajectory records: everything but secrets (the key is never here)."""
        data = stored("model", self)  # the client uses user:password@; the record does not
        del data["chat_template_kwargs"]
        data.update(api=self.transport, api_setting=self.api, extra_body=self.extra_body)
        return data


@dataclass(frozen=True)
class AgentConfig:
    """Formats and limits of one episode (CWM's defaults)."""

    tool_format: str = "cwm"
    max_steps: int = 128
    max_context: int = 131_072
    max_reply_tokens: int = 65_536
    timeout: float = 120.0
    max_output_tokens: int = 32_768  # one tool result (CWM's per-message limit)
    max_patch_kb: int = 1024  # a patch (and what a trajectory keeps of one)
    max_format_errors: int = 5
    issue_max_tokens: int = 8_192
    prompts: str | None = None  # None: the bundled prompt set
    submit_on_limit: bool = False
    trace_prediction: bool = False
    max_cost: float | None = None  # USD; the run ends as at a step limit (costs.Meter)
    max_total_tokens: int | None = None

    @property
    def budget(self) -> Budget:
        """The run's own budget (with --attempts: of all attempts together)."""
        return Budget(self.max_cost, self.max_total_tokens)

    @property
    def max_output_chars(self) -> int:
        """``max_output_tokens`` in characters, estimated as the agent does (4 a token)."""
        return self.max_output_tokens * CHARS_PER_TOKEN

    @property
    def max_patch_bytes(self) -> int:
        return self.max_patch_kb * 1024


@dataclass(frozen=True)
class RuntimeSettings:
    """Where the commands run: a private local copy, or a container."""

    runtime: str = "local"
    image: str | None = None
    workdir: str = "/repo"
    repo_in_image: bool = False
    network: bool = False
    memory: str | None = "4g"
    pids_limit: int | None = 1024
    shell_init: str | None = None  # None: SWE-bench's testbed activation where it applies
    sandbox: str = "auto"
    tmp_size: str | None = None  # the sandbox's tmpfs size, as given (``tmp_bytes``)
    base_commit: str | None = None  # not a setting: a record's commit, checked in the image

    @property
    def tmp_bytes(self) -> int | None:
        return None if self.tmp_size is None else size_bytes(self.tmp_size)


@dataclass(frozen=True)
class ScalingSettings:
    """Test-time scaling (`--attempts K`); with one attempt a run is a single episode."""

    attempts: int = 1
    test_cmd: str | None = None  # None: the execution stage decides; "": none
    test_timeout: float = 900.0
    repro_tests: int = 5
    repro_max_steps: int = 128
    early_stop: bool = True
    max_test_runs: int | None = None  # the execution stage's budgets, per instance
    max_seconds: float | None = None
    verifier_model: str | None = None  # the reward stage runs only with one
    verifier_base_url: str | None = None
    verifier_prices: Prices = Prices()  # not a setting: ``verifier_prices`` (build fills it)

    @property
    def enabled(self) -> bool:
        return self.attempts > 1


@dataclass(frozen=True)
class BatchLimits:
    """The whole batch's budgets (``--max-total-cost``, ``--max-batch-tokens``)."""

    max_total_cost: float | None = None
    max_batch_tokens: int | None = None

    @property
    def budget(self) -> Budget:
        return Budget(
            self.max_total_cost,
            self.max_batch_tokens,
            scope="the batch",
            cost_flag="--max-total-cost",
            tokens_flag="--max-batch-tokens",
        )


@dataclass(frozen=True)
class RunSettings:
    repo: Path
    model: ModelSettings
    agent: AgentConfig = AgentConfig()
    runtime: RuntimeSettings = RuntimeSettings()
    scaling: ScalingSettings = ScalingSettings()
    traj_path: Path | None = None
    run_id: str = field(default_factory=new_run_id)

    def record(self) -> dict[str, Any]:
        """The resolved configuration as the trajectory stores it (no secrets)."""
        return {
            "run_id": self.run_id,
            "repo": str(self.repo),
            "runtime": self.runtime.runtime,
            "image": self.runtime.image,
            "model": self.model.public(),
            "agent": stored("agent", self.agent),
            "runtime_settings": stored("runtime", self.runtime),
            "trace_prediction": self.agent.trace_prediction,
        }


_RECORDS: dict[str, type[Any]] = {
    "model": ModelSettings,
    "agent": AgentConfig,
    "runtime": RuntimeSettings,
    "scaling": ScalingSettings,
    "batch": BatchLimits,
}
assert set(_RECORDS) == set(GROUPS)


def record(group: str, cfg: Resolved) -> Any:
    """The ``group`` record with every setting of that group from ``cfg`` (as the client and
    the runtime use them: a URL keeps its credentials; ``stored`` is what may be written)."""
    return _RECORDS[group](**{s.target: cfg[s.name] for s in in_group(group)})


def stored(group: str, filled: Any) -> dict[str, Any]:
    """The fields of ``group``'s record ``filled`` as they may be stored or shown (a
    trajectory, a batch's manifest): every URL setting without its credentials."""
    data = asdict(filled)
    for spec in in_group(group):
        if spec.target in data:
            data[spec.target] = spec.shown(data[spec.target])
    return data


def model_settings(cfg: Resolved) -> ModelSettings:
    if not cfg["model"]:
        raise UsageError(
            "no model given",
            hint="pass --model NAME, set CWM_AGENT_MODEL, or set model in a config file",
        )
    settings: ModelSettings = record("model", cfg)
    prices = settings.prices  # half a price would price nothing: refused
    checked_prices(prices.input, prices.output, prices.cached_input, settings.name)
    return settings


def verifier_prices(cfg: Resolved) -> Prices:
    """The verifier model's prices: the --price-* flags (and env, keys) price --model; another
    verifier model is priced by its own [prices."MODEL"] entry, or not at all."""
    name = cfg["verifier_model"] or cfg["model"]
    if name == cfg["model"]:
        found = (cfg["price_input"], cfg["price_output"], cfg["price_cached_input"])
    else:
        table = cfg.table_prices(name)
        found = (table.get("input"), table.get("output"), table.get("cached_input"))
    return checked_prices(*found, name)


def build(cfg: Resolved, repo: Path, traj_path: Path | None = None) -> RunSettings:
    """Everything one run needs, from the resolved settings (the model is required)."""
    agent: AgentConfig = record("agent", cfg)
    settings = RunSettings(
        repo=repo,
        model=replace(model_settings(cfg), native_tools=agent.tool_format == "openai"),
        agent=agent,
        runtime=record("runtime", cfg),
        scaling=replace(record("scaling", cfg), verifier_prices=verifier_prices(cfg)),
        traj_path=traj_path,
    )
    check_sampling(settings)
    runtime = settings.runtime
    if runtime.tmp_size is not None:  # refused now where it cannot apply
        from cwm_agent.runtimes.local_setup import check_tmp_size

        check_tmp_size(runtime.tmp_size, runtime.runtime, runtime.sandbox)
    # An unknown prompt set is refused now, not once the runtime has been set up.
    prompt_sets.load(settings.agent.prompts).check_tool_format(settings.agent.tool_format)
    return settings


def check_sampling(settings: RunSettings) -> None:
    """Several attempts need sampling: at temperature 0 they would all be the same."""
    if settings.scaling.attempts > 1 and settings.model.temperature <= 0:
        raise UsageError(
            "--attempts needs sampling, but --temperature is 0: every attempt would be the same",
            hint="use --temperature 1.0 (CWM's default) or a single attempt",
        )


def _check_fields() -> None:
    """Every setting names a real field of its record (a typo fails at import, in tests)."""
    for spec in SETTINGS.values():
        names = {f.name for f in fields(_RECORDS[spec.group])}
        assert spec.target in names, f"{spec.name}: no field {spec.target} in {spec.group}"


_check_fields()
