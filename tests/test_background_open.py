"""runtimes/background.py, and `execute` opening the runtime beside the model client."""

from __future__ import annotations

import glob
import json
import os
import tempfile
import threading
import time

import pytest

from cwm_agent import run as run_module
from cwm_agent.agent import AgentConfig
from cwm_agent.errors import ModelError, RuntimeFailure
from cwm_agent.run import ModelSettings, RunSettings, execute
from cwm_agent.runtimes.background import BackgroundOpen


def test_result_is_the_opened_value_and_runs_in_another_thread():
    opened_in: list[str] = []

    def opener() -> str:
        opened_in.append(threading.current_thread().name)
        return "value"

    assert BackgroundOpen(opener, lambda v: None).result() == "value"
    assert opened_in and opened_in[0] != threading.current_thread().name


def test_the_openers_error_is_raised_in_the_caller():
    def opener() -> str:
        raise RuntimeFailure("no engine", hint="start one")

    opening = BackgroundOpen(opener, lambda v: pytest.fail("nothing was opened"))
    with pytest.raises(RuntimeFailure, match="no engine"):
        opening.result()
    opening.discard()  # nothing to close


def test_discard_waits_for_a_slow_opener_then_closes_once():
    release = threading.Event()
    closed: list[str] = []

    def opener() -> str:
        release.wait(5)
        return "runtime"

    opening = BackgroundOpen(opener, closed.append)
    threading.Timer(0.2, release.set).start()
    started = time.monotonic()
    opening.discard()
    assert time.monotonic() - started >= 0.15  # it waited rather than dropping the runtime
    assert closed == ["runtime"]
    opening.discard()
    assert closed == ["runtime"]


def _settings(repo, tmp_path) -> RunSettings:
    return RunSettings(
        repo=repo,
        model=ModelSettings(name="m", base_url="http://127.0.0.1:9/v1", max_retries=0),
        agent=AgentConfig(),
        traj_path=tmp_path / "t.json",
        run_id=f"bg-{os.getpid()}",
    )


def test_a_failing_model_client_still_closes_the_runtime(buggy_repo, tmp_path, monkeypatch):
    """The private copy opened beside a model client that fails is removed; the
    trajectory says why the run ended."""

    copies = os.path.join(tempfile.gettempdir(), "cwm-agent-*", buggy_repo.name)
    before = set(glob.glob(copies))
    seen: list[str] = []

    def broken(settings):
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:  # the copy is made meanwhile
            seen.extend(set(glob.glob(copies)) - before)
            time.sleep(0.01)
        raise ModelError("cannot build the client", hint="check --base-url")

    monkeypatch.setattr(run_module, "_build_model", broken)
    with pytest.raises(ModelError):
        execute(_settings(buggy_repo, tmp_path), "add() is wrong")
    assert seen, "the runtime was not opened beside the model client"
    assert set(glob.glob(copies)) == before
    data = json.loads((tmp_path / "t.json").read_text())
    assert (data["exit_status"], data["exit_code"]) == ("ModelError", ModelError.exit_code)


def test_a_failing_runtime_is_reported_after_the_client_is_built(tmp_path):
    settings = RunSettings(
        repo=tmp_path,
        model=ModelSettings(name="m", base_url="http://127.0.0.1:9/v1", max_retries=0),
        agent=AgentConfig(),
        runtime="nonsense",
        traj_path=tmp_path / "t.json",
    )
    with pytest.raises(Exception, match="unknown runtime"):
        execute(settings, "issue")
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["exit_status"] == "UsageError"


def test_an_interrupt_while_waiting_is_raised_once_the_opener_is_done():
    """Ctrl-C during result() is not swallowed, and the runtime is not abandoned."""
    release = threading.Event()
    closed: list[str] = []

    def opener() -> str:
        release.wait(5)
        return "runtime"

    opening = BackgroundOpen(opener, closed.append)
    main = threading.get_ident()

    def interrupt() -> None:
        import _thread

        assert threading.get_ident() != main
        _thread.interrupt_main()  # KeyboardInterrupt in the main thread, as Ctrl-C
        time.sleep(0.2)
        release.set()

    threading.Timer(0.1, interrupt).start()
    with pytest.raises(KeyboardInterrupt):
        opening.result()
    assert release.is_set()  # raised only after the opener finished
    opening.discard()
    assert closed == ["runtime"]
