"""The execution stage end to end on real runtimes: what counts (tests passing on the
base, scripts reproducing there), early stop, budgets, patches that do not apply, a test
command that cannot run on the base (said loudly), and a SWE-bench record's own test
command and log parser in its image."""

from __future__ import annotations

import sys

import pytest
from batch_support import SWEBENCH_IMAGE, needs
from batch_support import swebench_records as sr
from conftest import git
from exec_support import (
    FIX,
    DockerWorkspace,
    LocalWorkspace,
    group,
    make_calc_repo,
    patch_for,
    repro_script,
    rows,
)

from cwm_agent.verification.execute import ExecConfig, execute
from cwm_agent.verification.records import ReproScript

SUB = "tests.test_ops::test_sub"
SENTINEL = "tests.test_env::test_clean_tree"
BREAKS_SUB = FIX.replace("return a - b", "return b - a")  # fixes add, breaks sub
OTHER_FIX = FIX.replace("return a + b", "return b + a")


@pytest.fixture(autouse=True)
def quick_pytest(monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture
def repo(tmp_path):
    return make_calc_repo(tmp_path / "calc")


def run_stage(repo, groups, scripts=(), notes=None, **config):
    config.setdefault("python", sys.executable)
    say = notes.append if notes is not None else (lambda text: None)
    return execute(LocalWorkspace(repo), groups, list(scripts), ExecConfig(**config), say)


def test_only_base_passing_tests_and_reproducing_scripts_count(repo):
    noisy = ReproScript("noisy", "print('Other issues')\n")
    groups = [group("breaks-sub", patch_for(repo, {"calc/ops.py": BREAKS_SUB})),
              group("good", patch_for(repo, {"calc/ops.py": FIX}))]  # fmt: skip
    report = run_stage(repo, groups, [repro_script(), noisy], early_stop=False)
    assert report.base_passing == (SENTINEL, SUB)  # test_add fails there: it does not count
    assert report.scripts_counted == ("repro-1",)
    assert rows(report) == {
        "breaks-sub": ("ran", 1, 2, 1, 1, (SUB,)),
        "good": ("ran", 2, 2, 1, 1, ()),
    }
    assert report.test_command.endswith("-m pytest -q -p no:cacheprovider -rA")
    # The base: the tests and both scripts; each group: the tests and the script that counts.
    assert report.cost.test_runs == 3 + 2 * 2
    assert report.cost.runtime_seconds > 0 and report.cost.wall_seconds > 0
    assert report.reset == "verified" and report.runtimes == 1


def test_early_stop_once_a_group_passes_every_check(repo):
    groups = [group("breaks-sub", patch_for(repo, {"calc/ops.py": BREAKS_SUB})),
              group("good", patch_for(repo, {"calc/ops.py": FIX})),
              group("also-good", patch_for(repo, {"calc/ops.py": OTHER_FIX}))]  # fmt: skip
    report = run_stage(repo, groups, [repro_script()])
    assert [v.status for v in report.verdicts.values()] == ["ran", "ran", "not_run"]
    stopped = report.verdicts["also-good"]
    assert stopped.reason.startswith("early stop: good passed all 3 checks")
    assert report.early_stopped
    assert report.cost.test_runs == 2 * 3  # the base and two groups, not the third


def test_budgets_leave_groups_not_run_with_the_reason_said_loudly(repo):
    """**Was**: silent but for each verdict's reason; now a warning, on stderr too."""
    groups = [group(f"g{n}", patch_for(repo, {"calc/ops.py": BREAKS_SUB + "#" * n}))
              for n in range(1, 4)]  # fmt: skip
    notes: list[str] = []
    report = run_stage(repo, groups, [repro_script()], notes=notes, max_test_runs=4)
    assert [v.status for v in report.verdicts.values()] == ["ran", "not_run", "not_run"]
    assert report.verdicts["g2"].reason == "budget: 4 of max_test_runs 4 used, 2 needed"
    assert report.cost.test_runs == 4
    assert report.warnings == [
        "2 of 3 group(s) not run (budget: 4 of max_test_runs 4 used, 2 needed): the tests "
        "could not compare them with the groups that ran (raise --max-test-runs / "
        "--max-seconds to run them)"
    ]
    assert not any("WARNING" in n for n in notes)  # the cascade says it, once
    timed = run_stage(repo, groups[:1], [repro_script()], max_seconds=0.001)
    assert timed.verdicts["g1"].reason == "budget: max_seconds 0.001 reached"


def test_a_patch_that_does_not_apply_is_invalid_and_the_next_group_still_runs(repo):
    stale = patch_for(repo, {"calc/ops.py": FIX}).replace("return a - b", "return a * b", 1)
    groups = [group("stale", stale), group("good", patch_for(repo, {"calc/ops.py": FIX}))]
    report = run_stage(repo, groups, [repro_script()])
    assert report.verdicts["stale"].status == "invalid"
    assert "does not apply" in report.verdicts["stale"].reason
    assert rows(report)["good"] == ("ran", 2, 2, 1, 1, ())
    assert report.reset == "verified"


def test_a_group_changing_no_code_is_pruned_not_credited_with_the_base_results(repo):
    """**Was**: "ran" with every counted test passing (the base's results): without the
    static stage, a tests-only group led the order and its full pass stopped the good one."""
    groups = [group("tests-only", ""), group("good", patch_for(repo, {"calc/ops.py": FIX}))]
    report = run_stage(repo, groups)
    assert rows(report)["tests-only"] == ("invalid", 0, 2, 0, 0, ())
    assert report.verdicts["tests-only"].reason.startswith("changes no code")
    assert rows(report)["good"] == ("ran", 2, 2, 0, 0, ())
    assert report.cost.test_runs == 1 + 1  # none for it: the base's and the good one's


def test_a_test_command_that_fails_on_the_base_is_said_loudly(repo):
    """No pytest for the runtime's python: no existing test can decide, and the report,
    and each verdict say so (the cascade says it on stderr); the scripts still decide."""
    notes: list[str] = []
    groups = [group("good", patch_for(repo, {"calc/ops.py": FIX}))]
    report = run_stage(repo, groups, [repro_script()], notes=notes, test_cmd="false {tests}")
    assert any("passes no test on the base" in w for w in report.warnings)
    assert not any("passes no test" in n for n in notes)  # **was**: a note too: twice
    assert rows(report)["good"] == ("ran", 0, 0, 1, 1, ())


def test_a_given_command_without_placeholder_runs_whole_and_counts_by_exit_status(repo):
    groups = [group("good", patch_for(repo, {"calc/ops.py": FIX}))]
    command = f"{sys.executable} -c 'import calc.ops as o; assert o.sub(5, 3) == 2'"
    report = run_stage(repo, groups, test_cmd=command)
    assert report.tests == ()
    assert report.base_passing == ("(the test command's exit status)",)
    assert rows(report)["good"] == ("ran", 1, 1, 0, 0, ())


def test_nothing_to_run_when_no_check_can_decide(repo):
    report = run_stage(repo, [group("good", patch_for(repo, {"calc/ops.py": FIX}))], test_cmd="")
    assert report.verdicts["good"].status == "not_run"
    assert report.verdicts["good"].reason.startswith("nothing to run")


def test_a_swebench_record_runs_its_own_test_command_and_parser_in_its_image():
    from cwm_agent.errors import RuntimeFailure
    from cwm_agent.runtimes.docker_engine import connect

    try:
        connect().images.get(SWEBENCH_IMAGE)
    except (RuntimeFailure, Exception) as exc:  # noqa: BLE001 - no engine or no image
        needs(f"a Docker engine with {SWEBENCH_IMAGE} ({exc})")
    record = sr.record(1, SWEBENCH_IMAGE)
    script = ReproScript(
        "newest",
        "from vercmp import newest\n"
        "print('Issue resolved' if newest(['1.9.0', '1.10.0']) == '1.10.0' "
        "else 'Issue reproduced')\n",
    )
    groups = [group(kind, sr.text(f"newest.{kind}.patch")) for kind in ("wrong", "gold")]
    again = sr.text("newest.gold.patch").replace("key=Version)", "key=Version )")
    groups.append(group("gold-again", again))
    report = execute(DockerWorkspace(SWEBENCH_IMAGE, record=record), groups, [script],
                     ExecConfig(), lambda text: None)  # fmt: skip
    assert report.test_command == "python -m pytest -rA"
    assert report.tests == ("vercmp/tests.py",)
    assert report.base_passing == tuple(sorted(sr.EXISTING_TESTS))
    assert rows(report)["wrong"] == ("ran", 3, 3, 0, 1, ())
    assert rows(report)["gold"] == ("ran", 3, 3, 1, 1, ())
    assert report.verdicts["gold-again"].status == "not_run"  # early stop
    assert report.reset == "verified" and report.runtimes == 1


def test_a_runtime_that_cannot_open_leaves_every_group_not_run_and_says_why(tmp_path):
    notes: list[str] = []
    missing = LocalWorkspace(tmp_path / "no-such-repo")
    groups = [group("a", "x"), group("b", "y")]
    report = execute(missing, groups, [], ExecConfig(), notes.append)
    assert [v.status for v in report.verdicts.values()] == ["not_run", "not_run"]
    assert report.verdicts["a"].reason.startswith("execution stopped: ")
    assert report.warnings == [report.verdicts["a"].reason]
    assert notes == [] and report.runtimes == 0


def test_a_warm_runtime_that_cannot_start_stops_execution_loudly(tmp_path):
    """A repository that is a git worktree (its .git a file): the warm tree has no room for
    its snapshot or scratch folder. The stage says so and leaves the groups not run
    (**was**: WarmError, not a CwmError, escaped the stage and ended the whole selection)."""
    repo = make_calc_repo(tmp_path / "calc")
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", str(worktree))
    notes: list[str] = []
    groups = [group("good", patch_for(repo, {"calc/ops.py": FIX}))]
    report = run_stage(worktree, groups, [repro_script()], notes=notes)
    assert report.verdicts["good"].status == "not_run"
    assert report.verdicts["good"].reason.startswith("execution stopped: cannot make the scratch")
    assert notes == []


class _NoSwebench:
    """A meta-path finder for which the swebench package is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "swebench" or name.startswith("swebench."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def test_without_the_swebench_package_a_records_parser_falls_back_to_pytest(repo, monkeypatch):
    """A record naming a swebench log parser, and the package (an optional extra) missing:
    its tests run with pytest's JUnit report, said loudly (**was**: ModuleNotFoundError out
    of the stage, and out of the cascade)."""
    for name in [m for m in sys.modules if m == "swebench" or m.startswith("swebench.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoSwebench(), *sys.meta_path])
    facts = {"kind": "swebench", "command": "python -m pytest -rA", "parser": "parse_log_pytest"}
    workspace = LocalWorkspace(repo, record={"test_command": facts})
    notes: list[str] = []
    groups = [group("good", patch_for(repo, {"calc/ops.py": FIX}))]
    config = ExecConfig(python=sys.executable)
    report = execute(workspace, groups, [repro_script()], config, notes.append)
    assert report.warnings[0].startswith("the record's log parser (parse_log_pytest) needs the")
    assert "pip install 'cwm-agent[swebench]'" in report.warnings[0]
    assert report.base_passing == (SENTINEL, SUB)
    assert rows(report)["good"] == ("ran", 2, 2, 1, 1, ())


def test_a_patch_that_applies_only_with_a_3way_merge_runs(tmp_path):
    """A patch made on an older version of the file (its context changed since, two lines
    from the change): `git apply`, `--reject` and `patch --fuzz=5` fail, the harness's
    `--3way` merges it. Static passes it and the execution applies it, as the official
    harness does (**was**: `invalid` at execution, whose apply had no --3way)."""
    from cwm_agent.verification import static
    from cwm_agent.verification.basecode import GitBase

    repo = tmp_path / "mod"
    repo.mkdir()
    lines = [f"x{n} = {n}\n" for n in range(1, 21)]
    (repo / "mod.py").write_text("".join(lines))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "old")
    changed = lines.copy()
    changed[10] = "x11 = 'fixed'\n"
    (repo / "mod.py").write_text("".join(changed))
    patch = git(repo, "diff", "-U10")  # made on the old version
    upstream = lines.copy()
    upstream[8] = "x9 = 'changed upstream'\n"
    (repo / "mod.py").write_text("".join(upstream))
    git(repo, "commit", "-q", "-am", "base")
    base = git(repo, "rev-parse", "HEAD").strip()
    with GitBase(repo, base) as scratch:
        checked = static.check(patch, scratch, "")
    assert checked.passed
    assert dict((c.name, c.reason) for c in checked.checks)["apply"] == (
        "applies with `git apply --verbose --3way`"
    )
    script = ReproScript("fixed", "import mod\nprint('Issue resolved' if mod.x11 == 'fixed' "
                         "else 'Issue reproduced')\n")  # fmt: skip
    report = run_stage(repo, [group("3way", patch)], [script], test_cmd="")
    assert rows(report)["3way"] == ("ran", 0, 0, 1, 1, ())
    applies = [r["command"].split(" /")[0] for r in report.runs if r["check"] == "apply"]
    assert applies == ["git apply --verbose", "git apply --verbose --3way"]
