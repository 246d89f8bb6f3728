"""Prices, budgets and cached tokens (issue 22 item 1): the arithmetic, the settings and the
model clients, in process. Through the CLI: ``test_costs_e2e.py``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from cwm_agent.config import resolve
from cwm_agent.costs import Budget, Meter, Prices, usd
from cwm_agent.errors import UsageError
from cwm_agent.factory import open_model
from cwm_agent.models.abandon import Lane
from cwm_agent.scripted_server import ScriptedServer
from cwm_agent.settings import ModelSettings, build
from cwm_agent.types import Usage

CACHED = {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}


def test_a_price_counts_fresh_cached_and_output_tokens_apart():
    usage = Usage(prompt_tokens=1000, completion_tokens=100, cached_tokens=600)
    priced = Prices(input=2.0, output=8.0, cached_input=0.5)
    assert priced.cost(usage) == pytest.approx((400 * 2 + 600 * 0.5 + 100 * 8) / 1e6)
    at_input = Prices(input=2.0, output=8.0)  # cached tokens without a price of their own
    assert at_input.cost(usage) == pytest.approx((1000 * 2 + 100 * 8) / 1e6)
    assert Prices().cost(usage) is None and Prices(input=1.0).cost(usage) is None
    assert (usd(0.0123456), usd(12.345), usd(None)) == ("$0.0123", "$12.35", "-")


def test_meters_nest_and_the_first_spent_budget_is_named():
    prices = Prices(input=1.0, output=1.0)  # a dollar per million tokens
    batch = Meter(prices, Budget(max_cost=0.003, scope="the batch", cost_flag="--max-total-cost"))
    first = Meter(prices, Budget(max_tokens=2500), parent=batch)
    second = Meter(prices, parent=batch)
    first.add(Usage(2000, 0))
    assert first.exhausted() is None and batch.usage.total_tokens == 2000
    first.add(Usage(500, 0))
    limit = first.exhausted()
    assert limit is not None and limit.status == "token_limit"
    assert "--max-total-tokens 2,500" in limit.reason and "this run" in limit.reason
    assert second.exhausted() is None  # a run's own budget is its own
    second.add(Usage(400, 100))
    limit = second.exhausted()  # the batch's is everyone's: $0.003 spent
    assert limit is not None and limit.status == "cost_limit"
    assert "the batch (--max-total-cost $0.0030): $0.0030 spent" in limit.reason
    unpriced = Meter(Prices(), Budget(max_cost=0.001))
    unpriced.add(Usage(10**9, 10**9))
    assert unpriced.exhausted() is None and unpriced.cost_usd is None  # never ends a run


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_cached_prompt_tokens_are_read_by_both_clients(api):
    usage = {**CACHED, "prompt_tokens_details": {"cached_tokens": 600}}
    odd = {**CACHED, "prompt_tokens_details": {"cached_tokens": "many"}}  # a detail: ignored
    too_many = {**CACHED, "prompt_tokens_details": {"cached_tokens": 5000}}
    replies = [{"content": "a", "usage": u} for u in (usage, odd, too_many, CACHED)]
    with ScriptedServer(replies) as server:
        model = open_model(ModelSettings("m", server.base_url, api=api, max_retries=0))
        got = [model.complete([{"role": "user", "content": "hi"}]).usage for _ in replies]
    assert [u.cached_tokens for u in got] == [600, 0, 1000, 0]  # never more than the prompt
    assert got[0] == Usage(1000, 100, 600) and got[0].total_tokens == 1100


def test_a_stopped_run_gives_up_its_model_request():
    """What a batch's Ctrl-C does to a worker waiting on the model (issue 22 item 3)."""
    stop = threading.Event()
    with ScriptedServer([{"content": "late", "delay": 60}]) as server:
        model = open_model(ModelSettings("m", server.base_url, max_retries=0), stop.is_set)
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            model.complete([{"role": "user", "content": "hi"}])
        assert time.monotonic() - started < 30  # not the server's 60 s
        assert len(server.requests) == 1  # it was out, not refused before it left
    with pytest.raises(KeyboardInterrupt):  # already stopped: no request at all
        model.complete([{"role": "user", "content": "hi"}])


def test_a_lane_returns_raises_serves_two_callers_at_once_and_survives_a_give_up():
    lane, never = Lane(), lambda: False
    assert lane.run(lambda: 5, never) == 5
    with pytest.raises(ZeroDivisionError):
        lane.run(lambda: 1 / 0, never)
    both = threading.Barrier(2, timeout=30)  # broken (an error) if the calls were queued
    got: list[str] = []
    other = threading.Thread(
        target=lambda: got.append(lane.run(lambda: (both.wait(), "a")[1], never))
    )
    other.start()
    got.append(lane.run(lambda: (both.wait(), "b")[1], never))
    other.join()
    assert sorted(got) == ["a", "b"]
    gate, stop = threading.Event(), threading.Event()
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(KeyboardInterrupt):
        lane.run(gate.wait, stop.is_set)  # given up while its thread still waits
    assert lane.run(lambda: 7, never) == 7  # a new thread: not queued behind the old call
    gate.set()


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


PRICE_TABLE = """
max_steps = 50
[prices."gpt-4.1"]
input = 2.0
output = 8.0
cached_input = 0.5
[prices."facebook/cwm"]
input = 0.1
output = 0.2
"""


def test_the_price_table_prices_the_model_by_name_and_flags_win(tmp_path):
    path = str(_config(tmp_path, PRICE_TABLE))
    cfg = resolve({"model": "gpt-4.1"}, path, env={})
    assert build(cfg, tmp_path).model.prices == Prices(2.0, 8.0, 0.5)
    assert cfg.sources["price_input"] == f'file {path} [prices."gpt-4.1"]'
    other = build(resolve({"model": "facebook/cwm"}, path, env={}), tmp_path)
    assert other.model.prices == Prices(0.1, 0.2, None)
    unknown = build(resolve({"model": "local"}, path, env={}), tmp_path)
    assert not unknown.model.prices.known  # no price: tokens only
    env = {"CWM_AGENT_PRICE_OUTPUT": "4"}
    mixed = resolve({"model": "gpt-4.1", "price_input": 1.0}, path, env=env)
    assert build(mixed, tmp_path).model.prices == Prices(1.0, 4.0, 0.5)
    assert mixed.table_prices("facebook/cwm") == {"input": 0.1, "output": 0.2}


def test_half_a_price_and_bad_budgets_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="--price-output is not set"):
        build(resolve({"model": "m", "price_input": 1.0}, use_file=False, env={}), tmp_path)
    with pytest.raises(UsageError, match="--price-input, --price-output is not set"):
        build(resolve({"model": "m", "price_cached_input": 1.0}, use_file=False, env={}), tmp_path)
    for flags in ({"max_cost": 0.0}, {"max_total_tokens": 0}, {"price_input": -1.0}):
        with pytest.raises(UsageError):
            resolve({"model": "m", **flags}, use_file=False, env={})
    with pytest.raises(UsageError, match="CWM_AGENT_MAX_COST"):
        resolve({"model": "m"}, use_file=False, env={"CWM_AGENT_MAX_COST": "nan"})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[prices."m"]\ninput = 1.0\noutpt = 2.0\n', "[prices.\"m\"]: unknown key 'outpt'"),
        ('[prices."m"]\ninput = "cheap"\n', "[prices.\"m\"] input = 'cheap': expected a number"),
        ('[prices."m"]\ninput = -2.0\n', "must be at least 0"),
        ("prices = 3\n", "'prices' must hold one table per model"),
    ],
)
def test_a_bad_price_table_names_the_file_and_key(tmp_path, table, message):
    path = _config(tmp_path, table)
    with pytest.raises(UsageError) as caught:
        resolve({"model": "m"}, str(path), env={})
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_a_project_file_sets_neither_prices_nor_budgets(tmp_path):
    project = tmp_path / "checkout"
    project.mkdir()
    (project / "cwm-agent.toml").write_text(
        "timeout = 30\nmax_cost = 100.0\nprice_input = 0.0\nprice_output = 0.0\n"
        '[prices."m"]\ninput = 0.0\noutput = 0.0\n'
    )
    env = {"XDG_CONFIG_HOME": str(tmp_path / "no-user-config")}
    cfg = resolve({"model": "m"}, env=env, cwd=project)
    assert cfg["timeout"] == 30 and cfg["max_cost"] is None
    assert not build(cfg, project).model.prices.known
    (notice,) = cfg.notices
    assert "ignored max_cost, price_input, price_output, prices" in notice
