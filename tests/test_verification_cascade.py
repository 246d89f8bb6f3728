"""The cascade, the reward stage against the scripted server, and the choice."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import git

from cwm_agent.errors import RuntimeFailure
from cwm_agent.scripted_server import ScriptedServer
from cwm_agent.settings import ModelSettings, RuntimeSettings
from cwm_agent.verification import choice
from cwm_agent.verification.cascade import Plan, Task, select_instance
from cwm_agent.verification.records import (
    CODE_ONLY,
    Candidate,
    Cost,
    ExecReport,
    ExecVerdict,
    Group,
    Origin,
)
from cwm_agent.verification.reward import RewardModel, VerifierConfig, verifier_settings
from cwm_agent.verification.workspace import CodeSource

BUGGY = "def add(a, b):\n    return a - b\n"
ISSUE = "add() subtracts instead of adding"
NO_EXEC = {"execute": "no executor in this test"}


def _repo(tmp_path: Path) -> tuple[Path, str]:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text(BUGGY)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo, git(repo, "rev-parse", "HEAD").strip()


def _patch(repo: Path, files: dict[str, str]) -> str:
    for path, text in files.items():
        (repo / path).write_text(text)
    git(repo, "add", "-A")
    patch = git(repo, "diff", "--cached")
    git(repo, "reset", "-q", "--hard")
    git(repo, "clean", "-qfd")
    return patch


@pytest.fixture
def patches(tmp_path):
    repo, base = _repo(tmp_path)
    good = _patch(repo, {"calc.py": "def add(a, b):\n    return a + b\n"})
    wrong = _patch(repo, {"calc.py": "def add(a, b):\n    return abs(a - b)\n"})
    forcing = _patch(
        repo,
        {
            "calc.py": "def add(a, b):\n    return a * b\n",
            "conftest.py": "def pytest_runtest_logreport(report):\n    report.outcome = 'passed'\n",
        },
    )
    only_tests = _patch(repo, {"conftest.py": "import pytest\n"})
    return repo, base, {"good": good, "wrong": wrong, "forcing": forcing, "only_tests": only_tests}


def _task(repo, base, patches, names, **kw):
    candidates = tuple(
        Candidate("calc-1", patches[name], Origin("preds.jsonl", line=n, model=name))
        for n, name in enumerate(names, 1)
    )
    return Task("calc-1", ISSUE, candidates, CodeSource(repo, base, RuntimeSettings()), **kw)


def _reward(server: ScriptedServer, tmp_path: Path, api: str = "chat", **kw) -> RewardModel:
    settings = verifier_settings(ModelSettings("judge", server.base_url, api=api, max_retries=0))
    return RewardModel(VerifierConfig(settings, cache_dir=tmp_path / "cache", **kw))


def _yes(p: float) -> dict:
    """A reply whose answer token is YES with probability ``p`` (NO the rest)."""
    return {"logprobs": [{"YES": math.log(p), "NO": math.log(1 - p)}]}


def _no(p_yes: float) -> dict:
    return {"logprobs": [{"NO": math.log(1 - p_yes), "YES": math.log(p_yes)}]}


def test_reward_scores_decide_over_votes_and_the_cache_answers_a_second_run(patches, tmp_path):
    repo, base, p = patches
    task = _task(repo, base, p, ["wrong", "wrong", "good"])
    replies = lambda body: _no(0.2) if "abs(a - b)" in str(body) else _yes(0.9)  # noqa: E731
    with ScriptedServer(replies) as server:
        reward = _reward(server, tmp_path)
        plan = Plan(("static", "group", "reward"), NO_EXEC, reward=reward)
        first = select_instance(task, plan)
        asked = len(server.requests)
        second = select_instance(task, plan)
        assert len(server.requests) == asked == 2  # two groups scored once, then cached
    record = first.record
    assert record["chosen"]["decided_by"] == "reward score"
    assert first.prediction["model_patch"] == p["good"]
    scores = {g["votes"]: g["reward"] for g in record["groups"]}
    assert scores[1]["score"] == pytest.approx(0.9) and scores[1]["source"] == "logprobs"
    assert scores[2]["score"] == pytest.approx(0.2)
    assert record["stages"]["reward"]["cost"]["model_calls"] == 2
    assert second.record["stages"]["reward"]["cached"] == 2
    assert second.record["stages"]["reward"]["cost"]["model_calls"] == 0
    assert second.prediction == first.prediction
    body = server.requests[0].body
    assert body["logprobs"] is True and body["top_logprobs"] == 5 and body["temperature"] == 0
    assert "<proposed_change>" in body["messages"][0]["content"]


def test_the_completions_transport_and_a_server_without_logprobs(patches, tmp_path):
    repo, base, p = patches
    task = _task(repo, base, p, ["wrong", "good"])
    with ScriptedServer([_yes(0.7), {"text": "NO"}]) as server:
        plan = Plan(
            ("static", "group", "reward"),
            NO_EXEC,
            reward=_reward(server, tmp_path, "completions", workers=1),
        )
        record = select_instance(task, plan).record
        prompt = server.requests[0].body["prompt"]
        assert server.requests[0].body["logprobs"] == 5
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    rewards = [g["reward"] for g in record["groups"]]
    assert {r["source"] for r in rewards} == {"logprobs", "answer"}
    assert sorted(r["score"] for r in rewards) == [0.0, pytest.approx(0.7)]


def test_a_verifier_that_fails_is_said_loudly_and_the_instance_is_retried(patches, tmp_path):
    repo, base, p = patches
    task = _task(repo, base, p, ["wrong", "good", "good"])
    error = {"status": 500, "headers": {"x-should-retry": "false"}}
    with ScriptedServer([error, error]) as server:
        plan = Plan(("static", "group", "reward"), NO_EXEC, reward=_reward(server, tmp_path))
        outcome = select_instance(task, plan)
    assert outcome.retry
    assert outcome.record["chosen"]["decided_by"] == "votes"
    assert any(w.startswith("reward: no group could be scored") for w in outcome.warnings)


def test_keep_prunes_the_lower_scored_groups_with_a_reason(patches, tmp_path):
    repo, base, p = patches
    task = _task(repo, base, p, ["wrong", "good"])
    replies = lambda body: _no(0.1) if "abs(a - b)" in str(body) else _yes(0.8)  # noqa: E731
    with ScriptedServer(replies) as server:
        plan = Plan(
            ("static", "group", "reward"), NO_EXEC, keep=1, reward=_reward(server, tmp_path)
        )
        record = select_instance(task, plan).record
    pruned = [g for g in record["groups"] if g["pruned_at"] == "reward"]
    assert len(pruned) == 1 and "below --keep 1" in pruned[0]["reason"]
    assert record["funnel"] == {"candidates": 2, "static": 2, "group": 2, "reward": 1, "chosen": 1}


def test_the_score_cache_tells_transports_and_repositories_apart(patches, tmp_path):
    """**Was**: keyed by model, template, issue and change only: a score asked over chat
    answered a completions run, and a score for one repository another's."""
    _, _, p = patches
    groups = [Group("g1", (Candidate("calc-1", p["good"], Origin("x")),), p["good"])]
    with ScriptedServer(lambda body: _yes(0.9)) as server:
        for api, repo in [("chat", "acme/calc"), ("completions", "acme/calc"),
                          ("chat", "other/calc"), ("chat", "acme/calc")]:  # fmt: skip
            reward = _reward(server, tmp_path, api)
            (score,) = reward.score(ISSUE, groups, repo)
            reward.close()
        asked = [r for r in server.requests if r.method == "POST"]
    assert len(asked) == 3 and score.cached  # the last one is the first one again


def test_groups_the_verifier_could_not_score_are_cut_by_keep_with_that_reason(patches, tmp_path):
    """**Was**: "ranked 2 of 2 by the verifier", for a group the verifier never judged."""
    repo, base, p = patches
    task = _task(repo, base, p, ["wrong", "good"])
    error = {"status": 500, "headers": {"x-should-retry": "false"}}
    replies = lambda body: error if "abs(a - b)" in str(body) else _yes(0.8)  # noqa: E731
    with ScriptedServer(replies) as server:
        plan = Plan(
            ("static", "group", "reward"), NO_EXEC, keep=1, reward=_reward(server, tmp_path)
        )
        outcome = select_instance(task, plan)
    (pruned,) = [g for g in outcome.record["groups"] if g["pruned_at"] == "reward"]
    assert pruned["reason"].startswith("no verifier score (")
    assert pruned["reason"].endswith("ranked 2 of 2, below the scored groups and --keep 1")
    assert outcome.retry  # a resume asks the verifier again


def test_the_execute_stage_gets_code_changes_without_test_infrastructure(patches, tmp_path):
    """A candidate whose conftest.py forces every report to "passed" (and whose code is
    wrong) is judged on its code alone: the executor never sees its conftest.py, the
    test fails, and it is not chosen, though it has the most votes."""
    repo, base, p = patches
    task = _task(repo, base, p, ["forcing", "forcing", "good", "only_tests"])
    seen: list[str] = []

    def run_tests(workspace, groups, scripts, *, note):
        verdicts = {}
        for group in groups:
            seen.append(group.verify_patch)
            runtime = workspace.open(group.key)
            try:
                runtime.write_file("fix.patch", group.verify_patch.encode())
                runtime.run("git apply fix.patch && rm fix.patch", 30)
                check = runtime.run("python3 -c 'import calc; assert calc.add(2, 3) == 5'", 30)
            finally:
                runtime.close()
            passed = int(check.exit_code == 0)
            verdicts[group.key] = ExecVerdict(group.key, "ran", passed, 1)
        return ExecReport(verdicts, tests=("add",), cost=Cost(test_runs=len(groups)))

    plan = Plan(("static", "group", "execute"), {"reward": "no verifier"}, executor=run_tests)
    outcome = select_instance(task, plan)
    assert seen and not any("conftest" in patch for patch in seen)
    assert outcome.prediction["model_patch"] == p["good"]
    record = outcome.record
    assert record["chosen"]["decided_by"] == "tests passed"
    forcing = [c for c in record["candidates"] if c["origin"]["model"] == "forcing"]
    assert all(c["stripped"] == ["conftest.py"] for c in forcing)
    only = next(c for c in record["candidates"] if c["origin"]["model"] == "only_tests")
    assert only["pruned_at"] == "static" and only["reason"].startswith("non_test:")
    assert record["stages"]["execute"]["cost"]["test_runs"] == 2


def test_a_chosen_patch_carrying_test_infrastructure_is_loud_or_emitted_without_it(patches):
    """**Was**: silent: when every candidate of the chosen group adds a conftest.py (here
    one forcing "passed"), the prediction carried what the checks had left out."""
    repo, base, p = patches
    task = _task(repo, base, p, ["forcing", "forcing", "wrong"])
    skipped = {"reward": "no verifier", **NO_EXEC}
    written = select_instance(task, Plan(("static", "group"), skipped))
    assert written.record["chosen"]["decided_by"] == "votes"
    assert written.prediction["model_patch"] == p["forcing"]  # as written, by default
    (loud,) = written.warnings
    assert loud.startswith("the emitted patch carries test infrastructure its verification "
                           "left out (conftest.py)")  # fmt: skip
    assert "--emit code-only" in loud and written.record["warnings"] == [loud]
    code_only = select_instance(task, Plan(("static", "group"), skipped, emit=CODE_ONLY))
    emitted = code_only.prediction["model_patch"]
    assert "conftest" not in emitted and "+    return a * b" in emitted
    assert code_only.warnings == ()
    assert code_only.record["chosen"]["emitted"].endswith("test infrastructure (conftest.py)")


class _Unopenable:
    """A workspace whose runtime cannot open (an image that is not there), counting tries."""

    instance_id, record = "calc-1", {}

    def __init__(self) -> None:
        self.tries = 0

    def open(self, label):
        self.tries += 1
        raise RuntimeFailure("no such image: swebench/calc-1")


def test_a_runtime_that_cannot_open_is_tried_once_per_instance(patches):
    """**Was**: tried for the static stage's base, then again by the execution stage."""
    repo, base, p = patches
    unopenable = _Unopenable()
    code = CodeSource(runtime=RuntimeSettings(), given=unopenable, missing="no clone")
    task = _task(repo, base, p, ["wrong", "good"])
    task = Task(task.instance_id, ISSUE, task.candidates, code)
    executor = lambda ws, groups, scripts, *, note: ws.open("x")  # noqa: E731
    outcome = select_instance(task, Plan(("static", "group", "execute"),
                                         {"reward": "none"}, executor=executor))  # fmt: skip
    assert unopenable.tries == 1
    execute = outcome.record["stages"]["execute"]
    assert execute["why"] == "the runtime did not open: no such image: swebench/calc-1"
    assert any("could not run (the runtime did not open" in w for w in outcome.warnings)


def test_without_base_code_the_apply_check_is_not_checked_and_said(patches):
    repo, base, p = patches
    task = _task(repo, base, p, ["good"])
    no_code = Task(task.instance_id, ISSUE, task.candidates, CodeSource(missing="no clone of x"))
    outcome = select_instance(no_code, Plan(("static", "group")))
    assert outcome.prediction is not None
    assert outcome.warnings[0] == (
        "static: the apply check could not run for 1 of 1 candidate(s) (no clone of x); "
        "they were not pruned by it"
    )


def test_the_choice_order_and_what_decided_it():
    from cwm_agent.verification.records import Group

    def grp(key, votes, patch):
        members = tuple(Candidate("i", patch, Origin("f")) for _ in range(votes))
        return Group(key, members, patch)

    small, large = "+a\n", "+a\n+b\n+c\n"
    groups = [grp("a", 1, large), grp("b", 2, large), grp("c", 2, small)]
    assert choice.decide(choice.rank(groups)).decided_by == "size"
    assert choice.decide(choice.rank(groups)).winner.group.key == "c"
    scored = choice.rank(groups, {"a": 0.9, "b": 0.5, "c": None})
    assert [r.group.key for r in scored] == ["a", "b", "c"]
    verdicts = {"b": ExecVerdict("b", "ran", 3, 3), "a": ExecVerdict("a", "ran", 2, 3)}
    decision = choice.decide(choice.rank(groups, {"a": 0.9}, verdicts))
    assert (decision.winner.group.key, decision.decided_by) == ("b", "tests passed")
    assert decision.reason == "passes 3 of 3 checks; the next best passes 2"
    tie = [grp("x", 1, small), grp("y", 1, small)]
    assert choice.decide(choice.rank(tie)).decided_by == "input order"


def test_an_unexpected_error_in_execution_still_gives_a_choice_and_says_so(patches):
    """An executor that fails in a way nobody expected (a bug): the instance still gets
    its record and a choice by the weaker signals, a loud warning, and the traceback in
    the record (**was**: the error ended the cascade; under --attempts, K paid rollouts
    ended without a selection.json)."""
    repo, base, p = patches
    task = _task(repo, base, p, ["good", "wrong"])

    def broken(workspace, groups, scripts, *, note):
        raise ValueError("a bug in the execution stage")

    plan = Plan(("static", "group", "execute"), {"reward": "no verifier"}, executor=broken)
    outcome = select_instance(task, plan)
    assert outcome.prediction is not None
    assert outcome.record["chosen"]["decided_by"] == "input order"
    (warning,) = outcome.warnings
    assert warning.startswith(
        "execute: could not run (an unexpected error, ValueError: a bug in the execution stage;"
    )
    assert warning.endswith("its signal is missing; the choice fell to input order")
    execute = outcome.record["stages"]["execute"]
    assert execute["ran"] is False and "Traceback" in execute["error"]


def test_a_choice_by_tests_says_when_only_some_groups_ran():
    """The runner-up not run for a budget: **was** "tests passed" as if it had been
    compared; the early stop (lossless) keeps the plain label."""
    from cwm_agent.verification.records import Group

    groups = [Group(k, (Candidate("i", "+a\n", Origin("f")),), "+a\n") for k in "ab"]
    ran = ExecVerdict("a", "ran", 0, 5)
    budget = ExecVerdict("b", "not_run", reason="budget: max_seconds 60 reached")
    decision = choice.decide(choice.rank(groups, verdicts={"a": ran, "b": budget}))
    assert decision.decided_by == "tests passed, only some groups ran"
    assert decision.reason == (
        "passes 0 of 5 checks; the next best was not run (budget: max_seconds 60 reached)"
    )
    stopped = ExecVerdict("b", "not_run", reason="early stop: a passed all 5 checks")
    leader = ExecVerdict("a", "ran", 5, 5)
    lossless = choice.decide(choice.rank(groups, verdicts={"a": leader, "b": stopped}))
    assert lossless.decided_by == "tests passed"
