"""ShellSession against a real bash: persistence, timeouts, restarts, floods, cleanup."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest

from cwm_agent.errors import RuntimeFailure
from cwm_agent.runtimes.shell import PipeTransport, ShellSession


def live_members(pgid: int) -> list[int]:
    """Pids in process group ``pgid`` that are not zombies (the reaper may lag)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def wait_gone(pgid: int, limit: float = 3.0) -> list[int]:
    deadline = time.monotonic() + limit
    while (members := live_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return members


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def sh(tmp_path: Path):
    session = ShellSession(str(tmp_path))
    yield session
    session.close()


def test_cwd_env_and_functions_persist(sh: ShellSession, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    assert sh.run("cd sub && export FOO=bar && greet() { echo hi $1; }", 5).exit_code == 0
    result = sh.run("pwd; echo $FOO; greet you; declare -a A=(1 2); X=3", 5)
    assert result.output == f"{tmp_path}/sub\nbar\nhi you\n"
    assert sh.run("echo ${A[1]} $X", 5).output == "2 3\n"


def test_multiline_heredoc_loop(sh: ShellSession) -> None:
    command = (
        "cat <<'EOF' > f.txt\nline $HOME\n  indented\nEOF\n"
        "for i in 1 2 3; do\n  echo n$i\ndone\ncat f.txt"
    )
    result = sh.run(command, 5)
    assert result.output == "n1\nn2\nn3\nline $HOME\n  indented\n"
    assert result.exit_code == 0


def test_exit_status_and_merged_streams(sh: ShellSession) -> None:
    result = sh.run("echo a; echo b >&2; echo c; (exit 42)", 5)
    assert (result.output, result.exit_code) == ("a\nb\nc\n", 42)
    assert sh.run("printf no-newline", 5).output == "no-newline"


def test_syntax_error_does_not_hang(sh: ShellSession) -> None:
    result = sh.run('echo "unterminated', 5)
    assert result.exit_code == 2 and not result.timed_out
    assert "unexpected EOF" in result.output
    assert sh.run("if then fi", 5).exit_code == 2
    assert sh.run("echo fine", 5).output == "fine\n"


def test_stdin_reads_get_eof(sh: ShellSession) -> None:
    result = sh.run(
        "cat; read x; echo read=$?; python3 -c 'import sys; print(len(sys.stdin.read()))'", 5
    )
    assert result.output == "read=1\n0\n"
    assert result.duration < 2


def test_timeout_kills_group_and_restarts_in_root(sh: ShellSession, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    command = "cd sub; export GONE=1; sleep 1000 & bash -c 'echo $$ > ../child.pid; sleep 1000'"
    result = sh.run(command, 1)
    assert result.timed_out and result.session_restarted and result.exit_code is None
    assert 0.9 < result.duration < 2.5
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 2
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pid_alive(child)
    after = sh.run("pwd; echo gone=$GONE", 5)
    assert after.output == f"{tmp_path}\ngone=\n" and not after.session_restarted


def test_timeout_keeps_partial_output(sh: ShellSession) -> None:
    result = sh.run("echo started; sleep 1000", 0.5)
    assert result.timed_out and result.output == "started\n"


@pytest.mark.parametrize(("command", "code"), [("exit", 0), ("exit 3", 3), ("kill -9 $$", 137)])
def test_shell_death_is_reported_and_recovered(
    sh: ShellSession, tmp_path: Path, command: str, code: int
) -> None:
    sh.run("cd /; export GONE=1; sleep 1000 &", 5)  # an orphan holding the pipe open
    result = sh.run(f"echo bye; {command}", 5)
    assert result.session_restarted and not result.timed_out
    assert result.exit_code == code and result.duration < 2
    assert result.output.startswith("bye\n")
    after = sh.run("pwd; echo gone=$GONE", 5)
    assert after.output == f"{tmp_path}\ngone=\n"


def test_a_deleted_command_folder_is_recreated(sh: ShellSession) -> None:
    """A command that wipes the temp folder (`rm -rf /tmp/*`) takes the session's command
    file with it; the next command still runs, in the same shell."""
    folder = os.path.dirname(sh._cmd_file)
    first = sh.run(f"X=kept; rm -rf {folder}; echo gone", 10)
    assert first.output == "gone\n" and not os.path.exists(folder)
    second = sh.run("echo $X", 10)
    assert (second.output, second.exit_code, second.session_restarted) == ("kept\n", 0, False)


def test_background_process_does_not_block(sh: ShellSession) -> None:
    result = sh.run("sleep 1000 & echo started", 5)
    assert result.output == "started\n" and result.duration < 1


def test_late_background_output_shows_up_next(sh: ShellSession) -> None:
    sh.run("(sleep 0.1; echo late) &", 5)
    time.sleep(0.3)
    assert sh.run("echo now", 5).output == "late\nnow\n"


def test_flood_is_bounded(sh: ShellSession) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = sh.run("yes | head -c 200000000", 30)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert result.exit_code == 0
    assert result.cut_bytes == 200_000_000 - 2 * 64 * 1024
    assert len(result.output) < 2 * 64 * 1024 + 100
    assert result.output.startswith("y\ny\n") and result.output.endswith("y\ny\n")
    assert "bytes of output cut" in result.output
    assert grown_kib < 50 * 1024


def test_endless_flood_times_out(sh: ShellSession) -> None:
    result = sh.run("yes", 0.5)
    assert result.timed_out and result.cut_bytes > 0
    assert len(result.output) < 2 * 64 * 1024 + 100
    assert sh.run("echo ok", 5).output == "ok\n"


def test_head_and_tail_kept(tmp_path: Path) -> None:
    with ShellSession(str(tmp_path), head_bytes=6, tail_bytes=5) as session:
        result = session.run("seq 1 1000", 5)
    total = sum(len(f"{i}\n") for i in range(1, 1001))
    assert result.cut_bytes == total - 11
    assert result.output.startswith("1\n2\n3\n") and result.output.endswith("\n1000\n")


def test_binary_and_invalid_utf8(sh: ShellSession) -> None:
    assert sh.run(r"printf 'a\0b\xff\xfec'", 5).output == "a\x00b\ufffd\ufffdc"
    result = sh.run("head -c 300000 /dev/urandom", 5)
    assert result.exit_code == 0 and result.cut_bytes > 0
    assert sh.run("echo é", 5).output == "é\n"


class OneByteTransport(PipeTransport):
    """Hands output over one byte at a time: every sentinel is split across reads."""

    def __init__(self, cwd: str, env) -> None:
        super().__init__(cwd, env)
        self.buffer = b""

    def read(self, timeout: float) -> bytes | None:
        if not self.buffer:
            data = super().read(timeout)
            if not data:
                return data
            self.buffer = data
        byte, self.buffer = self.buffer[:1], self.buffer[1:]
        return byte


def test_sentinel_split_across_reads(tmp_path: Path) -> None:
    with ShellSession(str(tmp_path), transport_factory=OneByteTransport) as session:
        result = session.run("echo hello; false", 5)
        assert (result.output, result.exit_code) == ("hello\n", 1)
        result = session.run("printf abc; exit 7", 5)
        assert (result.output, result.exit_code) == ("abc", 7)
        result = session.run("echo x; (exit 5)", 5)
        assert (result.output, result.exit_code) == ("x\n", 5)


def test_close_leaves_no_processes(tmp_path: Path) -> None:
    session = ShellSession(str(tmp_path))
    session.run("sleep 1000 & bash -c 'sleep 1000' & echo ok", 5)
    pgid = session.transport.pgid  # type: ignore[attr-defined]
    tmp = session._res.tmp
    assert len(live_members(pgid)) >= 3
    session.close()
    session.close()  # idempotent
    assert wait_gone(pgid) == []
    assert not os.path.exists(tmp)
    with pytest.raises(RuntimeFailure):
        session.run("true", 1)


def test_extra_env_and_scrubbed_git_vars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_DIR", "/somewhere/else/.git")
    with ShellSession(str(tmp_path), env={"MY_VAR": "1"}) as session:
        result = session.run("echo $MY_VAR/$PAGER/$TERM/${GIT_DIR-unset}", 5)
    assert result.output == "1/cat/dumb/unset\n"


def test_stop_commands_ends_a_running_command_in_its_thread_at_once(tmp_path):
    """What a batch or a scaled run does after Ctrl-C: every interruptible session's
    running command is killed and its thread gets KeyboardInterrupt; internal sessions
    (the clean-up's diffs) go on working."""
    import threading

    from cwm_agent.runtimes import shell as shell_mod

    outcome: dict[str, object] = {}
    with (
        ShellSession(str(tmp_path)) as agent,
        ShellSession(str(tmp_path), interruptible=False) as internal,
    ):

        def busy() -> None:
            started = time.monotonic()
            try:
                agent.run("sleep 30", 60)
            except KeyboardInterrupt:
                outcome["interrupted after"] = time.monotonic() - started

        worker = threading.Thread(target=busy)
        worker.start()
        time.sleep(0.5)
        try:
            shell_mod.stop_commands()
            worker.join(10)
            assert internal.run("echo still works", 10).output == "still works\n"
        finally:
            shell_mod.STOPPING.clear()
        assert outcome["interrupted after"] < 5  # type: ignore[operator]
        assert agent.run("echo fresh shell", 10).output == "fresh shell\n"
