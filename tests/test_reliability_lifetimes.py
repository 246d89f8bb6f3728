"""A harness killed outright (issue 21 item 9): SIGKILL, the out-of-memory killer.

Nothing of the CLI runs any more, so nothing of its own clean-up can. Without the
sandbox, the agent's shell, its running command and its background jobs used to live
on (nothing tied them to the harness). Now the shell dies with its parent
(PR_SET_PDEATHSIG) and a watchdog process sweeps the rest: the session's process
group, everything carrying its marker, everything working in its copy. What is left on
disk (the temp folder, the trajectory at `running`) is for `cwm-agent cleanup`, which
needs no Docker engine for it and keeps what belongs to runs still going.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import uuid

import pytest
from conftest import cwm, run_cli, snapshot
from test_reliability_signals import record, running, wait_for
from test_reliability_support import left_behind, wait_none_left

from cwm_agent.runtimes.reaper import kill_inside, kill_marked
from cwm_agent.scripted_server import ScriptedServer

WAIT = 60.0
NO_ENGINE = "unix:///nonexistent/docker.sock"


@pytest.fixture
def setup(buggy_repo, cli_env, tmp_path):
    tag = f"RELIABILITY_TAG={uuid.uuid4().hex}"
    temp = tmp_path / "tmp"  # the run's temp folder here: cleanup sees no one else's
    temp.mkdir()
    env = {**cli_env, "RELIABILITY_TAG": tag.split("=")[1], "TMPDIR": str(temp)}
    env["DOCKER_HOST"] = NO_ENGINE
    yield buggy_repo, env, tmp_path, tag, temp
    kill_marked(tag.encode())  # whatever a failure left running
    kill_inside(str(temp))


ESCAPED = "(env -i setsid sleep 1002 &)"  # drops the marker, leaves the group: in the copy


@pytest.mark.parametrize("sandbox", ["none", "auto"])
def test_sigkill_mid_command_leaves_nothing_running_and_cleanup_clears_the_rest(setup, sandbox):
    repo, env, tmp, tag, temp = setup
    before = snapshot(repo)
    traj = tmp / "agent-home" / "runs" / "killed.json"  # the runs folder cleanup looks in
    script = [cwm("bash", f"{record()}; {ESCAPED}"), cwm("bash", "sleep 1001")]
    with ScriptedServer(script) as server:
        args = ["run", str(repo), "--issue", "x", "--base-url", server.base_url, "--model", "m"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "cwm_agent", *args, "--traj", str(traj), "--sandbox", sandbox],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            wait_for(lambda: running(tag, "sleep 1001"), "the long command")
            os.kill(proc.pid, signal.SIGKILL)  # the CLI alone, as the OOM killer does
            assert proc.wait(timeout=WAIT) == -signal.SIGKILL
        finally:
            proc.kill()
    (top,) = glob.glob(str(temp / "cwm-agent-*"))  # left behind: nothing could remove it
    observation = json.loads(traj.read_text())["steps"][0]["observation"]["output"]
    _, shell = observation.split()[:2]
    pgids = (int(shell),) if sandbox == "none" else ()
    assert wait_none_left(pgids, under=top, tag=tag, limit=WAIT) == []
    assert json.loads(traj.read_text())["exit_status"] == "running"

    result = run_cli(["cleanup"], env)
    assert result.returncode == 0, result.stderr
    assert "removed 1 temporary folder(s) of killed local runs" in result.stderr
    assert "marked 1 trajectory(ies) stuck at `running` as killed" in result.stderr
    assert f"containers: not checked (no Docker engine answers at {NO_ENGINE})" in result.stderr
    assert result.stdout == ""
    assert not os.path.exists(top)
    data = json.loads(traj.read_text())
    assert (data["exit_status"], data["exit_code"]) == ("killed", None)
    assert "cwm-agent cleanup" in data["reason"]
    assert snapshot(repo) == before


def gone_owner() -> str:
    """An owner record of this machine whose process no longer runs."""
    from cwm_agent.runtimes.reaper import owner

    return "/".join(owner().split("/")[:3] + ["0"])  # no process started at tick 0 is alive


def test_cleanup_keeps_what_belongs_to_live_runs(tmp_path):
    from cwm_agent.runtimes.leftovers import OWNER_FILE, clear
    from cwm_agent.runtimes.reaper import owner

    folders = {name: tmp_path / f"cwm-agent-{name}" for name in ("mine", "dead", "unknown")}
    for folder in folders.values():
        (folder / "repo").mkdir(parents=True)
    (folders["mine"] / OWNER_FILE).write_text(owner())
    (folders["dead"] / OWNER_FILE).write_text(gone_owner())
    (tmp_path / "cwm-agent-index-x").mkdir()  # a patch check in progress: no owner file
    done = clear(str(tmp_path))
    assert done.removed == [str(folders["dead"])]
    assert done.kept == [str(folders["mine"])]
    assert sorted(done.unknown) == sorted(
        [str(folders["unknown"]), str(tmp_path / "cwm-agent-index-x")]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cwm-agent-index-x", "cwm-agent-mine", "cwm-agent-unknown",
    ]  # fmt: skip


def test_cleanup_reports_the_folders_it_keeps_for_want_of_an_owner(cli_env, tmp_path):
    temp = tmp_path / "tmp"
    (temp / "cwm-agent-unknown").mkdir(parents=True)  # no owner file: kept, and said
    result = run_cli(["cleanup"], {**cli_env, "TMPDIR": str(temp), "DOCKER_HOST": NO_ENGINE})
    assert result.returncode == 0, result.stderr
    assert "removed 0 temporary folder(s) of killed local runs; kept 1 with no owner" in (
        result.stderr
    )
    assert f"  kept, no owner: {temp / 'cwm-agent-unknown'}" in result.stderr
    assert (temp / "cwm-agent-unknown").is_dir()


def test_cleanup_with_a_home_that_is_a_file_is_a_usage_error(cli_env, tmp_path):
    """As `run` says it: not "marked 0 trajectories" and exit 0 over a folder it never read."""
    home = tmp_path / "home-file"
    home.write_text("not a folder\n")
    temp = tmp_path / "tmp"  # whatever happens, not the machine's temp folder
    temp.mkdir()
    env = {**cli_env, "CWM_AGENT_HOME": str(home), "TMPDIR": str(temp), "DOCKER_HOST": NO_ENGINE}
    result = run_cli(["cleanup"], env)
    assert result.returncode == 2, result.stderr
    assert f"{home} is a file, not a folder" in result.stderr and "CWM_AGENT_HOME" in result.stderr
    assert "marked" not in result.stderr and "Traceback" not in result.stderr
    assert "--traj" not in result.stderr  # cleanup has no such option to offer
    assert "removed 0 temporary folder(s)" in result.stderr  # what needs no home still ran


def test_only_trajectories_of_gone_runs_are_marked(tmp_path):
    from cwm_agent.runtimes.reaper import owner
    from cwm_agent.trajectory import mark_killed

    def write(name: str, **fields) -> None:
        doc = {"run_id": name, "steps": [], "exit_status": "running", "exit_code": None, **fields}
        (tmp_path / "sub").mkdir(exist_ok=True)
        (tmp_path / "sub" / f"{name}.json").write_text(json.dumps(doc, separators=(",", ":")))

    write("live", owner=owner())
    write("dead", owner=gone_owner(), started_at=1.0)
    write("old")  # an older version recorded no owner: gone
    write("done", owner=gone_owner(), exit_status="submitted")
    write("elsewhere", owner="another-host/boot/1/2")
    marked, kept = mark_killed(tmp_path)
    assert sorted(p.stem for p in marked) == ["dead", "old"]
    assert sorted(p.stem for p in kept) == ["elsewhere", "live"]
    dead = json.loads((tmp_path / "sub" / "dead.json").read_text())
    assert dead["exit_status"] == "killed" and dead["wall_seconds"] > 0
    done = json.loads((tmp_path / "sub" / "done.json").read_text())
    assert done["exit_status"] == "submitted"


def test_a_killed_harness_takes_its_sessions_along(tmp_path):
    """Below the CLI: a process holding a shell session with a job running, killed."""
    tag = f"RELIABILITY_TAG={uuid.uuid4().hex}"
    code = (
        "import sys, time\n"
        "from cwm_agent.runtimes.shell import ShellSession\n"
        f"s = ShellSession({str(tmp_path)!r})\n"
        "s.run('setsid sleep 1003 & sleep 1004 &', 10)\n"
        "print(s.transport.pgid, flush=True)\n"
        "time.sleep(1000)\n"
    )
    env = {**os.environ, "RELIABILITY_TAG": tag.split("=")[1], "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE)
    try:
        pgid = int(proc.stdout.readline())
        assert len(left_behind((pgid,), tag=tag)) >= 3  # bash and both jobs
        proc.kill()
        proc.wait(timeout=WAIT)
        assert wait_none_left((pgid,), tag=tag, limit=WAIT) == []
    finally:
        proc.kill()
        kill_marked(tag.encode())


def test_a_shell_outlives_the_thread_that_started_it(tmp_path):
    """The parent-death signal follows the thread that started a child: shells are
    started from one thread that lives as long as the process, so a batch worker that
    (re)started a shell and then ended does not take it along."""
    import threading

    from cwm_agent.runtimes.shell import ShellSession

    sessions: list[ShellSession] = []

    def start() -> None:
        sessions.append(ShellSession(str(tmp_path)))

    workers = [threading.Thread(target=start) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    try:
        for session in sessions:
            result = session.run("sleep 0.2; echo alive", 30)
            assert (result.output, result.session_restarted) == ("alive\n", False)
    finally:
        for session in sessions:
            session.close()


def _sweep_as_the_watchdog(pgid: int, started: str, tmp_path) -> None:
    """The watchdog script itself, told of one session, then the harness gone (EOF)."""
    import cwm_agent.runtimes.reaper as reaper

    message = {"watch": "k", "pgid": pgid, "started": started, "mark": "CWM_NO=mark"}
    message["dir"] = str(tmp_path / "no-such-copy")
    script = [sys.executable, "-I", "-S", reaper.__file__]
    subprocess.run(script, input=json.dumps(message) + "\n", text=True, timeout=WAIT, check=True)


@pytest.mark.parametrize("reused", [True, False])
def test_the_watchdog_spares_a_group_id_that_names_another_group_now(tmp_path, reused):
    """A session's shell died long ago and its group id now leads the user's own group
    (started later): the sweep leaves it. The same id with the start time recorded for it
    is the session's group: swept."""
    user = subprocess.Popen(["sleep", "1001"], start_new_session=True)
    try:
        with open(f"/proc/{user.pid}/stat") as stat:
            own = stat.read().rsplit(")", 1)[1].split()[19]  # its start time
        _sweep_as_the_watchdog(user.pid, str(int(own) - 1) if reused else own, tmp_path)
        if reused:
            assert user.poll() is None  # the user's group lives on
        else:
            assert user.wait(timeout=WAIT) == -signal.SIGKILL
    finally:
        user.kill()
        user.wait()


def test_a_dead_shell_is_not_reaped_before_its_group_is_killed(tmp_path):
    """Seeing that the shell died must not free its pid (the group id close() kills)."""
    from cwm_agent.runtimes.shell import PipeTransport, session_env

    transport = PipeTransport(str(tmp_path), session_env())
    try:
        transport.write(b"exit 3\n")
        state = f"/proc/{transport.pid}/stat"
        wait_for(lambda: open(state).read().rsplit(")", 1)[1].split()[0] == "Z", "a zombie")
        assert transport.alive() is False
        assert os.path.exists(state)  # still ours: not reaped by alive()
    finally:
        assert transport.close() == 3


def test_ctrl_c_while_a_shell_starts_leaves_no_shell_behind():
    """Shells start in one spawner thread while the caller waits; a Ctrl-C reaches the
    caller, not the start: the shell that starts all the same is killed before it is
    raised (**was**: left running, registered nowhere, until the process ended)."""
    import threading

    from cwm_agent.runtimes.lifetime import _SPAWNER, start_tied

    value = uuid.uuid4().hex
    tag = f"RELIABILITY_TAG={value}"
    busy, interrupted = threading.Event(), threading.Event()

    def hold_the_spawner() -> None:  # the start queues behind it, its caller waiting
        busy.set()
        interrupted.wait(WAIT)

    def on_sigint(signum, frame):
        interrupted.set()
        raise KeyboardInterrupt

    def ctrl_c() -> None:
        wait_for(lambda: _SPAWNER._jobs.qsize() > 0, "the start to be queued")
        os.kill(os.getpid(), signal.SIGINT)

    holder = threading.Thread(target=_SPAWNER.call, args=(hold_the_spawner,))
    holder.start()
    busy.wait(WAIT)
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        threading.Thread(target=ctrl_c).start()
        with pytest.raises(KeyboardInterrupt):
            start_tied(["sleep", "1003"], env={**os.environ, "RELIABILITY_TAG": value})
        _SPAWNER.call(lambda: None)  # whatever the spawner was doing is done
        assert interrupted.is_set()
        assert not running(tag, "sleep 1003")
    finally:
        signal.signal(signal.SIGINT, previous)
        holder.join(WAIT)
        kill_marked(tag.encode())
