"""The reward stage: a verifier model scores each group from the issue and its code change,
without running anything.

The verifier is any OpenAI-compatible model, built by ``factory.open_model`` (its SDK
retries kept); by default the run's own model and endpoint. Its prompt is the template
``verifier.j2`` (a prompt set's folder may hold its own; else the bundled one, in our
words); it sees the code change without test infrastructure. Requests are greedy
(temperature 0) and ask for log-probabilities; the score is P(YES) (``answer.py``).
Requests run ``workers`` at a time, shared by every instance of a selection, and every
answer is cached on disk (``score_cache.py``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cwm_agent import prompt_sets, prompts
from cwm_agent.costs import Prices
from cwm_agent.errors import ModelError
from cwm_agent.settings import ModelSettings
from cwm_agent.verification import answer
from cwm_agent.verification.records import Group
from cwm_agent.verification.score_cache import ScoreCache, cache_key

TEMPLATE = "verifier"
MAX_ISSUE_CHARS = 32_768  # CWM's 8,192-token issue limit, at about 4 characters a token
MAX_PATCH_CHARS = 65_536


@dataclass(frozen=True)
class VerifierConfig:
    model: ModelSettings
    workers: int = 4
    max_tokens: int = 16
    top_logprobs: int = 5
    cache_dir: Path | None = None  # None: no cache
    prompts: str | None = None  # the prompt set; its folder may hold verifier.j2
    prices: Prices = Prices()  # the verifier model's, where the user gave one


@dataclass(frozen=True)
class Score:
    """One group's score. ``score`` None: no answer (``reason`` says why)."""

    group: str
    score: float | None
    source: str  # logprobs, answer, none, error
    answer: str = ""
    reason: str = ""
    cached: bool = False
    calls: int = 0
    tokens: int = 0
    seconds: float = 0.0
    model_error: bool = False  # the request failed after retries (a resume asks again)
    usd: float | None = None  # what the request cost, where the model has a price

    def row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"score": None if self.score is None else round(self.score, 6)}
        row.update(source=self.source, answer=self.answer, cached=self.cached)
        if self.reason:
            row["reason"] = self.reason
        return row


class RewardModel:
    """Thread-safe: instances scored on several threads share its pool and its client."""

    def __init__(self, config: VerifierConfig) -> None:
        self.config = config
        self.model_name = config.model.name
        self.transport = config.model.transport
        self.template, self.template_sha256 = load_template(config.prompts)
        self.cache = ScoreCache(config.cache_dir)
        self._pool = ThreadPoolExecutor(config.workers, thread_name_prefix="verifier")
        self._client: Any = None
        self._lock = threading.Lock()

    def score(self, issue: str, groups: Sequence[Group], repo: str = "") -> list[Score]:
        """Every group's score, in the order given."""
        jobs = [self._pool.submit(self._score_one, issue, g, repo) for g in groups]
        return [job.result() for job in jobs]

    def _score_one(self, issue: str, group: Group, repo: str) -> Score:
        prompt = self.prompt(issue, group.verify_patch, repo)
        key = cache_key(self.model_name, self.transport, self.template_sha256, prompt)
        found = self.cache.get(key)
        if found is not None:
            return Score(group.key, found["score"], found.get("source", ""),
                         found.get("answer", ""), found.get("reason", ""), cached=True)  # fmt: skip
        messages = [{"role": "user", "content": prompt}]
        client = self._open()  # once: the SDK's import is not this request's cost
        started = time.monotonic()
        try:
            reply = self._ask(client, messages)
        except ModelError as exc:
            seconds = time.monotonic() - started
            return Score(group.key, None, "error", reason=str(exc).splitlines()[0],
                         calls=1, seconds=seconds, model_error=True)  # fmt: skip
        reading = answer.read(reply, self.config.max_tokens)
        tokens, usd = reply.usage.total_tokens, self.config.prices.cost(reply.usage)
        result = Score(group.key, reading.score, reading.source, reading.answer, reading.reason,
                       calls=1, tokens=tokens, seconds=time.monotonic() - started,
                       usd=usd)  # fmt: skip
        if reading.score is not None:
            self.cache.put(key, {**result.row(), "model": self.model_name,
                                 "template_sha256": self.template_sha256})  # fmt: skip
        return result

    def prompt(self, issue: str, patch: str, repo: str = "") -> str:
        cut: list[str] = []
        if len(issue) > MAX_ISSUE_CHARS:
            issue, cut = issue[:MAX_ISSUE_CHARS], [*cut, "the end of the issue"]
        if len(patch) > MAX_PATCH_CHARS:
            patch, cut = patch[:MAX_PATCH_CHARS], [*cut, "the end of the change"]
        return str(self.template.render(issue=issue, patch=patch, repo=repo, cut=cut)).strip()

    def _ask(self, client: Any, messages: list[dict[str, Any]]) -> Any:
        top, limit = self.config.top_logprobs, self.config.max_tokens
        if self.transport == "completions":
            from cwm_agent.models.cwm_chat import STOP_TOKENS, render_chat

            # No reasoning prefill: the answer is the first token (--verifier-max-tokens
            # leaves room for a model that reasons anyway).
            prompt = render_chat(messages, think=False)
            return client.complete_text(
                prompt, stop=list(STOP_TOKENS), max_tokens=limit, temperature=0.0, logprobs=top
            )
        return client.complete(messages, max_tokens=limit, logprobs=top)

    def _open(self) -> Any:
        with self._lock:
            if self._client is None:
                from cwm_agent.factory import open_model

                self._client = open_model(self.config.model)
            return self._client

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()


def verifier_settings(
    base: ModelSettings, model: str | None = None, base_url: str | None = None
) -> ModelSettings:
    """The run's model settings for the verifier: its own name and endpoint when given,
    greedy decoding (a score, not a sample)."""
    return replace(
        base,
        name=model or base.name,
        base_url=base_url or base.base_url,
        temperature=0.0,
        top_p=1.0,
    )


def load_template(prompt_set: str | None) -> tuple[Any, str]:
    """The verifier template (the set's own ``verifier.j2`` if it has one) and its hash."""
    folder = None
    if prompt_set:
        chosen = prompt_sets.load(prompt_set)
        if chosen.directory is not None and (chosen.directory / f"{TEMPLATE}.j2").is_file():
            folder = str(chosen.directory)
    environment = prompts.environment(folder)
    template = environment.get_template(f"{TEMPLATE}.j2")
    source = Path(template.filename).read_bytes() if template.filename else b""
    return template, hashlib.sha256(source).hexdigest()
