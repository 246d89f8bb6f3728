"""Prices, cost arithmetic and budgets: the one place where money is counted.

Prices are USD per million tokens: ``input`` (prompt), ``output`` (completion) and
``cached_input`` (the prompt tokens a server says it read from its cache; without a price
of their own they cost the input price). A model has a price only when the user gives one
(``--price-input``/``--price-output``, env ``CWM_AGENT_PRICE_*``, a config file's keys or
its ``[prices."MODEL"]`` table): none is built in, and a model without a price shows
tokens only and never ends a run for money.

A ``Meter`` counts what a run spends and holds its budgets. Meters nest (a rollout's in a
scaled run's in a batch's) and a request counts in every meter up the chain, so a budget
reached anywhere ends every run under it at its next step, as a step limit does. The
check comes before each request: a run can pass its budget by the one request that
crossed it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cwm_agent.errors import UsageError
from cwm_agent.types import Usage

PER_TOKENS = 1_000_000  # prices are per million tokens


@dataclass(frozen=True)
class Prices:
    """USD per million tokens; ``known`` when both input and output are priced."""

    input: float | None = None
    output: float | None = None
    cached_input: float | None = None

    @property
    def known(self) -> bool:
        return self.input is not None and self.output is not None

    def cost(self, usage: Usage) -> float | None:
        """What ``usage`` costs in USD, or None without a price."""
        if self.input is None or self.output is None:
            return None
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        fresh = usage.prompt_tokens - cached
        total = fresh * self.input + cached * cached_price + usage.completion_tokens * self.output
        return total / PER_TOKENS

    def record(self) -> dict[str, float | None] | None:
        """The prices as stored with a run (None: not priced)."""
        if not self.known:
            return None
        return {"input": self.input, "output": self.output, "cached_input": self.cached_input}


def checked_prices(
    input_price: float | None, output_price: float | None, cached_price: float | None, model: str
) -> Prices:
    """A model's prices; half a price (input without output, or the reverse, or only the
    cached price) would silently price nothing, so it is a usage error."""
    given = {"--price-input": input_price, "--price-output": output_price}
    missing = [flag for flag, value in given.items() if value is None]
    if len(missing) == 1 or (len(missing) == 2 and cached_price is not None):
        raise UsageError(
            f"the price of model {model!r} is incomplete: {', '.join(missing)} is not set",
            hint="give both --price-input and --price-output (USD per million tokens), or "
            'input and output in a [prices."MODEL"] table of the config file',
        )
    return Prices(input_price, output_price, cached_price)


@dataclass(frozen=True)
class Budget:
    """Limits on what a meter may spend; ``scope`` names whose budget it is in messages."""

    max_cost: float | None = None  # USD
    max_tokens: int | None = None  # prompt + completion tokens
    scope: str = "this run"
    cost_flag: str = "--max-cost"
    tokens_flag: str = "--max-total-tokens"


@dataclass(frozen=True)
class Limit:
    """A budget that is spent: the run's end status and the reason it gives."""

    status: str  # cost_limit or token_limit
    reason: str


class Meter:
    """Tokens and cost spent under one budget, and whatever meter it counts into.

    Thread-safe: a batch's meter is shared by its worker threads.
    """

    def __init__(
        self,
        prices: Prices,
        budget: Budget | None = None,
        parent: Meter | None = None,
        spent: Usage | None = None,
    ) -> None:
        self.prices = prices
        self.budget = budget or Budget()
        self.parent = parent
        self._usage = spent or Usage()
        self._lock = threading.Lock()

    def add(self, usage: Usage) -> None:
        with self._lock:
            self._usage = self._usage + usage
        if self.parent is not None:
            self.parent.add(usage)

    @property
    def usage(self) -> Usage:
        with self._lock:
            return self._usage

    @property
    def cost_usd(self) -> float | None:
        return self.prices.cost(self.usage)

    def exhausted(self) -> Limit | None:
        """The first budget spent, this meter's first, then those above it."""
        budget, usage = self.budget, self.usage
        cost = self.prices.cost(usage)
        if budget.max_cost is not None and cost is not None and cost >= budget.max_cost:
            return Limit(
                "cost_limit",
                f"reached the cost budget of {budget.scope} ({budget.cost_flag} "
                f"{usd(budget.max_cost)}): {usd(cost)} spent",
            )
        if budget.max_tokens is not None and usage.total_tokens >= budget.max_tokens:
            return Limit(
                "token_limit",
                f"reached the token budget of {budget.scope} ({budget.tokens_flag} "
                f"{budget.max_tokens:,}): {usage.total_tokens:,} tokens used",
            )
        return self.parent.exhausted() if self.parent is not None else None


def usd(amount: float | None) -> str:
    """``$0.0123`` below a dollar (small runs stay readable), ``$12.34`` above."""
    if amount is None:
        return "-"
    return f"${amount:.4f}" if abs(amount) < 1 else f"${amount:,.2f}"


def rounded(amount: float | None) -> float | None:
    """A cost as records store it: to a millionth of a dollar."""
    return None if amount is None else round(amount, 6)


def unpriced_warning(prices: Prices, model: str, *flags: tuple[str, Any]) -> str | None:
    """What to say when a cost budget is given for a model without a price (it never
    ends a run: there is no cost to count)."""
    given = [f"{flag} {value}" for flag, value in flags if value is not None]
    if prices.known or not given:
        return None
    return (
        f"{', '.join(given)} ignored: model {model!r} has no price (give --price-input and "
        '--price-output, or a [prices."MODEL"] table in the config file); tokens are counted'
    )


def usage_of(record: Mapping[str, Any] | None) -> Usage:
    """A stored usage object (trajectory, result document) read back; what it lacks is 0."""
    if not isinstance(record, Mapping):
        return Usage()

    def count(key: str) -> int:
        value = record.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return Usage(count("prompt_tokens"), count("completion_tokens"), count("cached_tokens"))


def sum_usd(amounts: list[float | None]) -> float | None:
    """The total of the costs that are known; None when none is."""
    known = [a for a in amounts if isinstance(a, (int, float)) and not isinstance(a, bool)]
    return rounded(sum(known)) if known else None
