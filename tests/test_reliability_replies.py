"""Hostile model replies: the parser and whole agent steps never crash.

Every reply ends as exactly one of: one valid action (executed, its result sent back
as a ``tool`` message) or a ``FormatError: ...`` user message (the loop goes on).
The step-level fuzz runs the real Agent on a real LocalRuntime; only the model is an
in-process stand-in. The agent runs as whatever user the tests run as (root in CI),
so the fuzzed shell gets a PATH with a few harmless programs and replies naming
destructive builtins are skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import FakeModel, cwm, git
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_reliability_support import small_repo

from cwm_agent.agent import Agent
from cwm_agent.errors import FormatError
from cwm_agent.protocol import clean_text, parse_cwm_reply, parse_openai_calls
from cwm_agent.runtimes.local import LocalRuntime
from cwm_agent.settings import AgentConfig
from cwm_agent.trajectory import Trajectory
from cwm_agent.types import TOOL_NAMES, ModelReply, ToolCall

# ------------------------------------------------------------------------ strategies

TAGS = [
    "<think>", "</think>", "<think>\n", "\n</think>\n", "<tool: bash>", "<tool: edit>",
    "<tool: create>", "<tool: submit>", "<tool: frobnicate>", "<tool:", "<tool: >", "<tool:bash>",
    "</tool>", "</tool", "<tool: bash", "<<<<<<< SEARCH\n", "=======\n", ">>>>>>> REPLACE\n",
    "\n", "\r\n", "\x00", "README\n", "pkg/mod.py\n", "../escape.txt\n", "/etc/hostname\n",
]  # fmt: skip
SURROGATES = st.text(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, codec=None), min_size=1, max_size=3
)
INVALID_UTF8 = st.binary(min_size=1, max_size=12).map(
    lambda b: (b + b"\xff").decode("utf-8", "surrogateescape")  # what a byte-level reader makes
)
HUGE = st.sampled_from([1_000, 70_000, 400_000]).map(lambda n: "x\x00y" * (n // 3))
PIECES = st.one_of(st.sampled_from(TAGS), st.text(max_size=30), SURROGATES, INVALID_UTF8, HUGE)
REPLIES = st.lists(PIECES, max_size=14).map("".join)


LATIN1 = b"caf\xe9\n" + "".join(f"line{i}\n" for i in range(2, 9)).encode()


def well_formed(tool: str, body: str) -> str:
    return f"<tool: {tool}>\n{body}\n</tool>"


# ------------------------------------------------------------------------ the parser


@settings(max_examples=400, deadline=None)
@given(REPLIES)
def test_parser_gives_one_action_or_a_format_error(text):
    try:
        reasoning, action = parse_cwm_reply(text)
    except FormatError as exc:
        assert str(exc).strip()
        return
    assert isinstance(reasoning, str)
    if action is not None:
        assert action.tool in TOOL_NAMES and action.body.strip()
        assert all(isinstance(v, str) for v in action.args.values())
        after = text.split("</think>", 1)[-1]
        assert after.count("</tool>") >= 1


@settings(max_examples=150, deadline=None)
@given(st.text().filter(lambda t: "</think>" not in t), st.text(max_size=40))
def test_reasoning_never_hides_or_breaks_the_call(reasoning, body):
    """Whatever the reasoning holds (tags included), the one call after it is what counts."""
    assume("</tool>" not in body and "<tool:" not in body and body.strip())
    assume(body.strip("\r\n") == body)
    _, action = parse_cwm_reply(f"<think>{reasoning}</think>\n{well_formed('bash', body)}")
    assert action is not None and action.args == {"command": body}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<think>a</think>b</think>" + well_formed("bash", "ls"), "2 '</think>' tags"),
        ("</think></think></think>", "3 '</think>' tags"),
        ("<think>still thinking " + well_formed("bash", "ls"), "never closed"),
        ("  \n<think>" + "why " * 50_000, "never closed"),
        ("</think>" + well_formed("bash", "ls") * 3, "3 tool calls"),
        ("</think><tool: bash><tool: edit>x</tool></tool>", "2 tool calls"),
        ("</think><tool: bash>\nls\n", "not closed"),
        ("</think>ls\n</tool>", "malformed tool tag"),
        ("</think><tool: Bash>\nls\n</tool>", "Unknown tool 'Bash'"),
        ("</think><tool: bash>\n\x00\n</tool>", None),  # a NUL body is a command, not a crash
        ("</think><tool: bash>\n \n</tool>", "empty body"),
        # A well-shaped call whose body is bad: the edit tool reports it, as in CWM.
        ("</think><tool: edit>\nx.py\n</tool>", "edit"),
    ],
)
def test_known_bad_shapes(text, problem):
    if problem in (None, "edit"):
        assert parse_cwm_reply(text)[1].tool == (problem or "bash")
        return
    with pytest.raises(FormatError, match=problem):
        parse_cwm_reply(text)


def test_reasoning_without_think_close_but_with_a_call_is_accepted():
    """No <think> opening and no </think>: the whole reply is the call region."""
    _, action = parse_cwm_reply("I will list files.\n" + well_formed("bash", "ls"))
    assert action.args == {"command": "ls"}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.builds(
            ToolCall,
            id=st.text(max_size=8),
            name=st.one_of(st.sampled_from([*TOOL_NAMES, "Bash", ""]), st.text(max_size=8)),
            arguments=st.one_of(
                st.text(max_size=40),
                st.sampled_from(["{}", "[]", "null", '{"command": 1}', '{"path": null}', "[[[[[["]),
                st.dictionaries(
                    st.sampled_from(["command", "path", "search", "replace", "content", "x"]),
                    st.one_of(st.text(max_size=10), st.integers(), st.none()),
                ).map(json.dumps),
            ),
        ),
        max_size=4,
    )
)
def test_native_calls_give_one_action_or_error_results(calls):
    action, errors = parse_openai_calls(tuple(calls))
    ids = [call_id for call_id, _ in errors]
    if action is not None:
        assert action.tool in TOOL_NAMES and action.call_id == calls[0].id
        assert ids == [c.id for c in calls[1:]]
    else:
        assert ids == [c.id for c in calls]  # every call id gets an answer
    assert all(message.startswith("Error: ") for _, message in errors)


# ------------------------------------------------------------------------ whole steps


# Replies that could harm the machine the tests run on, were they ever generated.
_DANGEROUS = ("kill", "exec", "cd", "ulimit", "enable", ">/", "> /", "trap", "suspend", "rm")


@pytest.fixture(scope="module")
def fuzz_runtime():
    """One private copy for all examples; its shell finds only harmless programs."""
    top = Path(tempfile.mkdtemp(prefix="cwm-fuzz-"))
    bin_dir = top / "bin"
    bin_dir.mkdir()
    for program in ("bash", "cat", "ls", "head", "true", "false", "printf", "echo", "wc"):
        found = shutil.which(program)
        if found:
            os.symlink(found, bin_dir / program)
    repo = small_repo(top / "repo")
    (repo / "latin1.txt").write_bytes(LATIN1)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a file that is not UTF-8")
    # Unsandboxed: the shell's PATH is this fixture's guard, and the sandbox's own helper
    # (unshare) is looked up on the session's PATH, where it is not (runtimes/sandbox.py).
    runtime = LocalRuntime.create(repo, sandbox="none", env={"PATH": str(bin_dir)})
    yield runtime, top
    runtime.close()
    shutil.rmtree(top, ignore_errors=True)


def run_episode(runtime, top: Path, replies: list[ModelReply], tool_format: str = "cwm"):
    config = AgentConfig(
        tool_format=tool_format,
        max_steps=len(replies),
        timeout=10,
        max_output_tokens=1_000,
        max_format_errors=1_000,
        max_context=10**9,
        max_reply_tokens=1_000,
    )
    traj = Trajectory(top / "traj.json", "fuzz", {}, "Fuzz issue")
    result = Agent(FakeModel(replies), runtime, config, traj).run("Fuzz issue \udcff text")
    # The file on disk is complete, valid JSON, and says how the run ended.
    on_disk = json.loads((top / "traj.json").read_text(encoding="utf-8"))
    assert on_disk["exit_status"] == result.status
    return result, traj.data


def check_each_reply_had_one_outcome(data: dict, replies: list[ModelReply]) -> None:
    messages = data["messages"][2:]  # after the system prompt and the issue
    steps = data["steps"]
    assert len(steps) == len(replies) or data["exit_status"].startswith("submitted")
    at = 0
    for step, reply in zip(steps, replies, strict=False):
        assert messages[at]["role"] == "assistant"
        assert step["reply"] == clean_text(reply.content)
        answers = max(1, len(reply.tool_calls))
        following = messages[at + 1 : at + 1 + answers]
        at += 1 + answers
        if step["format_error"] is not None:
            assert step["action"] is None and step["observation"] is None
            fed_back = following[0]["content"]
            assert fed_back.startswith("FormatError: ") and step["format_error"] in fed_back
        elif step["action"] is not None:
            assert step["action"]["tool"] in TOOL_NAMES
            assert following[0]["role"] == "tool"
            assert following[0]["content"].startswith("<output>\n")
        else:  # a summary after a valid submission: the episode's last step
            assert data["submissions"] and step is steps[-1]
    for message in data["messages"]:
        message["content"].encode("utf-8")  # never a lone surrogate


FINISH = st.sampled_from(["stop", "length", None])


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.tuples(REPLIES, FINISH), min_size=1, max_size=5))
def test_fuzzed_steps_never_crash(fuzz_runtime, raw):
    assume(not any(word in text for text, _ in raw for word in _DANGEROUS))
    replies = [ModelReply(text, finish_reason=finish) for text, finish in raw]
    result, data = run_episode(*fuzz_runtime, replies)
    assert result.exit_code in (0, 1)
    check_each_reply_had_one_outcome(data, replies)


SAFE_CALLS = st.sampled_from(
    [
        cwm("bash", "printf 'a\\0b\\xff\\xfe\\n'"),
        cwm("bash", "cat"),  # waits on stdin: gets end-of-file
        cwm("bash", "head -c 200000 /dev/zero"),
        cwm("bash", "exit 3"),
        cwm("bash", "echo \udcff\ud800"),
        cwm("edit", "README\n<<<<<<< SEARCH\nhello\n=======\nhi \ud83d\ude00\n>>>>>>> REPLACE"),
        cwm("edit", "../escape.txt\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE"),
        cwm("create", "pkg/new_\udcff.py\nx = '\x00'"),
        cwm("create", "/tmp/outside.txt\nx"),
        cwm("create", "nul\x00name.py\nx"),
        cwm("submit", "missing.patch"),
        cwm("submit", "/etc/hostname"),
    ]
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.tuples(st.one_of(SAFE_CALLS, REPLIES), FINISH), min_size=1, max_size=6))
def test_valid_and_hostile_calls_mixed(fuzz_runtime, raw):
    """Well-formed calls with hostile contents between fuzzed replies: still one outcome each."""
    assume(not any(word in text for text, _ in raw for word in ("kill", "rm", ">/", "> /")))
    replies = [ModelReply(text, finish_reason=finish) for text, finish in raw]
    _, data = run_episode(*fuzz_runtime, replies)
    check_each_reply_had_one_outcome(data, replies)


NATIVE_CALLS = st.lists(
    st.builds(
        ToolCall,
        id=st.text(min_size=1, max_size=6),
        name=st.sampled_from([*TOOL_NAMES, "nope"]),
        arguments=st.one_of(
            st.text(max_size=30),
            st.sampled_from(
                [
                    '{"command": "echo hi"}',
                    '{"command": "printf \'\\\\xff\'"}',
                    '{"path": "../x", "content": "y"}',
                    '{"path": "README", "search": "hello", "replace": "bye"}',
                    '{"path": "/etc/hostname"}',
                    "{}",
                ]
            ),
        ),
    ),
    max_size=3,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.tuples(st.text(max_size=20), NATIVE_CALLS, FINISH), min_size=1, max_size=4))
def test_fuzzed_native_tool_calls_never_crash(fuzz_runtime, raw):
    assume(not any(word in text for text, _, _ in raw for word in _DANGEROUS))
    for _, calls, _ in raw:
        assume(not any(word in c.arguments for c in calls for word in _DANGEROUS))
    replies = [ModelReply(text, tuple(calls), finish_reason=f) for text, calls, f in raw]
    _, data = run_episode(*fuzz_runtime, replies, tool_format="openai")
    for message in data["messages"]:
        message["content"].encode("utf-8")
    # Every native call id got exactly one tool answer, so the next request stays valid.
    asked = [c["id"] for m in data["messages"] if m["role"] == "assistant"
             for c in m.get("tool_calls", [])]  # fmt: skip
    answered = [m["tool_call_id"] for m in data["messages"] if m["role"] == "tool"]
    assert sorted(asked) == sorted(answered)


# ------------------------------------------------------------------ regressions, by name


def test_lone_surrogates_in_a_reply_do_not_crash_the_step(fuzz_runtime):
    replies = [ModelReply(cwm("bash", "echo caf\ud800")), ModelReply(cwm("bash", "echo ok"))]
    _, data = run_episode(*fuzz_runtime, replies)
    assert data["steps"][0]["action"]["args"]["command"] == "echo caf\ufffd"
    assert "caf\ufffd" in data["steps"][0]["observation"]["output"]


def test_editing_a_file_that_is_not_utf8(fuzz_runtime):
    """The stray byte survives the edit; the model sees a readable stand-in for it.

    (The byte sits outside the diff's context: a patch holding non-UTF-8 bytes is a
    separate, known problem of the trajectory writer, see test_reliability_encoding.)
    """
    runtime, top = fuzz_runtime
    edit = "latin1.txt\n<<<<<<< SEARCH\nline7\n=======\nLINE7\n>>>>>>> REPLACE"
    undo = "latin1.txt\n<<<<<<< SEARCH\nLINE7\n=======\nline7\n>>>>>>> REPLACE"
    _, data = run_episode(runtime, top, [ModelReply(cwm("edit", edit))])
    assert data["steps"][0]["observation"]["ok"]
    assert runtime.read_file("latin1.txt") == LATIN1.replace(b"line7", b"LINE7")
    assert "caf\ufffd" in data["messages"][-1]["content"]
    run_episode(runtime, top, [ModelReply(cwm("edit", undo))])
    assert runtime.read_file("latin1.txt") == LATIN1


def test_truncated_reply_is_reported_as_cut_off(fuzz_runtime):
    cut = ModelReply("<think>\nLet me think about this at length" * 50, finish_reason="length")
    half_call = ModelReply("</think>\n<tool: bash>\nls -", finish_reason="length")
    _, data = run_episode(*fuzz_runtime, [cut, half_call])
    for step in data["steps"]:
        assert "cut off at the token limit" in step["format_error"]
