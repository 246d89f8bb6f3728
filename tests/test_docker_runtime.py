"""DockerRuntime against a real engine (`eval "$(sudo scripts/provision-docker.sh)"` gives one).

Without a reachable engine (or without the test images) these tests skip, saying how to
enable them; under CWM_REQUIRE_DOCKER=1 (CI) they fail instead.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
from conftest import git, run_cli, snapshot

from cwm_agent.errors import RuntimeFailure, ToolError
from cwm_agent.patches import validate_patch

IMAGE = os.environ.get("CWM_TEST_IMAGE", "cwm-agent-test:latest")
NOPY_IMAGE = os.environ.get("CWM_TEST_NOPY_IMAGE", "cwm-agent-test-nopy:latest")
HOW = 'start one with `eval "$(sudo scripts/provision-docker.sh)"` (Debian) or set DOCKER_HOST'


def _unavailable(why: str) -> None:
    message = f"Docker tests need {why}: {HOW}"
    if os.environ.get("CWM_REQUIRE_DOCKER") == "1":
        pytest.fail(f"CWM_REQUIRE_DOCKER=1 but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("docker") if os.environ.get("CWM_REQUIRE_DOCKER") != "1" else None
    from cwm_agent.runtimes.docker import connect

    try:
        engine = connect()
    except RuntimeFailure as exc:
        _unavailable(f"a Docker engine ({exc.message})")
    for image in (IMAGE, NOPY_IMAGE):
        try:
            engine.images.get(image)
        except Exception:  # noqa: BLE001 - ImageNotFound, or anything else: not usable
            _unavailable(f"the image {image}")
    yield engine
    engine.close()


def make(repo, client, image=IMAGE, **options):
    from cwm_agent.runtimes.docker import DockerRuntime

    options = {
        "run_id": f"test-{secrets.token_hex(4)}",
        "memory": "512m",
        "pids_limit": 256,
        **options,
    }
    return DockerRuntime.create(repo, image=image, client=client, **options)


@pytest.fixture
def rt(client, buggy_repo):
    runtime = make(buggy_repo, client)
    yield runtime
    runtime.close()


def processes(container) -> list[str]:
    """Command lines of the container's processes (the images have no `ps`)."""
    script = 'for p in /proc/[0-9]*; do tr "\\0" " " <"$p/cmdline"; echo; done 2>/dev/null'
    return container.exec_run(["bash", "-c", script]).output.decode().split("\n")


def test_importing_does_not_import_the_sdk():
    code = "import sys, cwm_agent.runtimes.docker; print('docker' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout == "False\n" and out.stderr == ""


def test_no_engine_is_a_runtime_failure_with_a_hint(monkeypatch):
    pytest.importorskip("docker")
    from cwm_agent.runtimes.docker import connect

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(RuntimeFailure) as info:
        connect()
    assert info.value.exit_code == 4
    assert "/nonexistent/docker.sock" in info.value.message
    assert "provision-docker.sh" in info.value.hint


def test_missing_image_is_exit_4_and_leaves_nothing(client, buggy_repo):
    from cwm_agent.runtimes.docker_engine import LABEL

    with pytest.raises(RuntimeFailure) as info:
        make(buggy_repo, client, image="cwm-agent-test:no-such-tag", run_id="test-missing")
    assert info.value.exit_code == 4
    assert "docker pull cwm-agent-test:no-such-tag" in info.value.hint
    assert not client.containers.list(all=True, filters={"label": f"{LABEL}=test-missing"})


def test_container_is_isolated_limited_and_labelled(client, rt):
    attrs = client.containers.get(rt.container.id).attrs
    assert attrs["Config"]["Labels"]["cwm-agent.run"].startswith("test-")
    assert attrs["HostConfig"]["NetworkMode"] == "none"
    assert attrs["HostConfig"]["Memory"] == 512 << 20
    assert attrs["HostConfig"]["PidsLimit"] == 256
    interfaces = rt.run("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '", 10).output
    assert interfaces.split() == ["lo"]


def test_session_persists_cwd_and_env_and_merges_output(rt):
    first = rt.run("cd mathlib && export GREETING=hi; echo out; echo err >&2; false", 10)
    assert first.output == "out\nerr\n" and first.exit_code == 1
    second = rt.run("pwd; echo $GREETING", 10)
    assert second.output == "/repo/mathlib\nhi\n" and second.exit_code == 0
    assert rt.run("cat; echo stdin-closed", 5).output == "stdin-closed\n"  # EOF, no hang
    gone = rt.run("exit 3", 10)
    assert gone.exit_code == 3 and gone.session_restarted
    assert rt.run("pwd", 10).output == "/repo\n"


def test_startup_runs_in_every_new_shell(client, buggy_repo):
    startup = "export STARTED=$((STARTED + 1)); echo noise; cat; false"
    with make(buggy_repo, client, shell_init=startup) as runtime:
        assert runtime.run("echo $STARTED", 10).output == "1\n"
        assert runtime.run("exit 1", 10).session_restarted
        assert runtime.run("echo $STARTED; pwd", 10).output == "1\n/repo\n"
    with make(buggy_repo, client, shell_init="syntax error (") as runtime:  # no hang
        assert runtime.run("echo ok", 10).output == "ok\n"


def test_timeout_kills_the_command_inside_the_container(rt):
    start = time.monotonic()
    result = rt.run("sleep 301 & sleep 302; echo never", 1)
    assert result.timed_out and result.exit_code is None and result.session_restarted
    assert time.monotonic() - start < 5
    assert not [p for p in processes(rt.container) if p.startswith("sleep 30")]
    assert rt.run("pwd", 10).output == "/repo\n"  # restarted in the repository root


def test_output_flood_is_bounded(rt):
    result = rt.run("yes 0123456789 | head -c 30000000; echo; echo end", 60)
    assert result.exit_code == 0 and result.cut_bytes > 29_000_000
    assert len(result.output) < 140_000 and result.output.endswith("end\n")
    assert rt.run("echo next", 10).output == "next\n"


def test_fork_bomb_is_contained_by_the_pids_limit(client, buggy_repo):
    with make(buggy_repo, client, pids_limit=64) as runtime:
        # At the timeout no pid is left for a `kill` exec: the builtin kill must do.
        result = runtime.run("bomb() { bomb | bomb; }; bomb", 3)
        assert result.timed_out and result.session_restarted
        assert runtime.run("echo alive", 20).output == "alive\n"
        assert not [p for p in processes(runtime.container) if "bash" in p and "-c" not in p][2:]


def test_memory_hog_is_contained_by_the_memory_limit(client, buggy_repo):
    with make(buggy_repo, client, memory="128m") as runtime:
        result = runtime.run("python3 -c 'b = bytearray(1 << 30); print(len(b))'", 30)
        assert result.exit_code != 0 and str(1 << 30) not in result.output
        assert runtime.run("echo alive", 10).output == "alive\n"


def test_edit_create_diff_and_the_patch_applies_on_the_host(rt, buggy_repo, tmp_path):
    before = snapshot(buggy_repo)
    assert rt.exists("mathlib/ops.py") and not rt.exists("nope.py")
    text = rt.read_file("/repo/mathlib/ops.py")
    assert b"return a - b" in text
    rt.write_file("mathlib/ops.py", text.replace(b"a - b", b"a + b"))
    rt.write_file("mathlib/extra.py", b"X = '\xc3\xa9'\n")  # new file, non-ASCII
    assert rt.read_file("mathlib/extra.py") == b"X = '\xc3\xa9'\n"
    rt.run("git diff > fix.patch && echo junk > notes.log", 10)  # *.log is ignored
    diff = rt.diff(exclude=("fix.patch",))
    assert "+    return a + b" in diff and "b/mathlib/extra.py" in diff
    assert "fix.patch" not in diff and "notes.log" not in diff
    assert "fix.patch" in rt.diff()
    patch = validate_patch(diff, rt.base_dir, rt.base)
    assert snapshot(buggy_repo) == before  # the user's repository was only read
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(buggy_repo), str(clone))
    subprocess.run(["git", "apply", "-"], cwd=clone, input=patch, text=True, check=True)
    assert "return a + b" in (clone / "mathlib/ops.py").read_text()


def test_file_errors_and_paths_outside_are_refused(rt):
    rt.run("ln -s /etc etc-link", 10)
    for path in ("../etc/passwd", "/etc/passwd", "etc-link/passwd"):
        with pytest.raises(ToolError, match="outside the repository"):
            rt.read_file(path)
        with pytest.raises(ToolError, match="outside the repository"):
            rt.write_file(path, b"x")
    with pytest.raises(ToolError, match="outside the repository"):
        rt.exists("/etc")
    with pytest.raises(ToolError, match="No such file"):
        rt.read_file("missing.py")
    with pytest.raises(ToolError, match="parent directory does not exist"):
        rt.write_file("no/such/dir.py", b"x")
    with pytest.raises(ToolError, match="directory"):
        rt.read_file("mathlib")


def test_a_read_limit_is_told_by_the_files_size(rt):
    from cwm_agent.types import FileTooLarge

    rt.run("truncate -s 1G huge.bin && printf 12345 > five.txt", 10)
    assert rt.read_file("five.txt", 5) == b"12345"
    with pytest.raises(FileTooLarge) as refused:
        rt.read_file("five.txt", 4)
    assert (refused.value.size, refused.value.limit) == (5, 4)
    with pytest.raises(FileTooLarge, match="1073741824 bytes"):
        rt.read_file("huge.bin", 1 << 20)  # told by its size: nothing of it sent


def test_works_in_an_image_without_python(client, buggy_repo):
    with make(buggy_repo, client, image=NOPY_IMAGE) as runtime:
        probe = runtime.run("command -v python3 python perl-not-needed; echo $?", 10)
        assert "python" not in probe.output
        data = runtime.read_file("mathlib/ops.py").replace(b"a - b", b"a + b")
        runtime.write_file("mathlib/ops.py", data)
        runtime.write_file("NEW.md", b"new\n")
        diff = runtime.diff()
        assert "+    return a + b" in diff and "b/NEW.md" in diff
        validate_patch(diff, runtime.base_dir, runtime.base)
        assert runtime.run("sleep 300", 1).timed_out
        assert not [p for p in processes(runtime.container) if p.startswith("sleep 300")]


def test_repo_already_in_the_image(client, buggy_repo):
    """SWE-bench style: the repository (with uncommitted state) is baked into the image."""
    setup = "cd /testbed && echo dirty >> README && chown -R 0:0 ."
    tag, _ = image_with_testbed(client, buggy_repo, "inimage", setup, ())
    try:
        with make(None, client, image=tag, workdir="/testbed", repo_in_image=True) as runtime:
            assert runtime.root == "/testbed"
            assert runtime.run("git log --format=%s -1", 10).output == "cwm-agent baseline\n"
            assert runtime.diff() == ""  # the image's own changes are part of the base
            runtime.write_file(
                "mathlib/ops.py", runtime.read_file("mathlib/ops.py").replace(b"a - b", b"a + b")
            )
            patch = validate_patch(runtime.diff(), runtime.base_dir, runtime.base)
            assert patch.startswith("diff --git a/mathlib/ops.py b/mathlib/ops.py")
            assert Path(runtime.base_dir, ".git").is_dir()
    finally:
        client.images.remove(tag, force=True)


def abandoned(repo: Path, run_id: str) -> str:
    """A container whose run was killed (SIGKILL: no clean-up): its id."""
    code = (
        "import sys; from cwm_agent.runtimes.docker import DockerRuntime; "
        f"r = DockerRuntime.create(sys.argv[1], image={IMAGE!r}, run_id={run_id!r}); "
        "print(r.container.id, flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(repo)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    container_id = proc.stdout.readline().decode().strip()  # type: ignore[union-attr]
    proc.kill()
    proc.wait()
    return container_id


def test_close_removes_the_container_and_cleanup_only_takes_those_of_gone_runs(client, buggy_repo):
    from cwm_agent.runtimes.docker_engine import LABEL, cleanup_containers

    runtime = make(buggy_repo, client, run_id="test-close")
    container_id = runtime.container.id
    runtime.close()
    runtime.close()  # idempotent
    assert not client.containers.list(all=True, filters={"id": container_id})

    stranger = client.containers.run(
        IMAGE, ["sleep", "infinity"], detach=True, network_disabled=True
    )
    alive = make(buggy_repo, client, run_id="test-cleanup")
    left = abandoned(buggy_repo, "test-cleanup")
    try:
        done = cleanup_containers(client, run_id="test-cleanup")
        assert done.removed == [left] and done.alive == [alive.container.id]
        assert client.containers.get(stranger.id).status == "running"
        assert alive.run("echo still here", 10).output == "still here\n"
        assert cleanup_containers(client, run_id="test-cleanup", everything=True).removed == [
            alive.container.id
        ]
        assert not client.containers.list(all=True, filters={"label": f"{LABEL}=test-cleanup"})
    finally:
        stranger.remove(force=True)
        alive.close()  # its container is already gone: still fine


def test_agent_fixes_the_bug_in_a_container_and_the_patch_applies_on_the_host(
    client, buggy_repo, cli_env, tmp_path
):
    from test_run_e2e import FIXING_SCRIPT, assert_fixes, run_agent

    from cwm_agent.scripted_server import ScriptedServer

    before = snapshot(buggy_repo)
    with ScriptedServer(FIXING_SCRIPT) as server:
        result = run_agent(server, buggy_repo, cli_env, "--runtime", "docker", "--image", IMAGE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("diff --git a/mathlib/ops.py b/mathlib/ops.py")
    assert_fixes(result.stdout, buggy_repo, tmp_path)
    assert snapshot(buggy_repo) == before


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"])
def test_interrupting_the_cli_leaves_no_container(client, buggy_repo, cli_env, signal_name):
    import signal

    from conftest import cwm

    from cwm_agent.runtimes.docker_engine import OWNER_LABEL
    from cwm_agent.scripted_server import ScriptedServer

    def ours() -> set[str]:
        """The containers this CLI process made (other runs may share the engine)."""
        found = client.containers.list(all=True, filters={"label": OWNER_LABEL})
        return {c.id for c in found if f"/{proc.pid}/" in c.labels[OWNER_LABEL]}

    with ScriptedServer([cwm("bash", "sleep 60")] * 3) as server:
        args = [
            "run",
            str(buggy_repo),
            "--issue",
            "x",
            "--base-url",
            server.base_url,
            "--model",
            "m",
            "--runtime",
            "docker",
            "--image",
            IMAGE,
        ]
        proc = subprocess.Popen(
            [sys.executable, "-m", "cwm_agent", *args],
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while not server.requests and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert ours(), "no container was started"
            time.sleep(0.3)  # the `sleep 60` is running in the container
            proc.send_signal(getattr(signal, signal_name))
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 130, err.decode()
    assert ours() == set()


def test_cleanup_command_removes_only_containers_of_gone_runs(client, buggy_repo, cli_env):
    from cwm_agent.runtimes.docker_engine import LABEL

    stranger = client.containers.run(
        IMAGE, ["sleep", "infinity"], detach=True, network_disabled=True
    )
    alive = make(buggy_repo, client, run_id="test-cleanup-cli")
    left = abandoned(buggy_repo, "test-cleanup-cli")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cwm_agent", "cleanup", "--run-id", "test-cleanup-cli"],
            env=cli_env, capture_output=True, text=True,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [left]
        assert "kept 1 of runs still going" in proc.stderr
        remaining = client.containers.list(all=True, filters={"label": f"{LABEL}=test-cleanup-cli"})
        assert [c.id for c in remaining] == [alive.container.id]
        stranger.reload()
        assert stranger.status == "running"
    finally:
        stranger.remove(force=True)
        alive.close()


def test_best_of_runs_its_attempts_in_containers(client, buggy_repo, cli_env, tmp_path):
    """`best-of` takes the runtime options like `run` (it once had no --runtime)."""
    from conftest import cwm
    from test_run_e2e import FIX_EDIT, assert_fixes

    from cwm_agent.scripted_server import ScriptedServer

    script = [
        cwm("bash", "test -f /.dockerenv && echo INSIDE-A-CONTAINER"),
        cwm("edit", FIX_EDIT),
        cwm("bash", "git diff > fix.patch"),
        cwm("submit", "fix.patch"),
        "<think>\nDone.\n</think>\n## Issue Summary\nadd() subtracted.",
    ]

    def by_turn(body: dict) -> str | None:  # each attempt follows the script on its own
        turn = sum(m["role"] == "assistant" for m in body["messages"])
        return script[turn] if turn < len(script) else None

    traj_dir = tmp_path / "attempts"
    with ScriptedServer(by_turn) as server:
        args = ["best-of", str(buggy_repo), "--issue", "add() is wrong", "--model", "m"]
        args += ["--base-url", server.base_url, "--attempts", "2", "--repro-tests", "0"]
        args += ["--test-cmd", "", "--runtime", "docker", "--image", IMAGE]
        result = run_cli([*args, "--traj-dir", str(traj_dir)], cli_env)
    assert result.returncode == 0, result.stderr
    assert_fixes(result.stdout, buggy_repo, tmp_path)
    for attempt in (1, 2):
        data = json.loads((traj_dir / f"attempt-{attempt}.json").read_text())
        assert data["config"]["runtime"] == "docker"
        assert data["steps"][0]["observation"]["output"].startswith("INSIDE-A-CONTAINER")


SWEBENCH_IMAGE = os.environ.get("CWM_TEST_SWEBENCH_IMAGE", "cwm-agent-swebench:latest")


def image_with_testbed(
    client, repo: Path, label: str, setup: str, read_back: tuple[str, ...]
) -> tuple[str, list[str]]:
    """An image of the test image with ``repo`` at /testbed after ``setup`` ran there; its
    tag, and the contents of the files ``read_back`` names (written by ``setup``)."""
    builder = client.containers.run(IMAGE, ["sleep", "infinity"], detach=True)
    tag = f"cwm-agent-test-{label}:{secrets.token_hex(4)}"
    try:
        with tempfile.TemporaryFile() as buf:
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(repo, arcname="testbed")
            buf.seek(0)
            builder.put_archive("/", buf)
        exit_code, output = builder.exec_run(["bash", "-c", setup])
        assert exit_code == 0, output
        found = [builder.exec_run(["cat", p]).output.decode().strip() for p in read_back]
        builder.commit(*tag.split(":"))
    finally:
        builder.remove(force=True)
    return tag, found


def image_with_history(client, buggy_repo) -> tuple[str, str, str]:
    """An image whose /testbed is at a base commit with a later fix reachable in every way
    a clone leaves one: a branch, a tag, a remote-tracking ref, the reflog, a stash."""
    setup = " && ".join(
        [
            "cd /testbed",
            "git -c user.name=t -c user.email=t@t commit -qam 'the future fix' --allow-empty",
            "git tag v-future",
            "git update-ref refs/remotes/origin/main HEAD",
            "git remote add origin https://example.invalid/repo.git",
            "git rev-parse HEAD > /future",
            "git reset -q --hard HEAD~1",
            "echo stash >> .gitignore && git -c user.name=t -c user.email=t@t stash -q",
            "git rev-parse HEAD > /base && chown -R 0:0 .",
        ]
    )
    tag, found = image_with_testbed(client, buggy_repo, "history", setup, ("/future", "/base"))
    future, base = found
    return tag, base, future


def test_the_repository_in_the_image_keeps_only_heads_ancestors(client, buggy_repo):
    tag, base, future = image_with_history(client, buggy_repo)
    try:
        options = dict(image=tag, workdir="/testbed", repo_in_image=True, base_commit=base)
        with make(None, client, **options) as runtime:
            run = lambda cmd: runtime.run(cmd, 30).output  # noqa: E731
            assert run("git rev-parse HEAD") == f"{base}\n"  # clean: no baseline commit
            assert run("git log --all --format=%H") == f"{base}\n"
            assert run("git tag; git remote; git stash list; git reflog | wc -l") == "0\n"
            assert "fatal" in run(f"git cat-file -t {future} 2>&1")  # pruned, not just hidden
            assert not runtime.notices
        with make(None, client, **{**options, "base_commit": future}) as runtime:
            (notice,) = runtime.notices
            assert f"not at the record's base_commit {future[:12]}" in notice
    finally:
        client.images.remove(tag, force=True)


def test_swebench_images_get_their_testbed_env_in_every_shell(client):
    try:
        client.images.get(SWEBENCH_IMAGE)
    except Exception:  # noqa: BLE001
        _unavailable(f"the image {SWEBENCH_IMAGE}")
    testbed = "/opt/miniconda3/envs/testbed"
    where = "python -c 'import sys; print(sys.prefix)'"
    options = dict(image=SWEBENCH_IMAGE, workdir="/testbed", repo_in_image=True)
    with make(None, client, **options) as runtime:
        assert runtime.run(where, 30).output == f"{testbed}\n"
        assert runtime.run("python -m pytest --version 2>&1", 60).exit_code == 0
        assert any("conda activate testbed" in n for n in runtime.notices)
        assert runtime.run("exit 3", 10).session_restarted
        assert runtime.run(f"{where}; pwd", 30).output == f"{testbed}\n/testbed\n"
    with make(None, client, **options, shell_init="") as runtime:  # turned off
        assert runtime.run(where, 30).output != f"{testbed}\n"
        assert not runtime.notices


def test_a_process_flood_that_leaves_the_shell_is_cleared_and_the_tools_work(client, buggy_repo):
    """setsid'd processes fill the process limit and outlive every restart of the shell's
    group: the runtime clears the container, the session and the file tools recover."""
    with make(buggy_repo, client, pids_limit=64) as runtime:
        runtime.run("for i in $(seq 100); do setsid sleep 1000 & done 2>/dev/null", 5)
        stuck = runtime.run("ls mathlib", 20)
        assert stuck.session_restarted and "process limit" in stuck.output
        assert runtime.run("ls mathlib", 20).output == "__init__.py\nops.py\n"
        assert runtime.exists("mathlib/ops.py")
        assert runtime.read_file("mathlib/ops.py").startswith(b"def add")
        assert not [p for p in processes(runtime.container) if p.startswith("sleep 1000")]


def test_a_container_broken_by_a_command_is_not_blamed_on_the_image(client, buggy_repo):
    with make(buggy_repo, client) as runtime:
        runtime.run("rm -f /usr/bin/git /usr/bin/base64", 10)
        with pytest.raises(RuntimeFailure) as info:
            runtime.diff()
        assert "a command may have removed git" in info.value.hint
        with pytest.raises(ToolError, match="a command may have removed it"):
            runtime.read_file("mathlib/ops.py")
        runtime.run("rm -f /bin/bash /usr/bin/bash", 10)
        with pytest.raises(RuntimeFailure) as info:
            runtime.run("exit 1", 10)
            runtime.run("true", 10)
        assert "could not start again" in info.value.message
        assert "a command may have removed bash" in info.value.hint


def test_interrupting_a_docker_batch_mid_command_stops_it_at_once(
    client, buggy_repo, cli_env, tmp_path
):
    """Instances inside a long command stop at once (they did after a 10 s grace, then
    crashed with EBADF when the exit closed their sockets): their trajectories say
    interrupted, summary.json too, and no container is left."""
    import signal

    from batch_support import Scripts, batch_args, read_json, start_cli, wait_for
    from conftest import cwm

    from cwm_agent.runtimes.docker_engine import LABEL
    from cwm_agent.scripted_server import ScriptedServer

    issues = tmp_path / "issues"
    issues.mkdir()
    keys = ["a", "b"]
    for key in keys:
        (issues / f"{key}.md").write_text(f"[{key}] add() subtracts")
    scripts = Scripts({key: [cwm("bash", "sleep 60; echo done")] * 3 for key in keys})
    outdir = tmp_path / "out"
    existing = {c.id for c in client.containers.list(all=True, filters={"label": LABEL})}
    with ScriptedServer(scripts) as server:
        args = batch_args(server, issues, outdir, "--repo", str(buggy_repo), "--workers", "2")
        args += ["--runtime", "docker", "--image", IMAGE, "--timeout", "120"]
        proc = start_cli(args, cli_env)
        wait_for(lambda: len(server.requests) >= 2, 60)
        time.sleep(1.0)  # both instances are inside `sleep 60`
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - started
    assert proc.returncode == 130, stderr
    assert took < 8, f"took {took:.1f} s"  # no waiting out a grace period
    assert "crashed" not in stderr and "Bad file descriptor" not in stderr
    summary = read_json(outdir / "summary.json")
    assert summary["interrupted"] is True and summary["failed"] == 0
    for key in keys:
        assert read_json(outdir / key / "trajectory.json")["exit_status"] == "interrupted"
    left = {c.id for c in client.containers.list(all=True, filters={"label": LABEL})}
    assert left - existing == set()
