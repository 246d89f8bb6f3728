"""LocalRuntime on real git repositories: the working copy, its history, its diff, paths.

Every test runs in both modes: ``auto`` (bubblewrap with an overlay of the user's tree,
where this machine has it) and ``none`` (a private checkout, no sandbox). The copy is
reached from the test through ``runtime.view``, the way the harness reaches it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from conftest import GIT_IDENTITY, git

from cwm_agent.errors import RuntimeFailure, ToolError
from cwm_agent.runtimes.gitcmd import run_git
from cwm_agent.runtimes.local import LocalRuntime

MODES = ["auto", "none"]


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    """A repository with history, every kind of uncommitted state, refs past HEAD."""
    repo = tmp_path / "user repo"  # a space, to keep quoting honest
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("*.log\nbuild/\n")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("def f():\n    return 0\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    (repo / "src" / "app.py").write_text("def f():\n    return 1\n")
    (repo / "run.sh").write_text("#!/bin/sh\necho run\n")
    (repo / "run.sh").chmod(0o755)
    (repo / "doomed.txt").write_text("bye\n")
    os.symlink("src/app.py", repo / "app-link")
    git(repo, "add", "-A")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},vendor/sub")
    git(repo, "commit", "-qm", "second")
    git(repo, "branch", "future")  # a branch and a tag past HEAD: not in the copy's history
    git(repo, "checkout", "-q", "future")
    (repo / "later.txt").write_text("later\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the future fix")
    git(repo, "tag", "v-future")
    git(repo, "checkout", "-q", "main")
    (repo / "vendor" / "sub").mkdir(parents=True, exist_ok=True)  # a submodule (empty)
    (repo / "src" / "app.py").write_text("def f():\n    return 2  # uncommitted\n")
    (repo / "doomed.txt").unlink()
    (repo / "notes.md").write_text("untracked\n")
    (repo / "debug.log").write_text("ignored\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.bin").write_bytes(b"\0ignored")
    nested = repo / "nested"
    nested.mkdir()
    git(nested, "init", "-q")
    return repo


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Content hash, mode and mtime of every entry, .git included."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            digest = (
                ""
                if path.is_dir() or path.is_symlink()
                else hashlib.sha1(path.read_bytes()).hexdigest()
            )
            state[str(path.relative_to(root))] = (digest, st.st_mode, st.st_mtime_ns)
    return state


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


@pytest.fixture
def rt(user_repo: Path, mode: str):
    runtime = LocalRuntime.create(user_repo, sandbox=mode)
    yield runtime
    runtime.close()


def sh(runtime: LocalRuntime, command: str) -> str:
    result = runtime.run(command, 20)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_copy_is_the_working_tree(rt: LocalRuntime, user_repo: Path, mode: str) -> None:
    view = Path(rt.view)
    assert rt.root != str(user_repo) and Path(rt.root).name == user_repo.name
    assert (view / "src" / "app.py").read_text().endswith("# uncommitted\n")
    assert (view / "notes.md").exists() and not (view / "doomed.txt").exists()
    assert os.access(view / "run.sh", os.X_OK)
    assert os.readlink(view / "app-link") == "src/app.py"
    # The overlay shows the tree as it is on disk; a checkout has the base's files only.
    # Whether there is one is what the runtime decided (not a guess made at import).
    overlay = rt.sandboxed and not any("full checkout" in n for n in rt.notices)
    assert (view / "debug.log").exists() == overlay
    assert (view / "nested").exists() == overlay
    # git sees what the user's own `git status` shows: here an untracked nested repository
    assert sh(rt, "git status --porcelain") == ("?? nested/\n" if overlay else "")
    assert sh(rt, "git rev-parse HEAD").strip() == rt.base
    unsandboxed = any(n.startswith("no sandbox") for n in rt.notices)
    assert rt.sandboxed == (mode == "auto" and not unsandboxed)


def test_the_copy_has_the_history_of_head_and_nothing_past_it(
    rt: LocalRuntime, user_repo: Path
) -> None:
    log = sh(rt, "git log --format=%s")
    assert log.splitlines()[1:] == ["second", "first"]  # above them: the uncommitted state
    assert log.startswith("cwm-agent baseline")
    assert sh(rt, "git log --all --format=%s").count("\n") == 3
    assert "future" not in sh(rt, "git branch -a; git tag")
    assert sh(rt, "git symbolic-ref HEAD") == "refs/heads/main\n"
    assert sh(rt, "git blame -s src/app.py | wc -l").strip() == "2"


def test_a_clean_repository_is_based_on_its_own_head(tmp_path: Path, mode: str) -> None:
    repo = tmp_path / "clean"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "only")
    head = git(repo, "rev-parse", "HEAD").strip()
    with LocalRuntime.create(repo, sandbox=mode) as runtime:
        assert runtime.base == head
        assert sh(runtime, "git log --format=%s") == "only\n"


def test_user_repo_untouched_by_a_full_session(user_repo: Path, mode: str) -> None:
    before = snapshot(user_repo)
    with LocalRuntime.create(user_repo, sandbox=mode) as runtime:
        runtime.run("echo more >> src/app.py; rm notes.md; git add -A; git commit -qm agent", 5)
        runtime.run("git checkout -q HEAD~1 -- src/app.py; git gc -q --prune=now", 20)
        runtime.write_file("new.py", b"print('new')\n")
        assert runtime.diff()
        sandboxed = runtime.sandboxed
    after = snapshot(user_repo)
    if not sandboxed:
        # Unsandboxed, the model's own git runs with the user's rights and may refresh the
        # timestamps of objects it finds again (never their content): compare without them.
        before, after = ({k: v[:2] for k, v in s.items()} for s in (before, after))
    assert after == before  # sandboxed: objects included, not even their timestamps


def test_the_harness_itself_never_touches_the_users_objects(user_repo: Path, mode: str) -> None:
    """Baseline, diffs and checkout leave even the objects' timestamps alone, sandbox or not."""
    before = snapshot(user_repo)
    with LocalRuntime.create(user_repo, sandbox=mode) as runtime:
        runtime.write_file("src/app.py", b"def f():\n    return 0\n")  # as in an old commit
        runtime.write_file("new.py", b"print('new')\n")
        assert runtime.diff() and runtime.diff()
    assert snapshot(user_repo) == before


def test_diff_covers_new_deleted_binary_and_mode(rt: LocalRuntime) -> None:
    assert rt.diff() == ""
    rt.run(
        "echo '    pass' >> src/app.py; rm run.sh; mkdir pkg; echo x > pkg/new.py; "
        "chmod +x notes.md; printf 'bin\\0ary' > blob.bin",
        5,
    )
    patch = rt.diff()
    assert "+    pass" in patch
    assert "deleted file mode 100755" in patch
    assert "new file mode 100644" in patch and "pkg/new.py" in patch
    assert "new mode 100755" in patch
    assert "GIT binary patch" in patch


def test_diff_leaves_out_excluded_ignored_pycache_and_nested_repos(rt: LocalRuntime) -> None:
    rt.run(
        "echo p > fix.patch; mkdir -p tools/__pycache__; echo t > tools/trace.py; "
        "echo c > tools/__pycache__/m.pyc; echo l > new.log; echo keep > keep.txt; "
        "mkdir other && git -C other init -q && echo o > other/file",
        5,
    )
    patch = rt.diff(exclude=("fix.patch", f"{rt.root}/tools", "/outside/ignored"))
    assert "keep.txt" in patch
    for left_out in ("fix.patch", "tools/", "new.log", ".pyc", "other", "nested"):
        assert left_out not in patch


def test_diff_does_not_touch_the_agents_git_state(rt: LocalRuntime) -> None:
    rt.run("echo staged > a.txt; git add a.txt; echo unstaged > b.txt", 5)
    index = sh(rt, "sha1sum .git/index")
    patch = rt.diff()
    assert "a.txt" in patch and "b.txt" in patch
    assert sh(rt, "sha1sum .git/index") == index
    status = sh(rt, "git status --porcelain").replace("?? nested/\n", "")
    assert status == "A  a.txt\n?? b.txt\n"


def test_the_base_is_out_of_the_commands_reach(rt: LocalRuntime) -> None:
    rt.run("echo '# changed' >> src/app.py", 5)
    before = rt.diff()
    rt.run("rm -rf .git && git init -q && git add -A && git commit -qm fake", 20)
    assert rt.diff() == before  # the harness's base did not move
    rt.run(f"rm -rf {rt.base_dir} 2>/dev/null; true", 5)
    if rt.sandboxed:
        assert Path(rt.base_dir, ".git").is_dir()  # read-only in the sandbox


def test_diff_applies_to_the_users_working_tree(
    rt: LocalRuntime, user_repo: Path, tmp_path: Path
) -> None:
    rt.run(
        "sed -i 's/return 2/return 3/' src/app.py; echo n >> notes.md; rm app-link; "
        "echo new > brand_new.txt; printf '\\0\\1' > data.bin",
        5,
    )
    patch = rt.diff()
    # A fresh clone plus the user's uncommitted state stands in for their working tree.
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(user_repo), str(clone))
    uncommitted = git(user_repo, "diff", "HEAD", "--binary")
    git(clone, "apply", input=uncommitted.encode())
    for name in git(user_repo, "ls-files", "--others", "--exclude-standard").split():
        if not name.endswith("/"):  # skip the nested repository
            shutil.copy2(user_repo / name, clone / name)
    git(clone, "apply", "--check", input=patch.encode())
    git(clone, "apply", input=patch.encode())
    for name in ("src/app.py", "notes.md", "brand_new.txt", "data.bin"):
        assert (clone / name).read_bytes() == Path(rt.view, name).read_bytes()
    assert not (clone / "app-link").exists()


def test_run_starts_in_root_and_restarts_there(rt: LocalRuntime) -> None:
    assert rt.run("pwd", 5).output == f"{rt.root}\n"
    assert rt.run("cd src && sleep 100", 0.5).timed_out
    assert rt.run("pwd", 5).output == f"{rt.root}\n"
    assert rt.cwd == rt.root
    rt.run("cd src", 5)
    assert rt.cwd == f"{rt.root}/src"


def test_file_access_inside_root(rt: LocalRuntime) -> None:
    assert rt.read_file("src/app.py").startswith(b"def f")
    assert rt.read_file(f"{rt.root}/notes.md") == b"untracked\n"
    rt.write_file("src/new.py", b"x = 1\n")
    assert rt.exists("src/new.py") and not rt.exists("src/missing.py")
    assert sh(rt, "cat src/new.py") == "x = 1\n"  # the commands see what the tools wrote
    assert rt.read_file("app-link") == rt.read_file("src/app.py")
    with pytest.raises(ToolError, match="parent directory does not exist"):
        rt.write_file("nodir/new.py", b"")
    with pytest.raises(ToolError, match="cannot read"):
        rt.read_file("missing.txt")


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "src/../../x", "out-link/hostname"])
def test_paths_outside_root_refused(rt: LocalRuntime, path: str) -> None:
    rt.run("ln -s /etc out-link", 5)
    with pytest.raises(ToolError, match="outside the repository"):
        rt.read_file(path)
    with pytest.raises(ToolError, match="outside the repository"):
        rt.write_file(path, b"x")
    with pytest.raises(ToolError, match="outside the repository"):
        rt.exists(path)


@pytest.mark.parametrize("path", ["a\0b", "bad\udc80\ud800"])
def test_malformed_paths_are_refused(rt: LocalRuntime, path: str) -> None:
    with pytest.raises(ToolError, match="not a valid file path"):
        rt.exists(path)


def test_repository_without_commits(tmp_path: Path, mode: str) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "only.txt").write_text("x\n")
    with LocalRuntime.create(tmp_path / ".", sandbox=mode) as runtime:
        assert runtime.read_file("only.txt") == b"x\n"
        assert runtime.diff() == ""
        assert sh(runtime, "git log --format=%s").startswith("cwm-agent baseline")


def test_a_subdirectory_works_on_the_enclosing_repository(user_repo: Path, mode: str) -> None:
    with LocalRuntime.create(user_repo / "src", sandbox=mode) as runtime:
        assert Path(runtime.root).name == user_repo.name
        assert any("inside the git repository" in n for n in runtime.notices)
        runtime.run("echo '# sub' >> src/app.py", 5)
        assert "b/src/app.py" in runtime.diff()


def test_submodules_are_named_in_a_notice(rt: LocalRuntime, user_repo: Path) -> None:
    assert not any("submodule" in n for n in rt.notices)  # no .gitmodules: nothing to say
    (user_repo / ".gitmodules").write_text('[submodule "sub"]\n\tpath = vendor/sub\n')
    with LocalRuntime.create(user_repo, sandbox="none") as runtime:
        assert any("vendor/sub" in n and "left out" in n for n in runtime.notices)


def test_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure, match="not a git working tree") as info:
        LocalRuntime.create(tmp_path)
    assert info.value.hint
    with pytest.raises(RuntimeFailure, match="not found"):
        LocalRuntime.create(tmp_path / "missing")


def test_hostile_git_setup(
    user_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """No identity, signing on, a failing global hook, GIT_DIR aimed at the user's repo."""
    home = tmp_path / "home"
    (home / "hooks").mkdir(parents=True)
    (home / "hooks" / "pre-commit").write_text("#!/bin/sh\nexit 1\n")
    (home / "hooks" / "pre-commit").chmod(0o755)
    (home / ".gitconfig").write_text(
        f"[commit]\n\tgpgsign = true\n[core]\n\thooksPath = {home}/hooks\n"
        "[diff]\n\tnoprefix = true\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_DIR", str(user_repo / ".git"))
    for var in GIT_IDENTITY:
        monkeypatch.delenv(var, raising=False)
    before = snapshot(user_repo)
    with LocalRuntime.create(user_repo, sandbox=mode) as runtime:
        assert runtime.run("git rev-parse --show-toplevel", 5).output == f"{runtime.root}\n"
        assert runtime.run("echo x > f && git add f && git commit -qm agent", 5).exit_code == 0
        assert "diff --git a/f b/f" in runtime.diff()
    assert snapshot(user_repo) == before


def test_the_harness_git_runs_no_filter_of_the_users_config_and_keeps_their_excludes(
    user_repo: Path, mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21 item 1, residual: the model's tree names a filter driver that the user's own
    git config defines; the harness's git, staging that tree beside the sandbox (on this
    machine), must not run it. What the user's config ignores stays ignored all the same."""
    from cwm_agent.runtimes import gitcmd

    ran = tmp_path / "filter-ran"  # under /tmp: the sandbox could not write it itself
    config = tmp_path / "xdg" / "git"
    config.mkdir(parents=True)
    excludes = tmp_path / "my-ignores"
    excludes.write_text("mine-only.txt\n")
    (config / "config").write_text(
        f'[filter "evil"]\n\tclean = touch {ran}; cat\n[core]\n\texcludesFile = {excludes}\n'
    )
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    gitcmd.user_excludes.cache_clear()
    (user_repo / "mine-only.txt").write_text("the user's own\n")
    try:
        with LocalRuntime.create(user_repo, sandbox=mode) as runtime:
            sh(runtime, "printf '* filter=evil\\n' > .gitattributes && echo x > new.txt")
            diff = runtime.diff()
            listed = run_git(runtime.base_dir, "ls-tree", "-r", "--name-only", runtime.base)
    finally:
        gitcmd.user_excludes.cache_clear()
    assert "+x" in diff and "+* filter=evil" in diff
    assert not ran.exists()  # was: the clean filter ran on this machine for every file
    assert b"mine-only.txt" not in listed and "mine-only.txt" not in diff


def test_close_removes_copy_and_is_idempotent(user_repo: Path, mode: str) -> None:
    runtime = LocalRuntime.create(user_repo, sandbox=mode)
    runtime.run("mkdir locked && touch locked/f && chmod 500 locked", 5)
    top = Path(runtime.root).parent
    runtime.close()
    runtime.close()
    assert not top.exists()
