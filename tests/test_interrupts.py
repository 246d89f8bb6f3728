"""interrupts.py: Ctrl-C and SIGTERM held across a block, delivered right after it."""

from __future__ import annotations

import signal
import threading

import pytest

from cwm_agent.interrupts import interrupts_held


def test_signals_wait_for_the_end_of_the_block_then_run_their_handlers():
    seen: list[str] = []

    def on_term(signum, frame):
        seen.append("TERM handler")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with pytest.raises(KeyboardInterrupt):
            with interrupts_held():
                signal.raise_signal(signal.SIGTERM)
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGTERM)  # the same signal twice: delivered once
                seen.append("block finished")
        assert seen == ["block finished", "TERM handler"]
        assert signal.getsignal(signal.SIGTERM) is on_term  # handlers restored
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_nothing_held_is_nothing_delivered():
    with interrupts_held():
        value = 1
    assert value == 1 and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_outside_the_main_thread_it_changes_nothing():
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with interrupts_held():
                pass
        except BaseException as exc:  # signal.signal would raise ValueError here
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert errors == []
