"""Security round 3, inputs and templates: redaction that leaves the model's work alone,
CWM's prompts imported as text that stays text, templates that render in Jinja's sandbox,
batch records whose repo or id would reach outside OUTDIR or --repos-dir.

Through the real CLI in a subprocess, the model scripted over HTTP; git repositories real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from batch_support import Scripts, batch_args, fix_script, issue, make_repo, read_preds, write_jsonl
from conftest import cwm, run_cli, summary

from cwm_agent import prompt_sets, prompts
from cwm_agent.redaction import MARK, secret_values, worth_hiding
from cwm_agent.scripted_server import ScriptedServer
from cwm_agent.verification.store import MAX_FOLDER_NAME, folder_name

# -- 21.4: redaction rewrites only what is stored, shown or sent on ---------------------------

CHECKER = "def valid_password(password):\n    return len(password) > 8\n"
TOKEN = "ghp-7Rq2-SECRET-token"  # what a real token looks like: letters, digits and dashes
WITH_TOKEN = f'GITHUB = "{TOKEN}"\n'


def test_redaction_runs_what_the_model_wrote(buggy_repo, cli_env, tmp_path):
    """DB_PASSWORD=password is a word, not a key: the code keeps every `password`. A real
    token the model writes lands in the file as written, and nowhere the run stores or sends."""
    env = {**cli_env, "DB_PASSWORD": "password", "GITHUB_TOKEN": TOKEN}
    script = [
        cwm("create", f"mathlib/check.py\n{CHECKER}"),
        cwm("create", f"mathlib/conf.py\n{WITH_TOKEN}"),
        cwm("bash", "cat mathlib/check.py && git add -N . && git diff > fix.patch"),
        cwm("submit", "fix.patch"),
        summary(),
    ]
    traj = tmp_path / "t.json"
    with ScriptedServer(script) as server:
        args = ["run", str(buggy_repo), "--issue", "add a password check", "--model", "m"]
        result = run_cli([*args, "--base-url", server.base_url, "--traj", str(traj), "-vv"], env)
    assert result.returncode == 0, result.stderr
    assert "+def valid_password(password):" in result.stdout and MARK not in result.stdout
    assert f'+GITHUB = "{TOKEN}"' in result.stdout  # the file holds what the model wrote
    data = json.loads(traj.read_text())
    cat = data["steps"][2]["observation"]["output"]
    assert cat == CHECKER  # the model is shown its own file, not a mangled one
    stored = json.dumps([data["messages"], data["steps"]]) + result.stderr
    later = json.dumps([r.body for r in server.requests[2:]])
    assert TOKEN not in stored and TOKEN not in later and MARK in later


@pytest.mark.parametrize(
    ("value", "hidden"),
    [
        ("password", False), ("changeme", False), ("Password", False), ("hunter2", False),
        ("12345678", False), ("correcthorsebattery", False),
        ("sk-test-SECRET-7f3a9c", True), ("aws-SECRET", True), ("password123", True),
        ("abcdefghijklmnopqrstuvwxyz", True), ("c2VjcmV0LXZhbHVl", True),
    ],
)  # fmt: skip
def test_which_values_are_worth_hiding(value, hidden):
    assert worth_hiding(value) is hidden
    assert (value in secret_values({"DB_PASSWORD": value})) is hidden


# -- 21.5: import-cwm keeps every literal byte literal; templates render sandboxed ------------

HOSTILE = {
    "braces": "{{ cycler.__init__.__globals__.os.system('touch MARKER') }}",
    "tags": "{% for x in range(3) %}{{ x }}{% endfor %} and {%- if 1 %}",
    "comment": "{# not a comment #} {#",
    "endraw": "{% endraw %}{{ 7*7 }}{%- endraw -%}{%endraw%} {% raw %}",
    "mixed": "{{{ {%% }}} {%{%} %}}{ \r\n {",
}


def fake_cwm_checkout(root: Path, extra: str) -> Path:
    """The three files `import-cwm` reads, in the shape of CWM's release, with our own text;
    ``extra`` is appended to the issue-solving prompt as literal text."""
    literal = extra.replace("{", "{{").replace("}", "}}")  # as a str.format source holds it
    files = {
        "cwm/rl/envs/prompts.py": (
            f"CWM_THINKTAG_SYS_PROMPT = {'Think first. {description}. ' + literal!r}\n"
            'ENV_PROMPT = "# Environment\\n\\n{environment}\\n"\n'
            "def get_cwm_sys_prompt(think=True, use_think_tag=False, environment=None, "
            'description="You help"):\n    pass\n'
        ),
        "cwm/rl/envs/envs/swerl_tool.py": (
            'SYSTEM_UBUNTU = "Commands time out after {session_timeout}; {context_size} '
            'tokens; {max_turns} turns."\n'
            f"USER_ISSUE_SOLVING = {'Issue: {issue} in {repo_root}. ' + literal + ' end'!r}\n"
            'SUBMISSION_FEEDBACK_PROMPT = "Got: {pred_patch}"\n'
        ),
        "cwm/rl/envs/envs/swerl_testgen_tool.py": (
            f"USER_TESTGEN = {'Test {issue} at {repo_root}. ' + literal!r}\n"
            'SUBMISSION_FEEDBACK_PROMPT = "Test: {test}"\n'
        ),
    }
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_import_cwm_keeps_every_literal_byte_literal(tmp_path, cli_env, kind):
    text = HOSTILE[kind].replace("MARKER", str(tmp_path / "ran"))
    checkout = fake_cwm_checkout(tmp_path / "cwm", text)
    env = {**cli_env, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    result = run_cli(["prompts", "import-cwm", str(checkout)], env)
    assert result.returncode == 0, result.stderr
    chosen = prompt_sets.load("cwm", env)
    user = prompts.render("user", chosen, issue="I {{x}}", root="/r")
    assert user == f"Issue: I {{{{x}}}} in /r. {text} end".strip()
    repro = prompts.render("repro_user", chosen, issue="I", root="/r")
    assert repro == f"Test I at /r. {text}".strip()
    system = prompts.render("system", chosen, timeout=5, max_context=9, max_turns=3)
    assert system.startswith(f"Think first. You help. {text}".strip())
    assert "after 5-second; 9 tokens; 3 turns." in system
    assert not (tmp_path / "ran").exists()


def test_an_imported_prompt_reaches_the_model_as_text(buggy_repo, tmp_path, cli_env):
    marker = tmp_path / "ran"
    text = HOSTILE["braces"].replace("MARKER", str(marker))
    checkout = fake_cwm_checkout(tmp_path / "cwm", text)
    env = {**cli_env, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert run_cli(["prompts", "import-cwm", str(checkout)], env).returncode == 0
    with ScriptedServer([cwm("bash", "true")]) as server:
        args = ["run", str(buggy_repo), "--issue", "x", "--model", "m", "--prompts", "cwm"]
        result = run_cli([*args, "--base-url", server.base_url, "--max-steps", "1"], env)
    assert result.returncode == 1, result.stderr  # the step limit: no patch
    assert text in server.requests[0].body["messages"][1]["content"]
    assert not marker.exists()


def test_a_prompt_set_cannot_reach_python_from_its_templates(buggy_repo, tmp_path, cli_env):
    marker = tmp_path / "ran"
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "user.j2").write_text(
        f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}} {{{{ issue }}}}"
    )
    with ScriptedServer([cwm("bash", "true")]) as server:
        args = ["run", str(buggy_repo), "--issue", "x", "--model", "m", "--prompts", str(folder)]
        result = run_cli([*args, "--base-url", server.base_url], cli_env)
    assert result.returncode == 2, result.stderr
    assert f"the prompt template {folder / 'user.j2'} cannot be rendered" in result.stderr
    assert "SecurityError" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists() and server.requests == []


def test_a_bare_prompt_set_name_never_reads_the_current_folder(
    buggy_repo, tmp_path, cli_env, monkeypatch
):
    """A checkout holding cwm/system.j2 does not supply `--prompts cwm`: a bare name is only
    a bundled or imported set, a folder is given as a path (./cwm)."""
    checkout = tmp_path / "checkout"
    (checkout / "cwm").mkdir(parents=True)
    (checkout / "cwm" / "system.j2").write_text("CHECKOUT-SUPPLIED system prompt")
    monkeypatch.chdir(checkout)
    env = {**cli_env, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}  # no set imported
    shown = run_cli(["prompts", "show", "cwm"], env)
    assert shown.returncode == 2, shown.stderr
    assert "CHECKOUT-SUPPLIED" not in shown.stdout
    assert "no prompt set 'cwm'" in shown.stderr and "bundled" in shown.stderr
    assert "give a folder as ./cwm" in shown.stderr
    with ScriptedServer([cwm("bash", "true")]) as server:
        args = ["run", str(buggy_repo), "--issue", "x", "--model", "m", "--prompts", "cwm"]
        result = run_cli([*args, "--base-url", server.base_url, "--max-steps", "1"], env)
    assert result.returncode == 2, result.stderr
    assert "give a folder as ./cwm" in result.stderr and server.requests == []
    as_path = run_cli(["prompts", "show", "./cwm", "--template", "system"], env)
    assert as_path.returncode == 0, as_path.stderr
    assert "CHECKOUT-SUPPLIED system prompt" in as_path.stdout


# -- 21.6: a record's repo must be owner/name --------------------------------------------------


@pytest.mark.parametrize("repo", ["../private", "acme/../../private", "/abs/private", "a/b/c"])
def test_a_record_repo_that_is_not_owner_name_is_refused(tmp_path, cli_env, repo):
    private = tmp_path / "private"  # beside --repos-dir: what "../private" reaches
    base = make_repo(private)
    repos = tmp_path / "repos"
    repos.mkdir()
    record = {"instance_id": "x__y-1", "repo": repo, "base_commit": base,
              "problem_statement": issue("x__y-1")}  # fmt: skip
    records = write_jsonl(tmp_path / "records.jsonl", [record])
    with ScriptedServer(Scripts({"x__y-1": fix_script()})) as server:
        args = batch_args(server, records, tmp_path / "out", "--repos-dir", str(repos))
        result = run_cli(args, cli_env)
    assert result.returncode == 2, result.stderr
    assert f"{records}:1 (x__y-1): repo {repo!r} is not owner/name" in result.stderr
    assert server.requests == [] and not (tmp_path / "out" / "x__y-1").exists()


# -- 21.15: ids longer than a file name --------------------------------------------------------


def test_an_instance_id_longer_than_a_file_name_gets_a_safe_folder(tmp_path, cli_env):
    long_id = "acme__alpha-" + "x" * 300
    twin = "acme__alpha-" + "x" * 299 + "y"  # the same head: the hash keeps them apart
    base = make_repo(tmp_path / "repos" / "acme__alpha")
    records = [
        {"instance_id": iid, "repo": "acme/alpha", "base_commit": base,
         "problem_statement": issue(iid)}
        for iid in (long_id, twin)
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "records.jsonl", records)
    outdir = tmp_path / "out"
    scripts = Scripts({long_id: fix_script(), twin: fix_script()})
    with ScriptedServer(scripts) as server:
        args = batch_args(server, path, outdir, "--repos-dir", str(tmp_path / "repos"))
        first = run_cli(args, cli_env)
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert sorted(p["instance_id"] for p in read_preds(outdir)) == sorted([long_id, twin])
    folders = sorted(p.name for p in outdir.iterdir() if p.is_dir())
    assert folders == sorted([folder_name(long_id), folder_name(twin)])
    assert all(len(name) <= MAX_FOLDER_NAME for name in folders)
    with ScriptedServer(scripts) as server:  # a re-run finds them finished
        args = batch_args(server, path, outdir, "--repos-dir", str(tmp_path / "repos"))
        second = run_cli(args, cli_env)
        assert second.returncode == 0 and server.requests == [], second.stderr


def test_folder_names_are_stable_unique_and_short():
    assert folder_name("astropy__astropy-12907") == "astropy__astropy-12907"  # as before
    assert folder_name(".hidden") == "_.hidden"
    long_a, long_b = "a" * 300, "a" * 299 + "b"
    assert folder_name(long_a) == folder_name(long_a) != folder_name(long_b)
    assert len(folder_name("é" * 400).encode()) <= MAX_FOLDER_NAME


def test_a_batch_folder_of_issues_against_a_folder_that_is_not_git(tmp_path, cli_env):
    issues = tmp_path / "issues"
    issues.mkdir()
    (issues / "one.md").write_text("fix it\n")
    plain = tmp_path / "plain"
    plain.mkdir()
    args = ["batch", str(issues), "-o", str(tmp_path / "out"), "--repo", str(plain)]
    result = run_cli([*args, "--model", "m", "--base-url", "http://127.0.0.1:9/v1"], cli_env)
    assert result.returncode == 2, result.stderr
    assert f"{plain} is not a git repository" in result.stderr
