"""The reply parser against CWM's: wherever CWM's environment accepts exactly one call
(its single-``</think>`` rule, then ``parse_tool_calls``, then a known tool), cwm-agent
runs the same tool with the same body. (Where CWM refuses, cwm-agent may be lenient: a
reply without ``</think>``, spaces around the tool name; see docs/CWM.md.)"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from cwm_agent.errors import FormatError
from cwm_agent.protocol import parse_cwm_reply
from cwm_agent.types import TOOL_NAMES

FRAGMENTS = [
    "<think>", "</think>", "\n", "\r", " ", "\t", "<tool: bash>", "<tool: edit>",
    "<tool: create>", "<tool: submit>", "<tool: frob>", "<tool:\tbash>", "<tool:\nsubmit>",
    "<tool:bash>", "<tool:  bash>", "<tool: bash >", "<tool:", "</tool>", "\n</tool>",
    "</tool", "ls -la", "a.py", "<<<<<<< SEARCH", "=======", ">>>>>>> REPLACE", "x = 1",
    "<tool: Bash>", "##",
]  # fmt: skip


def cwm_accepts(text: str) -> tuple[str, str] | None:
    """(tool, body) when CWM's SWE environment (think-tag mode) would run a tool call."""
    from cwm.rl.swerl.default_tools import parse_tool_calls
    from cwm.rl.swerl.errors import FormatError as CwmFormatError

    if text.count("</think>") != 1:
        return None
    answer = text.split("</think>", 1)[-1]
    try:
        name, body = parse_tool_calls(answer)[0]
    except CwmFormatError:
        return None
    return (name, body) if name in TOOL_NAMES else None  # else CWM's NoSuchToolError


def assert_same_call(text: str) -> bool:
    """Where CWM runs a call, ours runs the same; True when CWM accepted ``text``."""
    accepted = cwm_accepts(text)
    if accepted is None:
        return False
    name, body = accepted
    try:
        _, action = parse_cwm_reply(text)
    except FormatError as exc:
        raise AssertionError(f"CWM runs {name} with {body!r}; cwm-agent refused: {exc}") from None
    assert action is not None, f"CWM runs {name}; cwm-agent saw no call in {text!r}"
    assert (action.tool, action.body) == (name, body), text
    expected = {
        "bash": {"command": body},
        "create": {"path": body.split("\n", 1)[0].strip(), "content": body.partition("\n")[2]},
        "submit": {"path": body.strip()},
    }
    if name in expected:
        assert dict(action.args) == expected[name]
    else:  # edit: parsed, or the raw body for the edit tool to report on
        assert "search" in action.args or action.args["body"] == body
    return True


def structured(rng: random.Random) -> str:
    """A reply shaped like CWM's, with random pieces where CWM's grammar is loose."""

    def junk(n: int) -> str:
        plain = "ab\n\r\t <>/:="
        return "".join(
            rng.choice(FRAGMENTS) if rng.random() < 0.1 else rng.choice(plain)
            for _ in range(rng.randrange(n))
        )

    reasoning = junk(6).replace("</think>", "")
    name = rng.choice([*TOOL_NAMES, *TOOL_NAMES, "frob"])
    space = rng.choice([" ", " ", " ", "\t", "\n", "", "  "])
    body = junk(8)
    close = rng.choice(["\n</tool>", "\n</tool>", "</tool>", "\r\n</tool>"])
    after = rng.choice(["", "", "\n", junk(3)])
    think = rng.choice(["<think>\n", "<think>", ""])
    return f"{think}{reasoning}</think>{junk(3)}<tool:{space}{name}>\n{body}{close}{after}"


def test_every_call_cwm_accepts_runs_the_same_here():
    rng = random.Random(20250101)
    replies = [structured(rng) for _ in range(4000)]
    accepted = [cwm_accepts(text) for text in replies if assert_same_call(text)]
    # The corpus reaches CWM's accepted calls, of every tool, not only its refusals.
    assert len(accepted) > 1000
    assert {name for name, _ in accepted} == set(TOOL_NAMES)  # type: ignore[misc]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=16))
def test_fuzzed_replies(pieces):
    assert_same_call("".join(pieces))


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=40).filter(lambda t: "</think>" not in t),
    st.sampled_from(TOOL_NAMES),
    st.text(max_size=60),
)
def test_any_body_cwm_accepts_is_the_body_here(reasoning, name, body):
    assert_same_call(f"<think>{reasoning}</think>\n<tool: {name}>\n{body}\n</tool>")


def test_the_corpus_covers_what_matters():
    """The cases the hand-written parser is most likely to get wrong, one by one."""
    cases = [
        "</think>\n<tool: bash>\nls\n</tool>",
        "<think>\nx\n</think>\nI will look.\n<tool: edit>\na.py\nno markers\n</tool>\nthanks",
        "</think><tool:\tsubmit>\n fix.patch\r\n</tool>",
        "</think><tool:\nbash>\n\n\nls\n\n\n</tool>",
        "</think><tool: create>\nnew.py\nline\n\n</tool>",
        "</think><tool: bash>\necho '<think>'\n</tool>",
    ]
    assert all(assert_same_call(text) for text in cases)
