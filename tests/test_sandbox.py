"""The local runtime's sandbox against hostile commands, through the real CLI.

The model (scripted) tries to write outside the copy and into $HOME, to reach a server on
this machine, to read the agent's environment, to leave daemons behind, and to destroy
the copy's git history after a valid submission. Nothing may land outside, nothing may
leak, nothing may survive the run, and the accepted patch must still be printed.

Driving the runtime directly: a process racing the file tools with symlink swaps, the
host's Unix sockets, an `objects/info/alternates` naming /proc, /dev, / and /tmp.

Without bubblewrap these tests skip, saying how to enable them; under
CWM_REQUIRE_SANDBOX=1 (CI) they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from conftest import SECRET_KEY, cwm, require_sandbox, run_cli, snapshot
from sandbox_support import (
    PROBE,
    SELF_TEST,
    SWAPPER,
    Listener,
    host_socket_paths,
    processes,
    writable_folder,
)
from test_run_e2e import FIX_EDIT, assert_fixes

from cwm_agent.scripted_server import ScriptedServer


@pytest.fixture(autouse=True)
def _needs_the_sandbox():
    require_sandbox("the sandbox tests")


def test_hostile_commands_leave_nothing_outside_leak_nothing_and_the_patch_survives(
    buggy_repo, cli_env, tmp_path
):
    mark = uuid.uuid4().hex
    outside = Path("/tmp") / f"cwm-outside-{mark}"
    home_probe = Path.home() / f".cwm-probe-{mark}"
    listener = Listener()
    traj = tmp_path / "t.json"
    daemon = f"sleep 1000.{mark[:6]}"
    script = [
        # writes outside the copy: the user's repository, /tmp, $HOME, the system
        cwm("bash", f"echo pwned >> {buggy_repo}/mathlib/ops.py; echo $?"),
        cwm("bash", f"echo x > {outside}; echo x > {home_probe}; echo x > /etc/cwm-{mark}; true"),
        # the network: a server on this machine, and the model server itself
        cwm("bash", f"(exec 3<>/dev/tcp/127.0.0.1/{listener.port}) 2>&1; echo tcp=$?"),
        # the agent's environment, and every other process's
        cwm("bash", "tr '\\0' '\\n' < /proc/$PPID/environ; cat /proc/[0-9]*/environ | wc -c"),
        cwm("bash", "ls /proc | grep -c '^[0-9]'"),
        # daemons that leave the group and the session
        cwm("bash", f"setsid {daemon} & ( ( nohup {daemon} >/dev/null 2>&1 & ) & ); echo ok"),
        # the fix, submitted...
        cwm("edit", FIX_EDIT),
        cwm("bash", "git diff > fix.patch"),
        cwm("submit", "fix.patch"),
        # ... then the history destroyed, and faked
        cwm("bash", "rm -rf .git"),
        cwm("bash", "git init -q && git add -A && git commit -qm fake; echo gone > mathlib/ops.py"),
        "<think>\nDone.\n</think>\n## Issue Summary\nadd() subtracted.",
    ]
    before = snapshot(buggy_repo)
    try:
        with ScriptedServer(script) as server:
            args = ["run", str(buggy_repo), "--issue", "add() is wrong", "--model", "m"]
            args += ["--base-url", server.base_url, "--traj", str(traj), "--sandbox", "bwrap"]
            result = run_cli(args, cli_env)
    finally:
        listener.close()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("diff --git a/mathlib/ops.py b/mathlib/ops.py")
    assert_fixes(result.stdout, buggy_repo, tmp_path)  # the accepted patch, intact
    assert snapshot(buggy_repo) == before
    assert not outside.exists() and not home_probe.exists()
    assert not Path(f"/etc/cwm-{mark}").exists()
    assert listener.accepted == 0
    outputs = [s["observation"]["output"] for s in json.loads(traj.read_text())["steps"][:6]]
    # (the user's repository is under /tmp here, which the sandbox replaces with its own)
    assert "Read-only file system" in outputs[0] or "No such file" in outputs[0]
    assert "Read-only file system" in outputs[1]
    assert "tcp=1" in outputs[2] or "Network is unreachable" in outputs[2]
    assert "OPENAI" not in outputs[3] and "redacted" not in outputs[3]  # never even seen
    assert int(outputs[4].split()[0]) < 10  # the sandbox's own few processes only
    bodies = [json.dumps(r.body) for r in server.requests if r.body]
    assert all(SECRET_KEY not in body for body in bodies)
    deadline = time.monotonic() + 10
    while [p for p in processes() if daemon in p] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in processes() if daemon in p] == []


def test_network_is_given_only_when_asked(buggy_repo):
    from cwm_agent.runtimes.local import LocalRuntime

    listener = Listener()
    probe = f"(exec 3<>/dev/tcp/127.0.0.1/{listener.port}) 2>/dev/null && echo reached"
    try:
        with LocalRuntime.create(buggy_repo, sandbox="bwrap") as closed:
            assert "reached" not in closed.run(probe, 10).output
        with LocalRuntime.create(buggy_repo, sandbox="bwrap", network=True) as opened:
            assert "reached" in opened.run(probe, 10).output
            if os.path.isfile("/etc/resolv.conf"):  # kept even where it links into /run
                resolver = Path("/etc/resolv.conf").read_text()
                assert opened.run("cat /etc/resolv.conf", 10).output == resolver
    finally:
        listener.close()
    assert listener.accepted == 1


def test_the_overlay_copies_nothing_at_start_and_stores_only_changes(tmp_path):
    from conftest import git

    from cwm_agent.runtimes.local import LocalRuntime

    repo = tmp_path / "big"
    repo.mkdir()
    old = time.time() - 60  # not "racily clean": git trusts the index's stat data for them
    for n in range(200):
        (repo / f"f{n}.txt").write_bytes(os.urandom(20_000))  # 4 MB of tree
        os.utime(repo / f"f{n}.txt", (old, old))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "big")
    with LocalRuntime.create(repo, sandbox="bwrap") as runtime:
        top = Path(runtime.root).parent
        assert _bytes_under(top) < 500_000  # indexes and the model's .git, no file copies
        runtime.run("echo changed > f7.txt", 10)
        assert _bytes_under(top / "layers" / "upper") < 10_000
        assert runtime.read_file("f8.txt") == (repo / "f8.txt").read_bytes()


def _bytes_under(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_venv_under_tmp_stays_usable_in_the_private_tmp(buggy_repo, tmp_path):
    """The sandbox's /tmp is its own; a project checked out there (its venv on PATH) would
    lose its interpreter. Folders on PATH under /tmp stay visible, read-only."""
    import subprocess
    import sys

    from cwm_agent.runtimes.local import LocalRuntime

    venv = Path(tempfile.mkdtemp(prefix="cwm-venv-", dir="/tmp")) / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = {"PATH": f"{venv}/bin:{os.environ['PATH']}"}
    try:
        with LocalRuntime.create(buggy_repo, sandbox="bwrap", env=env) as runtime:
            result = runtime.run(
                "python -c 'import sys; print(sys.prefix)'; touch $VIRTUAL_ENV/x", 30
            )
            assert result.output.splitlines()[0] == str(venv)
            assert not (venv / "x").exists()
    finally:
        shutil.rmtree(venv.parent, ignore_errors=True)


def test_a_racing_symlink_swap_never_lets_create_or_edit_out_of_the_copy(buggy_repo, tmp_path):
    """Issue 21, item 1: `create` of d/ + a/../ x 2000 + name while a sandboxed process
    swaps d with a symlink to a host folder the sandbox cannot even see."""
    from cwm_agent.editing import create_file, edit_file
    from cwm_agent.errors import ToolError
    from cwm_agent.runtimes.local import LocalRuntime

    host = tmp_path / "host-folder"  # under /tmp: hidden in the sandbox, not from here
    host.mkdir()
    (host / "victim.txt").write_text("victim\n")
    tries, created, refused = 300, 0, 0
    with LocalRuntime.create(buggy_repo, sandbox="bwrap") as runtime:
        runtime.run(f"cat > /tmp/swap.py <<'EOF'\n{SWAPPER}\nEOF", 10)
        started = runtime.run(f"python3 /tmp/swap.py {host} > /tmp/swap.log 2>&1 &", 10)
        assert started.exit_code == 0, started.output
        wait = "until grep -q swapping /tmp/swap.log; do sleep 0.1; done; cat /tmp/swap.log"
        assert "swapping" in runtime.run(wait, 120).output
        for n in range(tries):
            try:
                create_file(runtime, "d/" + "a/../" * 2000 + f"f{n}", "x\n")
                created += 1
            except ToolError:  # d was the symlink: refused
                refused += 1
            try:
                edit_file(runtime, "d/" + "a/../" * 200 + "../l/victim.txt", "victim", "pwned")
            except ToolError:
                pass
        swaps = runtime.run("cat /tmp/swaps", 10).output  # written every 100 swaps
    landed = sorted(p.name for p in host.iterdir())
    assert landed == ["victim.txt"], f"{len(landed) - 1} of {tries} creates landed outside"
    assert (host / "victim.txt").read_text() == "victim\n"
    assert int(swaps) >= 100  # the race was on
    assert created + refused == tries


def test_a_racing_symlink_swap_never_feeds_a_host_file_into_the_diff(buggy_repo, tmp_path):
    """Issue 21 item 1, residual: the harness's own git stages the copy beside the sandbox,
    where this machine's /tmp is visible. A sandboxed process swaps the folder d with a
    symlink to a host folder under /tmp while git walks the tree: the host file must never
    reach the diff (the sandbox is held still while git reads it)."""
    from cwm_agent.runtimes.local import LocalRuntime

    host = tmp_path / "host-folder"  # under /tmp: hidden in the sandbox, not beside it
    host.mkdir()
    (host / "victim.txt").write_text("host-secret-5ea1\n")
    tries, leaked = 150, 0
    with LocalRuntime.create(buggy_repo, sandbox="bwrap") as runtime:
        runtime.run(f"cat > /tmp/swap.py <<'EOF'\n{SWAPPER}\nEOF", 10)
        started = runtime.run(f"python3 /tmp/swap.py {host} > /tmp/swap.log 2>&1 &", 10)
        assert started.exit_code == 0, started.output
        wait = "until grep -q swapping /tmp/swap.log; do sleep 0.1; done; cat /tmp/swap.log"
        assert "swapping" in runtime.run(wait, 120).output
        for _ in range(tries):
            leaked += "host-secret" in runtime.diff() or "victim.txt" in runtime.diff()
        swaps = int(runtime.run("cat /tmp/swaps", 10).output)
        again = int(runtime.run("sleep 0.5; cat /tmp/swaps", 10).output)
    assert leaked == 0, f"{leaked} of {2 * tries} diffs held the host file"
    assert swaps >= 100 and again > swaps  # the race was on, and the swapper runs again


def test_host_unix_sockets_are_unreachable_and_the_private_tmp_keeps_working(
    buggy_repo, tmp_path, monkeypatch
):
    """Issue 21, item 3: a read-only mount does not stop connect(). Servers this test
    starts under /run, in a folder the sandbox sees ($HOME) and in the user's tree, plus
    every bound socket of the host, must all be out of reach."""
    from cwm_agent.runtimes.local import LocalRuntime

    run_dir = writable_folder("/run", os.environ.get("XDG_RUNTIME_DIR"))
    seen_dir = writable_folder(str(Path.home()))
    if run_dir is None or seen_dir is None:
        pytest.skip("needs a writable folder under /run and a writable $HOME")
    servers = []
    for path, kind in [
        (run_dir / "engine.sock", socket.SOCK_STREAM),  # like /run/docker.sock
        (seen_dir / "agent.sock", socket.SOCK_STREAM),  # like ~/.gnupg/S.gpg-agent
        (seen_dir / "log.sock", socket.SOCK_DGRAM),  # bound, never listening
        (buggy_repo / "dev.sock", socket.SOCK_STREAM),  # a dev server in the tree
    ]:
        server = socket.socket(socket.AF_UNIX, kind)
        server.bind(str(path))
        if kind == socket.SOCK_STREAM:
            server.listen()
        servers.append(server)
    monkeypatch.setenv("SSH_AUTH_SOCK", str(seen_dir / "agent.sock"))
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={run_dir}/bus")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run_dir))
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    try:
        with LocalRuntime.create(buggy_repo, sandbox="bwrap") as runtime:
            targets = [*host_socket_paths(), f"{runtime.root}/dev.sock"]
            assert str(run_dir / "engine.sock") in targets  # the host lists them all
            assert str(seen_dir / "log.sock") in targets
            runtime.write_file("targets.txt", "\n".join(targets).encode())
            runtime.run(f"cat > /tmp/probe.py <<'EOF'\n{PROBE}\nEOF", 10)
            probed = runtime.run("python3 /tmp/probe.py targets.txt", 60).output
            env = runtime.run("env", 10).output
            run_listing = runtime.run("ls -A /run /var/run", 10).output
            runtime.run(f"cat > /tmp/self.py <<'EOF'\n{SELF_TEST}\nEOF", 10)
            own = runtime.run("python3 /tmp/self.py", 30).output
    finally:
        for server in servers:
            server.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(seen_dir, ignore_errors=True)
    assert "probed" in probed and "REACHED" not in probed, probed
    for name in ("SSH_AUTH_SOCK", "DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "WAYLAND"):
        assert name not in env
    assert run_listing.split() == ["/run:", "/var/run:"]  # empty, the sandbox's own
    assert own == "own socket works\n"


def test_alternates_bind_only_real_object_stores(tmp_path):
    """Issue 21, item 8: `objects/info/alternates` is the checkout's to write, and the
    sandbox binds what it names. /proc showed the host's processes, /dev broke every
    command, / and /tmp failed with a misleading message; a real shared store must still
    give the history."""
    from conftest import git

    from cwm_agent.runtimes.local import LocalRuntime

    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "-q")
    for n in range(3):
        (origin / "f.txt").write_text(f"{n}\n")
        git(origin, "add", "-A")
        git(origin, "commit", "-qm", f"c{n}")
    repo = tmp_path / "repo"
    git(tmp_path, "clone", "-q", "--shared", str(origin), str(repo))  # borrows origin's store
    alternates = repo / ".git" / "objects" / "info" / "alternates"
    hostile = ["/proc", "/dev", "/", "/tmp"]
    alternates.write_text(alternates.read_text() + "".join(f"{p}\n" for p in hostile))
    secret = tmp_path.parent / f"host-tmp-{uuid.uuid4().hex}"  # on the host's /tmp
    secret.write_text("host\n")
    try:
        with LocalRuntime.create(repo, sandbox="bwrap") as runtime:
            processes = runtime.run("ls /proc | grep -c '^[0-9]'", 10).output
            devnull = runtime.run("echo x > /dev/null && echo written", 10).output
            log = runtime.run("git log --format=%s 2>/dev/null", 10).output  # (git warns about /)
            host_tmp = runtime.run(f"cat {secret} 2>&1; true", 10).output
            notices = runtime.notices
    finally:
        secret.unlink()
    assert int(processes.split()[0]) < 10, processes  # the sandbox's own, not the host's
    assert devnull == "written\n"
    assert log == "c2\nc1\nc0\n"  # the real alternate store: history readable
    assert "No such file" in host_tmp
    for line in hostile:
        assert any(f"store {line} named in" in n and "left out" in n for n in notices), notices
    assert not any(str(origin) in n for n in notices)


UNPRIVILEGED = """
import os, subprocess, sys
from cwm_agent.runtimes.local import LocalRuntime
os.chdir(sys.argv[1])
subprocess.run("git init -q r && mkdir r/d && echo x > r/d/x && git -C r add -A && "
               "git -C r -c user.name=u -c user.email=u@x commit -qm c", shell=True, check=True)
with LocalRuntime.create("r", sandbox="bwrap") as runtime:
    print(runtime.run("rm -rf d && echo removed; mkdir d && echo y > d/y", 20).output)
    print(runtime.diff())
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_a_user_who_is_not_root_can_remove_a_directory_of_the_tree():
    """A user who is not root mounts the overlay in a user namespace, where overlayfs cannot
    write its trusted.* attributes: `rm -rf` of a directory of the user's tree failed with
    "Input/output error" (found testing issue 21). Run here as nobody."""
    import subprocess
    import sys

    import cwm_agent

    folder = tempfile.mkdtemp(prefix="cwm-nobody-", dir="/tmp")
    os.chown(folder, 65534, 65534)
    env = {**os.environ, "HOME": folder, "PYTHONPATH": str(Path(cwm_agent.__file__).parents[1])}
    try:
        proc = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
             UNPRIVILEGED, folder],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    assert "removed" in proc.stdout and "Input/output error" not in proc.stdout
    assert "deleted file mode 100644" in proc.stdout and "+++ b/d/y" in proc.stdout
