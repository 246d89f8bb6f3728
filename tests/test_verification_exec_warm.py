"""The warm runtime: its verdicts equal a fresh runtime's per candidate, on candidates
built to be nasty (deleting files, littering untracked and ignored ones, changing modes,
leaving a process behind, editing .git), in the local sandbox and in a container; a reset
it cannot verify falls back to a fresh runtime and says so."""

from __future__ import annotations

import pytest
from batch_support import SWEBENCH_IMAGE, needs
from exec_support import (
    FIX,
    DockerWorkspace,
    LocalWorkspace,
    group,
    make_calc_repo,
    nasty_module,
    patch_for,
    repro_script,
    rows,
)

from cwm_agent.verification.execute import ExecConfig, execute
from cwm_agent.verification.records import ReproScript
from cwm_agent.verification.warm import Warm

KINDS = ["deletes", "litters", "modes", "lingers", "edits-git"]
TESTBED = "source /opt/miniconda3/bin/activate testbed"
SENTINEL = "tests.test_env::test_clean_tree"
# What each candidate deserves (a fresh runtime says so): its own mess fails its sentinel;
# the one that deleted calc/ makes its own reproduction script crash too.
DESERVED = {kind: ("ran", 1, 2, 1, 1, (SENTINEL,)) for kind in KINDS}
DESERVED["deletes"] = ("ran", 1, 2, 0, 1, (SENTINEL,))
DESERVED["good"] = ("ran", 2, 2, 1, 1, ())


@pytest.fixture(autouse=True)
def quick_pytest(monkeypatch):
    """The runtimes' pytest without this venv's plugins (they cost seconds a run here)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


def nasty_groups(repo):
    groups = [group(k, patch_for(repo, {"calc/ops.py": nasty_module(k)})) for k in KINDS]
    return [*groups, group("good", patch_for(repo, {"calc/ops.py": FIX}))]


def both_ways(workspace, groups, python="python3"):
    scripts = [repro_script()]
    config = ExecConfig(early_stop=False, python=python)
    warm = execute(workspace, groups, scripts, config, lambda text: None)
    fresh_config = ExecConfig(early_stop=False, python=python, warm=False)
    fresh = execute(workspace, groups, scripts, fresh_config, lambda text: None)
    return warm, fresh


def check_nasty(warm, fresh):
    assert rows(warm) == rows(fresh)
    assert rows(fresh) == DESERVED
    assert warm.reset == "verified", warm.reset
    assert (warm.runtimes, fresh.runtimes) == (1, 1 + len(KINDS) + 1)
    assert warm.base_passing == (SENTINEL, "tests.test_ops::test_sub")
    assert warm.tests == ("tests/test_ops.py", "tests/test_env.py")


def test_warm_verdicts_equal_fresh_ones_in_the_sandbox(tmp_path):
    import sys

    repo = make_calc_repo(tmp_path / "calc")
    warm, fresh = both_ways(LocalWorkspace(repo), nasty_groups(repo), sys.executable)
    check_nasty(warm, fresh)
    assert warm.cost.test_runs == fresh.cost.test_runs == 2 * (1 + len(KINDS) + 1)


@pytest.fixture(scope="module")
def engine():
    from cwm_agent.errors import RuntimeFailure
    from cwm_agent.runtimes.docker_engine import connect

    try:
        client = connect()
        client.images.get(SWEBENCH_IMAGE)
    except (RuntimeFailure, Exception) as exc:  # noqa: BLE001 - no engine or no image
        needs(f"a Docker engine with {SWEBENCH_IMAGE} ({exc})")
    yield client
    client.close()


def test_warm_verdicts_equal_fresh_ones_in_a_container(engine, tmp_path):
    repo = make_calc_repo(tmp_path / "calc")
    workspace = DockerWorkspace(SWEBENCH_IMAGE, repo, shell_init=TESTBED)
    warm, fresh = both_ways(workspace, nasty_groups(repo))
    check_nasty(warm, fresh)


def test_a_reset_that_cannot_be_verified_opens_a_fresh_runtime(tmp_path):
    """A process that drops the run's mark (env -i) survives the kill: the fingerprint
    sees it, the next candidate gets a fresh runtime, and the report says why."""
    import sys

    repo = make_calc_repo(tmp_path / "calc")
    escape = FIX + (
        "import subprocess\n"
        "subprocess.Popen(['env', '-i', '/bin/sleep', '600'], start_new_session=True)\n"
    )
    groups = [group("escapes", patch_for(repo, {"calc/ops.py": escape})),
              group("good", patch_for(repo, {"calc/ops.py": FIX}))]  # fmt: skip
    warm, fresh = both_ways(LocalWorkspace(repo), groups, sys.executable)
    assert rows(warm) == rows(fresh)
    assert warm.runtimes == 2
    assert "a fresh runtime" in warm.reset and "process(es) left running" in warm.reset
    assert "sleep 600" in warm.reset


def test_the_reset_removes_bytecode_written_after_the_snapshot(tmp_path):
    """A .pyc of a candidate's module, for a source of the same size restored within the
    same second, would be taken for the base's: bytecode newer than the snapshot goes."""
    repo = make_calc_repo(tmp_path / "calc")
    workspace = LocalWorkspace(repo)
    warm = Warm(workspace.open)
    try:
        warm.run("mkdir -p calc/__pycache__ && echo stale > calc/__pycache__/ops.cpython.pyc", 30)
        warm.reset()
        listed = warm.run("ls calc/__pycache__ 2>/dev/null | wc -l", 30).output.strip()
        assert listed == "0"
        assert warm.stats.verified == 1 and warm.stats.fallbacks == []
    finally:
        warm.close()


def test_a_big_file_is_not_copied_into_the_snapshot_and_a_change_to_it_is_seen(tmp_path):
    """A 17 MiB ignored file (a dataset, a build product) counts by size and time: the
    snapshot does not double it on disk, and a candidate that changes it costs a fresh
    runtime instead of a reset that cannot put it back."""
    repo = make_calc_repo(tmp_path / "calc")
    (repo / "data.log").write_bytes(b"\0" * (17 << 20))  # *.log is ignored
    warm = Warm(LocalWorkspace(repo).open)
    try:
        stored = warm.run("du -sk .git/cwm-warm-*/git/objects | cut -f1", 30).output
        assert int(stored) < 2048  # KiB: the file is not in the snapshot
        warm.run("echo more >> data.log", 30)
        warm.reset()
        warm.start()
        assert warm.stats.opened == 2 and "paths or modes" in warm.stats.fallbacks[0]
        warm.run("rm calc/data.txt", 30)  # and the fresh runtime is snapshotted again
        warm.reset()
        assert warm.run("cat calc/data.txt", 30).output == "42\n"
        assert warm.stats.verified == 1
    finally:
        warm.close()


# The record's install, as some of SWE-bench's eval scripts run it (no index, no wheel
# package here: setuptools' develop), and a script that asks whether the project is
# installed.
INSTALL = "python setup.py -q develop"
PACKAGED = (  # a new setup.py: a build input
    "diff --git a/setup.py b/setup.py\nnew file mode 100644\n--- /dev/null\n"
    "+++ b/setup.py\n@@ -0,0 +1,3 @@\n+from setuptools import setup\n+\n"
    '+setup(name="calc", version="1.0", packages=["calc"])\n'
)
INSTALLED = ReproScript(
    "installed",
    "from importlib.metadata import PackageNotFoundError, version\n"
    "try:\n    version('calc')\n    print('Issue resolved')\n"
    "except PackageNotFoundError:\n    print('Issue reproduced')\n",
)


def install_record(command: str = "python -m pytest -q -p no:cacheprovider -rA") -> dict:
    return {"test_command": {"kind": "pytest", "command": command, "install": INSTALL}}


def test_an_install_runs_on_its_own_and_costs_a_fresh_runtime(engine, tmp_path):
    """A group touching a build input runs the record's install, which writes into the
    environment's site-packages (outside the repository, out of the reset's reach). The
    next group must not see it (**was**: the warm runtime was reset "verified", the next
    group found the project installed, and its verdict differed from a fresh runtime's)."""
    repo = make_calc_repo(tmp_path / "calc")
    packaged = patch_for(repo, {"calc/ops.py": FIX}) + PACKAGED
    groups = [group("packaged", packaged), group("good", patch_for(repo, {"calc/ops.py": FIX}))]
    workspace = DockerWorkspace(SWEBENCH_IMAGE, repo, install_record(), shell_init=TESTBED)
    scripts = [INSTALLED]
    warm = execute(workspace, groups, scripts, ExecConfig(early_stop=False), lambda t: None)
    fresh = execute(workspace, groups, scripts, ExecConfig(early_stop=False, warm=False),
                    lambda t: None)  # fmt: skip
    assert rows(warm) == rows(fresh)
    assert rows(fresh)["good"][3] == 0 and rows(fresh)["packaged"][3] == 1
    assert warm.reset == "a fresh runtime: the record's install ran"
    assert warm.runtimes == 2
    order = [(r["group"], r["check"]) for r in warm.runs if r["group"] == "packaged"]
    assert order[:3] == [("packaged", "apply"), ("packaged", "install"), ("packaged", "existing")]
    assert warm.cost.test_runs == fresh.cost.test_runs == 3 * 2  # installs are not test runs


def test_the_scripts_see_the_built_code_when_no_test_counts(engine, tmp_path):
    """The install is a step of its own: it runs even when no existing test counts (a
    test command failing on the base), and the reproduction scripts see what it built
    (**was**: it ran inside the test run only, so here never)."""
    repo = make_calc_repo(tmp_path / "calc")
    packaged = patch_for(repo, {"calc/ops.py": FIX}) + PACKAGED
    record = install_record("python -m pytest --no-such-option")
    workspace = DockerWorkspace(SWEBENCH_IMAGE, repo, record, shell_init=TESTBED)
    report = execute(workspace, [group("packaged", packaged)], [INSTALLED], ExecConfig(),
                     lambda t: None)  # fmt: skip
    assert report.base_passing == ()
    assert rows(report)["packaged"] == ("ran", 0, 0, 1, 1, ())


class FlakyReset:
    """A real runtime whose first reset cannot be run (the way a container's exec fails
    when the engine hiccups): it raises what that box raises, not a CwmError."""

    def __init__(self, runtime):
        self.runtime, self.root, self.failed = runtime, runtime.root, False

    def run(self, command, timeout):
        if "__w_reset" in command and not self.failed:
            self.failed = True
            raise OSError("the exec stream broke")
        return self.runtime.run(command, timeout)

    def read_file(self, path):
        return self.runtime.read_file(path)

    def write_file(self, path, data):
        self.runtime.write_file(path, data)

    def close(self):
        self.runtime.close()


def test_a_reset_that_raises_leaves_no_dirty_tree(tmp_path):
    """Whatever the reset raises, the next candidate never runs on the tree the last one
    left (**was**: the runtime was marked clean before the reset, which raised past its
    CwmError handler; the caller took the candidate for an error, and the next one ran on
    the dirty tree)."""
    repo = make_calc_repo(tmp_path / "calc")
    workspace = LocalWorkspace(repo)
    warm = Warm(lambda label: FlakyReset(workspace.open(label)))

    def use():  # as evaluate grades a candidate: what the runtime raises is its error
        try:
            return warm.run("cat calc/data.txt", 30).output
        except OSError as exc:
            return f"error: {exc}"

    try:
        warm.run("echo dirty > calc/data.txt", 30)
        warm.reset()
        assert [use(), use()] == ["42\n", "42\n"]
        assert warm.stats.opened == 2
        assert warm.stats.fallbacks == [
            "a fresh runtime: the reset failed (OSError: the exec stream broke)"
        ]
    finally:
        warm.close()
