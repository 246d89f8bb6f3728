"""Cost, budgets and the closing lines through the real CLI (issue 22 items 1 and 2): a run,
a batch, a scaled run and a selection, the model scripted over HTTP with known token counts.

Prices in these tests are whole dollars per million tokens, so every figure is exact.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from batch_support import Scripts, batch_args, issue, read_json, read_preds
from conftest import cwm, run_cli
from select_support import judge, prediction, read_jsonl, setup, write_jsonl
from test_progress import run_on_a_terminal

from cwm_agent.scripted_server import ScriptedServer

FIX_EDIT = (
    "mathlib/ops.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE"
)
STEPS = [
    cwm("edit", FIX_EDIT, "add() subtracts; fix it."),
    cwm("bash", "git diff > fix.patch"),
    cwm("submit", "fix.patch"),
    "<think>\nDone.\n</think>\n## Issue Summary\nadd() subtracted.",
]
# Every reply: 1,000 prompt tokens (600 of them cached) and 100 completion tokens.
USAGE = {
    "prompt_tokens": 1000,
    "completion_tokens": 100,
    "total_tokens": 1100,
    "prompt_tokens_details": {"cached_tokens": 600},
}
PRICES = ["--price-input", "2", "--price-output", "8", "--price-cached-input", "0.5"]
REPLY_COST = (400 * 2 + 600 * 0.5 + 100 * 8) / 1e6  # $0.0019 a reply


def script(steps: list[str] = STEPS, usage: dict = USAGE) -> list[dict]:
    return [{"content": step, "usage": usage} for step in steps]


def run_args(server: ScriptedServer, repo: Path, *extra: str) -> list[str]:
    base = ["run", str(repo), "--issue", "add() is wrong", "--base-url", server.base_url]
    return [*base, "--model", "m", *extra]


def test_a_priced_run_reports_its_cost_everywhere(buggy_repo, cli_env, tmp_path):
    traj = tmp_path / "run.json"
    with ScriptedServer(script()) as server:
        result = run_cli(
            run_args(server, buggy_repo, *PRICES, "--json", "--traj", str(traj)), cli_env
        )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    data = json.loads(traj.read_text())
    assert doc["cost_usd"] == data["cost_usd"] == pytest.approx(4 * REPLY_COST)
    assert doc["usage"] == {
        "prompt_tokens": 4000, "completion_tokens": 400, "cached_tokens": 2400,
        "total_tokens": 4400,
    }  # fmt: skip
    model = data["config"]["model"]
    assert (model["price_input"], model["price_output"], model["price_cached_input"]) == (2, 8, 0.5)
    assert [s["usage"]["cached_tokens"] for s in data["steps"]] == [600] * 4
    # Item 2: one closing line with the outcome, steps, tokens, cost, time and the trajectory.
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("run ended:")]
    assert line.startswith("run ended: submitted (exit 0): the model finished")
    assert " · 4 steps · 4,400 tokens (2,400 cached) · $0.0076 · " in line
    assert re.search(r" · \d+\.\d s · trajectory: ", line) and line.endswith(str(traj))
    shown = run_cli(["show", str(traj), "--width", "200"], cli_env)
    assert "$0.0076 (USD per 1M tokens: input 2, output 8, cached input 0.5)" in shown.stdout


def test_the_live_status_line_shows_the_cost(buggy_repo, cli_env):
    slow = script()
    slow[1] = {**slow[1], "delay": 0.5}  # the line is redrawn while the model "thinks"
    with ScriptedServer(slow) as server:
        code, _, terminal = run_on_a_terminal(run_args(server, buggy_repo, *PRICES), cli_env)
    assert code == 0, terminal
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal)  # colours and cursor moves
    assert "step 2/128 · 1.1k tokens (context 1.1k) · $0.0019 · " in shown, shown


def test_a_cost_budget_ends_the_run_as_a_step_limit(buggy_repo, cli_env):
    budget = ["--max-cost", "0.003"]  # crossed by the second reply ($0.0038)
    with ScriptedServer(script()) as server:
        stopped = run_cli(run_args(server, buggy_repo, *PRICES, *budget, "--json"), cli_env)
        asked = len(server.requests)
    assert stopped.returncode == 1, stopped.stderr
    doc = json.loads(stopped.stdout)
    assert doc["status"] == "cost_limit" and doc["steps"] == 2 and asked == 2
    assert (
        "reached the cost budget of this run (--max-cost $0.0030): $0.0038 spent" in doc["reason"]
    )
    assert doc["patch"] is None and doc["cost_usd"] == pytest.approx(2 * REPLY_COST)
    with ScriptedServer(script()) as server:  # --submit-on-limit: the edit is the patch
        kept = run_cli(run_args(server, buggy_repo, *PRICES, *budget, "--submit-on-limit"), cli_env)
    assert kept.returncode == 0, kept.stderr
    assert "diff --git a/mathlib/ops.py" in kept.stdout and "+    return a + b" in kept.stdout
    assert "run ended: submitted_cost_limit (exit 0): reached the cost budget" in kept.stderr


def test_a_token_budget_needs_no_price_and_an_unpriced_cost_budget_only_warns(buggy_repo, cli_env):
    with ScriptedServer(script()) as server:
        tokens = run_cli(run_args(server, buggy_repo, "--max-total-tokens", "2000"), cli_env)
    assert tokens.returncode == 1, tokens.stderr
    assert "run ended: token_limit (exit 1): reached the token budget of this run " in tokens.stderr
    assert "(--max-total-tokens 2,000): 2,200 tokens used · 2 steps" in tokens.stderr
    with ScriptedServer(script()) as server:
        unpriced = run_cli(run_args(server, buggy_repo, "--max-cost", "0.0001", "-q"), cli_env)
    assert unpriced.returncode == 0, unpriced.stderr  # a model without a price never aborts
    assert "warning: --max-cost 0.0001 ignored: model 'm' has no price" in unpriced.stderr
    assert "run ended" not in unpriced.stderr  # -q: errors and warnings only


def test_prices_from_the_config_table_and_the_environment(buggy_repo, cli_env, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[prices."m"]\ninput = 2.0\noutput = 8.0\n[prices."other"]\ninput = 99.0\n')
    env = {**cli_env, "CWM_AGENT_CONFIG": str(config), "CWM_AGENT_PRICE_OUTPUT": "4"}
    with ScriptedServer(script()) as server:
        result = run_cli(run_args(server, buggy_repo, "--json"), env)
    assert result.returncode == 0, result.stderr
    cost = 4 * (1000 * 2 + 100 * 4) / 1e6  # the table's input price, the variable's output
    assert json.loads(result.stdout)["cost_usd"] == pytest.approx(cost)


def test_apply_says_what_it_applied_and_an_error_still_ends_with_the_line(buggy_repo, cli_env):
    with ScriptedServer(script()) as server:
        applied = run_cli(run_args(server, buggy_repo, "--apply"), cli_env)
    assert applied.returncode == 0, applied.stderr
    assert f"applied the patch to {buggy_repo}: 1 file, 1 hunk (mathlib/ops.py)" in applied.stderr
    assert "return a + b" in (buggy_repo / "mathlib" / "ops.py").read_text()
    failing = [*script(STEPS[:1]), {"status": 500, "headers": {"x-should-retry": "false"}}]
    with ScriptedServer(failing) as server:
        failed = run_cli(run_args(server, buggy_repo, *PRICES, "--max-retries", "0"), cli_env)
    assert failed.returncode == 3, failed.stderr
    line = next(x for x in failed.stderr.splitlines() if x.startswith("run ended:"))
    assert line.startswith("run ended: ModelError (exit 3): Model request failed")
    assert " · 1 step · 1,100 tokens (600 cached) · $0.0019 · " in line


def test_trace_consultation_counts_in_the_runs_tokens_cost_and_budget(
    buggy_repo, cli_env, tmp_path
):
    """The consultation's completion request is the run's spending like the agent's own: its
    tokens and cost are in the trajectory, and a budget it spends ends the run."""
    from test_trace_consult import PREDICTION, PYTEST

    test_run = cwm("bash", f"{PYTEST} tests/test_ops.py::test_add -q")
    big = {"prompt_tokens": 5000, "completion_tokens": 500, "total_tokens": 5500}
    replies = [*script([test_run]), {"text": PREDICTION, "usage": big}, *script(STEPS)]
    traj = tmp_path / "t.json"
    with ScriptedServer(replies) as server:
        extra = ["--trace-prediction", "--max-total-tokens", "3000", "--traj", str(traj)]
        result = run_cli(run_args(server, buggy_repo, *PRICES, *extra), cli_env)
        paths = [r.path for r in server.requests]
    assert result.returncode == 1, result.stderr
    assert paths == ["/v1/chat/completions", "/v1/completions"]  # no request past the budget
    assert "(--max-total-tokens 3,000): 6,600 tokens used · 1 step" in result.stderr
    data = json.loads(traj.read_text())
    assert data["exit_status"] == "token_limit" and data["usage"]["total_tokens"] == 6600
    consulted = (5000 * 2 + 500 * 8) / 1e6
    assert data["cost_usd"] == pytest.approx(REPLY_COST + consulted)
    assert data["steps"][0]["hooks"]["TraceConsultant"]["status"] == "compared"


@pytest.mark.parametrize("command", ["run --attempts 2", "best-of --attempts 2"])
def test_a_scaled_run_that_ends_in_an_error_still_ends_with_the_line(
    command, buggy_repo, cli_env, tmp_path
):
    """Every rollout's first request succeeds, its second fails: exit 3, and the closing
    line counts what the rollouts spent (from their trajectories) before `Error:`; an
    earlier run's trajectory in the same folder is not counted."""
    failing = {"status": 500, "headers": {"x-should-retry": "false"}}
    best_of = "best-of" in command
    folder = tmp_path / ("runs" if best_of else "run")
    folder.mkdir()
    stale = {"run_id": "older-a3", "usage": {"total_tokens": 99}, "cost_usd": 1.0}
    (folder / "attempt-3.json").write_text(json.dumps(stale))

    def reply(body: dict) -> object:
        asked = sum(m["role"] == "assistant" for m in body["messages"])
        return script(STEPS[:1])[0] if asked == 0 else failing

    with ScriptedServer(reply) as server:
        args = [*command.split(), str(buggy_repo), "--issue", "add() is wrong", "--model", "m"]
        args += ["--base-url", server.base_url, *PRICES, "--max-retries", "0", "--repro-tests", "0"]
        where = ["--traj-dir", str(folder)] if best_of else ["--traj", str(tmp_path / "run.json")]
        result = run_cli([*args, *where], cli_env)
    assert result.returncode == 3, result.stderr
    name = command.split()[0]
    line = next(x for x in result.stderr.splitlines() if x.startswith(f"{name} ended:"))
    assert line.startswith(f"{name} ended: ModelError (exit 3): Model request failed")
    assert " · 2 attempts · 2,200 tokens (1,200 cached) · $0.0038 · " in line
    assert line.endswith(f" · trajectories: {folder}")
    assert result.stderr.index(line) < result.stderr.index("Error: ")


# -- batch ------------------------------------------------------------------------------


def batch_of(tmp_path: Path, n: int) -> tuple[Path, Scripts]:
    issues = tmp_path / "issues"
    issues.mkdir()
    for i in range(n):
        (issues / f"issue-{i}.md").write_text(issue(f"issue-{i}"))
    cheap = {"prompt_tokens": 1000, "completion_tokens": 0, "total_tokens": 1000}
    return issues, Scripts({f"issue-{i}": script(usage=cheap) for i in range(n)})  # $0.001 each


def test_a_batch_stops_at_its_total_budget_and_a_resume_goes_on(buggy_repo, cli_env, tmp_path):
    issues, scripts = batch_of(tmp_path, 3)
    out = tmp_path / "out"
    prices = ["--price-input", "1", "--price-output", "1", "--workers", "1"]
    with ScriptedServer(scripts) as server:
        args = batch_args(server, issues, out, "--repo", str(buggy_repo), *prices)
        stopped = run_cli([*args, "--max-total-cost", "0.006"], cli_env)
        resumed = run_cli([*args, "--max-total-cost", "0.02"], cli_env)
    assert stopped.returncode == 1, stopped.stderr  # instances left: the budget stopped it
    assert "stopped with 1 instance(s) not run: reached the cost budget of the batch " in (
        stopped.stderr
    )
    assert "issue-0: submitted (patch, exit 0, 4 steps, 4,000 tokens, $0.0040" in stopped.stderr
    first = read_json(out / "issue-1" / "result.json")  # cut short at $0.006 in all
    assert first["status"] == "cost_limit" and "--max-total-cost $0.0060" in first["reason"]
    assert first["cost_usd"] == pytest.approx(0.002)
    assert resumed.returncode == 0, resumed.stderr
    summary = read_json(out / "summary.json")
    assert summary["cost_usd"] == pytest.approx(0.010) and summary["pending"] == 0
    assert summary["budget"] == {"max_total_cost": 0.02, "max_batch_tokens": None, "stopped": None}
    assert summary["tokens"]["total_tokens"] == 10_000
    assert sorted(p["instance_id"] for p in read_preds(out)) == ["issue-0", "issue-1", "issue-2"]


# -- --attempts -------------------------------------------------------------------------

REPRO = [
    cwm("create", 'test_issue.py\nprint("Issue reproduced")\n', "A script."),
    cwm("submit", "test_issue.py"),
    "<think>\nDone.\n</think>\nThe script.",
]
SMALL = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}


def rollouts(body: dict) -> dict | None:
    """Fix rollouts follow STEPS, reproduction rollouts REPRO; 110 tokens a reply."""
    steps = REPRO if "Issue reproduced" in body["messages"][1]["content"] else STEPS
    said = sum(m["role"] == "assistant" for m in body["messages"])
    return {"content": steps[said], "usage": SMALL} if said < len(steps) else None


def test_a_scaled_run_costs_every_rollout_and_its_budget_covers_them_all(
    buggy_repo, cli_env, tmp_path
):
    prices = ["--price-input", "10", "--price-output", "20", "--test-cmd", ""]
    scaled = ["--attempts", "2", "--repro-tests", "1", *prices]
    with ScriptedServer(rollouts) as server:
        result = run_cli(run_args(server, buggy_repo, *scaled, "--json"), cli_env)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    reply = (100 * 10 + 10 * 20) / 1e6
    selection = read_json(Path(doc["selection_file"]))
    assert [c["cost_usd"] for c in selection["rollouts"]] == pytest.approx([4 * reply] * 2)
    assert [t["cost_usd"] for t in selection["reproduction_tests"]] == pytest.approx(
        [3 * reply] * 2
    )
    assert selection["cost_usd"] == doc["cost_usd"] == pytest.approx(14 * reply)
    assert "run ended: submitted (exit 0)" in result.stderr
    assert "· 2 attempts · 2 reproduction rollouts · 1,540 tokens · $0.0168 ·" in result.stderr
    # One budget for all of it: one at a time, the first attempt spends it in two replies
    # and every other rollout ends before its first request.
    budget = [*scaled, "--workers", "1", "--max-total-tokens", "200"]
    with ScriptedServer(rollouts) as server:
        stopped = run_cli(run_args(server, buggy_repo, *budget, "--json"), cli_env)
        asked = len(server.requests)
    assert stopped.returncode == 1, stopped.stderr
    selection = json.loads(stopped.stdout)["selection"]
    assert asked == 2
    assert [c["status"] for c in selection["rollouts"]] == ["token_limit"] * 2
    assert [c["steps"] for c in selection["rollouts"]] == [2, 0]
    assert [t["status"] for t in selection["reproduction_tests"]] == ["token_limit"] * 2
    assert "reached the token budget of all attempts together" in selection["rollouts"][1]["reason"]


# -- select -----------------------------------------------------------------------------


def test_select_records_what_its_verifier_cost(tmp_path, cli_env):
    world = setup(tmp_path)
    p = world["patches"]
    preds = write_jsonl(
        tmp_path / "p.jsonl", [prediction("calc-1", p["wrong"]), prediction("calc-1", p["right"])]
    )
    config = tmp_path / "config.toml"  # the verifier's price, by its name
    config.write_text('[prices."judge"]\ninput = 3.0\noutput = 5.0\n')
    usage = {"prompt_tokens": 1000, "completion_tokens": 2, "total_tokens": 1002}
    with ScriptedServer(lambda body: {**judge(body), "usage": usage}) as server:
        args = [
            "select",
            str(preds),
            "-o",
            str(tmp_path / "sel"),
            "--dataset",
            str(world["records"]),
        ]
        args += ["--repos-dir", str(world["repos"]), "--stages", "static,group,reward"]
        args += ["--verifier-model", "judge", "--verifier-base-url", server.base_url]
        args += ["--verifier-cache", str(tmp_path / "cache"), "--config", str(config)]
        result = run_cli(args, cli_env)
    assert result.returncode == 0, result.stderr
    (record,) = read_jsonl(tmp_path / "sel" / "selection.jsonl")
    cost = 2 * (1000 * 3 + 2 * 5) / 1e6
    assert record["stages"]["reward"]["cost"]["usd"] == pytest.approx(cost)
    assert record["cost"]["usd"] == pytest.approx(cost)
    assert read_json(tmp_path / "sel" / "summary.json")["cost"]["usd"] == pytest.approx(cost)
    assert "the verifier cost $0.0060" in result.stderr


def test_config_show_says_which_price_applies_and_lists_the_table(cli_env, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[prices."m"]\ninput = 2.0\noutput = 8.0\n[prices."n"]\ninput = 1.0\n')
    env = {**cli_env, "CWM_AGENT_CONFIG": str(config), "CWM_AGENT_MODEL": "m"}
    shown = run_cli(["config", "show"], env)
    assert shown.returncode == 0, shown.stderr
    assert re.search(
        rf"price_input +2\.0 +file {re.escape(str(config))} \[prices\.\"m\"\]", shown.stdout
    )
    assert "price of n: input 1 (USD per million tokens)" in shown.stdout
    doc = json.loads(run_cli(["config", "show", "--json"], env).stdout)
    assert doc["prices"] == {"m": {"input": 2.0, "output": 8.0}, "n": {"input": 1.0}}
