"""Reply parsing (both tool formats), result rendering and middle truncation."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cwm_agent.editing import parse_edit_body
from cwm_agent.errors import FormatError, ToolError
from cwm_agent.protocol import (
    OPENAI_TOOLS,
    parse_cwm_reply,
    parse_openai_calls,
    render_tool_result,
    truncate_middle,
)
from cwm_agent.types import ToolCall


def reply(call: str, think: str = "<think>\nI should look.\n") -> str:
    return f"{think}</think>\n\n{call}"


# ------------------------------------------------------------------------------ CWM format


def test_bash_call_with_reasoning():
    reasoning, action = parse_cwm_reply(reply("<tool: bash>\nls -la src/\n</tool>"))
    assert reasoning == "I should look."
    assert action.tool == "bash"
    assert action.args == {"command": "ls -la src/"}
    assert action.body == "ls -la src/"


def test_reply_without_think_section_is_accepted():
    reasoning, action = parse_cwm_reply("<tool: bash>\npwd\n</tool>")
    assert reasoning == ""
    assert action.args == {"command": "pwd"}


def test_body_kept_exact_except_one_newline_each_side():
    body = "\n  cd src\n\tpython -c 'print(1)'  \n\n"
    _, action = parse_cwm_reply(reply(f"<tool: bash>\n{body}\n</tool>"))
    assert action.args["command"] == body


def test_no_call_returns_none_for_the_caller_to_decide():
    reasoning, action = parse_cwm_reply("<think>done</think>\n## Issue Summary\nFixed it.")
    assert (reasoning, action) == ("done", None)


def test_tool_tag_inside_reasoning_does_not_count():
    text = "<think>maybe <tool: bash>\nrm -rf /\n</tool> no</think>\n<tool: bash>\nls\n</tool>"
    _, action = parse_cwm_reply(text)
    assert action.args == {"command": "ls"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (reply("<tool: bash>\nls\n</tool>\n<tool: bash>\npwd\n</tool>"), "Found 2 tool calls"),
        (reply("<tool: python>\nprint(1)\n</tool>"), "Unknown tool 'python'."),
        (reply("<tool: bash>\n\n</tool>"), "The bash call has an empty body."),
        (reply("<tool: bash>\nls\n"), "The tool call is not closed"),
        ("a</think>b</think>\n<tool: bash>\nls\n</tool>", "Found 2 '</think>' tags"),
        ("<think>thinking forever <tool: bash>\nls\n</tool>", "never closed"),
        (reply("ls\n</tool>"), "malformed tool tag"),
        (reply("<tool: bash>\nls\n<tool: bash>\npwd\n</tool>"), "Found 2 tool calls"),
    ],
)
def test_format_errors_say_what_was_wrong_and_restate_the_format(text, problem):
    with pytest.raises(FormatError) as caught:
        parse_cwm_reply(text)
    message = str(caught.value)
    assert problem in message.split("\n\n")[0]
    assert "<tool: " in message and "</tool>" in message


def test_empty_body_error_message_is_exact():
    with pytest.raises(FormatError) as caught:
        parse_cwm_reply(reply("<tool: bash>\n   \n</tool>"))
    assert str(caught.value) == (
        "The bash call has an empty body.\n\n"
        "Expected format: your reasoning, then </think>, then exactly one tool call, e.g.\n"
        "<tool: bash>\nls -la\n</tool>\n"
        "Available tools: bash, edit, create, submit."
    )


EDIT_BODY = """src/app.py
<<<<<<< SEARCH
def f():
    return 1
=======
def f():
    return 2
>>>>>>> REPLACE"""


def test_edit_body_to_args():
    """Search and replacement are the text between the markers, without the line break
    before the next marker (CWM's plugin reads them so)."""
    _, action = parse_cwm_reply(reply(f"<tool: edit>\n{EDIT_BODY}\n</tool>"))
    assert action.args == {
        "path": "src/app.py",
        "search": "def f():\n    return 1",
        "replace": "def f():\n    return 2",
    }


def test_edit_body_empty_texts_are_one_empty_line():
    blank = "a.py\n<<<<<<< SEARCH\nx = 1\n=======\n\n>>>>>>> REPLACE"
    assert parse_cwm_reply(reply(f"<tool: edit>\n{blank}\n</tool>"))[1].args["replace"] == ""
    two = "a.py\n<<<<<<< SEARCH\nx = 1\n\n=======\n\n\n>>>>>>> REPLACE"
    args = parse_cwm_reply(reply(f"<tool: edit>\n{two}\n</tool>"))[1].args
    assert (args["search"], args["replace"]) == ("x = 1\n", "\n")


def test_edit_body_as_cwm_reads_it():
    """The first divider ends the search; text before the path line and after the block
    is not read; the path is the line right before SEARCH."""
    body = "Here is my edit:\na.py\n<<<<<<< SEARCH\na\n=======\nb\n=======\nc\n>>>>>>> REPLACE!\nok"
    assert parse_edit_body(body) == {"path": "a.py", "search": "a", "replace": "b\n=======\nc"}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE", "must start with the file path"),
        ("a.py\nold\nnew", "has no '<<<<<<< SEARCH' line"),
        ("a.py\n<<<<<<< SEARCH \na\n=======\nb\n>>>>>>> REPLACE", "nothing after the marker"),
        ("a.py\n<<<<<<< SEARCH\na\nb\n>>>>>>> REPLACE", "no '=======' line"),
        ("a.py\n<<<<<<< SEARCH\na\n=======\nb", "has no '>>>>>>> REPLACE' line"),
        ("a.py\n<<<<<<< SEARCH\na\n=======\n>>>>>>> REPLACE", "written as one empty line"),
        (EDIT_BODY + "\n" + EDIT_BODY.split("\n", 1)[1], "has 2 SEARCH/REPLACE blocks"),
    ],
)
def test_malformed_edit_bodies_are_the_edit_tools_business(body, problem):
    """As in CWM: the call is well formed, so it is the edit tool that reports the body
    (as its result, with the budget), not a FormatError."""
    _, action = parse_cwm_reply(reply(f"<tool: edit>\n{body}\n</tool>"))
    assert action.tool == "edit" and action.args["body"] == body and "search" not in action.args
    with pytest.raises(ToolError) as caught:
        parse_edit_body(body)
    assert problem in str(caught.value)
    assert str(caught.value).startswith("No change was made: ")
    assert "Expected edit format:" in str(caught.value)


def test_create_and_submit_bodies():
    _, create = parse_cwm_reply(reply("<tool: create>\nnew.py\nx = 1\ny = 2\n</tool>"))
    assert create.args == {"path": "new.py", "content": "x = 1\ny = 2"}
    _, final_newline = parse_cwm_reply(reply("<tool: create>\nnew.py\nx = 1\n\n</tool>"))
    assert final_newline.args == {"path": "new.py", "content": "x = 1\n"}
    _, empty = parse_cwm_reply(reply("<tool: create>\nempty.txt\n</tool>"))
    assert empty.args == {"path": "empty.txt", "content": ""}
    _, submit = parse_cwm_reply(reply("<tool: submit>\n fix.patch \n</tool>"))
    assert submit.args == {"path": "fix.patch"}
    # Two lines are a path that does not exist: the submit tool says so, not the parser.
    _, two = parse_cwm_reply(reply("<tool: submit>\na.patch\nb.patch\n</tool>"))
    assert two.args == {"path": "a.patch\nb.patch"}


def test_body_keeps_a_carriage_return_before_the_closing_line():
    """Only the "\\n" before </tool> ends the body, as in CWM's parser."""
    _, action = parse_cwm_reply(reply("<tool: bash>\r\nls\r\n</tool>"))
    assert action.args == {"command": "ls\r"}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=40),
            st.sampled_from(
                [
                    "<think>",
                    "</think>",
                    "<tool: bash>",
                    "<tool: edit>",
                    "</tool>",
                    "<tool:",
                    "\n",
                    "\x00",
                    "<<<<<<< SEARCH\n",
                    "=======\n",
                    ">>>>>>> REPLACE",
                    "<tool: >",
                ]
            ),  # fmt: skip
        ),
        max_size=20,
    ).map("".join)
)
def test_fuzz_only_format_errors_escape(text):
    try:
        reasoning, action = parse_cwm_reply(text)
    except FormatError as exc:
        assert str(exc)
    else:
        assert isinstance(reasoning, str)
        assert action is None or action.tool in {"bash", "edit", "create", "submit"}


def test_huge_body_and_nul_bytes():
    body = "echo " + "x\x00" * 200_000
    _, action = parse_cwm_reply(reply(f"<tool: bash>\n{body}\n</tool>"))
    assert action.args["command"] == body


# --------------------------------------------------------------------------- openai format


def call(name: str, args: object, call_id: str = "c1") -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=json.dumps(args))


def test_openai_first_call_becomes_action_and_extras_get_errors():
    action, errors = parse_openai_calls(
        (call("bash", {"command": "ls"}), call("submit", {}, "c2"), call("bash", {}, "c3"))
    )
    assert action.tool == "bash" and action.args == {"command": "ls"}
    assert action.call_id == "c1"
    assert [cid for cid, _ in errors] == ["c2", "c3"]
    assert "only one tool call per reply" in errors[0][1]


def test_openai_submit_path_is_optional():
    assert parse_openai_calls((call("submit", {}),))[0].args == {}
    assert parse_openai_calls((call("submit", {"path": "f.patch"}),))[0].args == {"path": "f.patch"}


@pytest.mark.parametrize(
    ("tool_call", "problem"),
    [
        (ToolCall("c1", "bash", "{not json"), "not valid JSON"),
        (ToolCall("c1", "bash", "[1]"), "must be a JSON object"),
        (call("edit", {"path": "a.py", "search": "x"}), "needs the string argument 'replace'"),
        (call("python", {"code": "1"}), "unknown tool 'python'"),
    ],
)
def test_openai_bad_first_call_becomes_an_error_result(tool_call, problem):
    action, errors = parse_openai_calls((tool_call,))
    assert action is None
    assert errors[0][0] == "c1" and problem in errors[0][1]


def test_openai_no_calls():
    assert parse_openai_calls(()) == (None, [])


def test_openai_tool_schemas():
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in OPENAI_TOOLS}
    assert set(schemas) == {"bash", "edit", "create", "submit"}
    assert schemas["bash"]["required"] == ["command"]
    assert schemas["edit"]["required"] == ["path", "search", "replace"]
    assert schemas["create"]["required"] == ["path", "content"]
    assert schemas["submit"]["required"] == [] and "path" in schemas["submit"]["properties"]


# ---------------------------------------------------------------------- results, truncation


def test_render_tool_result_exact():
    """The output as it is: a final newline leaves a blank line before </output>."""
    assert render_tool_result("hello\n", 12, 3400) == (
        "<output>\nhello\n\n</output>\n\n<budget>\n* Remaining turns: 12\n"
        "* Remaining tokens: 3400\n</budget>"
    )
    assert render_tool_result("", 1, 2).startswith("<output>\n\n</output>\n\n<budget>")
    assert render_tool_result("hi", 1, 2).startswith("<output>\nhi\n</output>\n\n")


def test_truncate_middle_keeps_head_and_tail_and_says_how_much():
    text = "".join(f"line {i}\n" for i in range(1000))
    out = truncate_middle(text, 200)
    head, chars, lines, tail = re.fullmatch(
        r"(.*)\[\.\.\. ([\d,]+) characters \(([\d,]+) lines\) cut \.\.\.\]\n(.*)", out, re.S
    ).groups()
    assert head.startswith("line 0\n") and tail.endswith("line 999\n")
    assert head.endswith("\n") and tail.startswith("line ")  # cut on line boundaries
    cut = int(chars.replace(",", ""))
    assert len(head) + cut + len(tail) == len(text)
    assert int(lines) == text[len(head) : len(head) + cut].count("\n")
    assert len(out) < 300


def test_truncate_middle_short_text_unchanged_and_no_newlines():
    assert truncate_middle("abc", 10) == "abc"
    out = truncate_middle("x" * 1000, 100)
    assert out.startswith("x" * 50) and out.endswith("x" * 50)
    assert "[... 900 characters (0 lines) cut ...]" in out
