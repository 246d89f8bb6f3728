"""LocalRuntime on real git repositories: the private copy, its diff, path safety."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from conftest import git

from cwm_agent.errors import RuntimeFailure, ToolError
from cwm_agent.runtimes.local import LocalRuntime

IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    """A repository with every kind of uncommitted state."""
    repo = tmp_path / "user repo"  # a space, to keep quoting honest
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text("*.log\nbuild/\n")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("def f():\n    return 1\n")
    (repo / "run.sh").write_text("#!/bin/sh\necho run\n")
    (repo / "run.sh").chmod(0o755)
    (repo / "doomed.txt").write_text("bye\n")
    os.symlink("src/app.py", repo / "app-link")
    git(repo, "add", "-A")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},vendor/sub")
    git(repo, "commit", "-qm", "init")
    (repo / "vendor" / "sub").mkdir(parents=True)  # a submodule's (empty) directory
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


@pytest.fixture
def rt(user_repo: Path):
    runtime = LocalRuntime.create(user_repo)
    yield runtime
    runtime.close()


def test_copy_is_the_working_tree(rt: LocalRuntime, user_repo: Path) -> None:
    root = Path(rt.root)
    assert root != user_repo and root.name == user_repo.name
    assert (root / "src" / "app.py").read_text().endswith("# uncommitted\n")
    assert (root / "notes.md").exists()
    assert not (root / "doomed.txt").exists()
    assert not (root / "debug.log").exists() and not (root / "build").exists()
    assert not (root / "vendor").exists() and not (root / "nested").exists()
    assert os.access(root / "run.sh", os.X_OK)
    assert os.readlink(root / "app-link") == "src/app.py"
    assert git(root, "status", "--porcelain") == ""
    assert git(root, "rev-parse", "HEAD").strip() == rt.base
    assert rt.base_dir == rt.root


def test_user_repo_untouched_by_a_full_session(user_repo: Path) -> None:
    before = snapshot(user_repo)
    with LocalRuntime.create(user_repo) as runtime:
        runtime.run("echo more >> src/app.py; rm notes.md; git add -A; git commit -qm agent", 5)
        runtime.write_file("new.py", b"print('new')\n")
        assert runtime.diff()
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


def test_diff_leaves_out_excluded_ignored_and_pycache(rt: LocalRuntime) -> None:
    rt.run(
        "echo p > fix.patch; mkdir -p tools/__pycache__; echo t > tools/trace.py; "
        "echo c > tools/__pycache__/m.pyc; echo l > new.log; echo keep > keep.txt",
        5,
    )
    patch = rt.diff(exclude=("fix.patch", f"{rt.root}/tools", "/outside/ignored"))
    assert "keep.txt" in patch
    for left_out in ("fix.patch", "tools/", "new.log", ".pyc"):
        assert left_out not in patch


def test_diff_does_not_touch_the_agents_index(rt: LocalRuntime) -> None:
    rt.run("echo staged > a.txt; git add a.txt; echo unstaged > b.txt", 5)
    index = Path(rt.root, ".git", "index").read_bytes()
    patch = rt.diff()
    assert "a.txt" in patch and "b.txt" in patch
    assert Path(rt.root, ".git", "index").read_bytes() == index
    assert git(Path(rt.root), "status", "--porcelain") == "A  a.txt\n?? b.txt\n"


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
        assert (clone / name).read_bytes() == Path(rt.root, name).read_bytes()
    assert not (clone / "app-link").exists()


def test_run_starts_in_root_and_restarts_there(rt: LocalRuntime) -> None:
    assert rt.run("pwd", 5).output == f"{rt.root}\n"
    assert rt.run("cd src && sleep 100", 0.5).timed_out
    assert rt.run("pwd", 5).output == f"{rt.root}\n"


def test_file_access_inside_root(rt: LocalRuntime) -> None:
    assert rt.read_file("src/app.py").startswith(b"def f")
    assert rt.read_file(f"{rt.root}/notes.md") == b"untracked\n"
    rt.write_file("src/new.py", b"x = 1\n")
    assert rt.exists("src/new.py") and not rt.exists("src/missing.py")
    assert rt.read_file("app-link") == rt.read_file("src/app.py")
    with pytest.raises(ToolError, match="parent directory does not exist"):
        rt.write_file("nodir/new.py", b"")
    with pytest.raises(ToolError, match="cannot read"):
        rt.read_file("missing.txt")


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "src/../../x", "out-link/hostname"])
def test_paths_outside_root_refused(rt: LocalRuntime, path: str) -> None:
    os.symlink("/etc", Path(rt.root, "out-link"))
    with pytest.raises(ToolError, match="outside the repository"):
        rt.read_file(path)
    with pytest.raises(ToolError, match="outside the repository"):
        rt.write_file(path, b"x")
    with pytest.raises(ToolError, match="outside the repository"):
        rt.exists(path)


def test_repository_without_commits(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "only.txt").write_text("x\n")
    with LocalRuntime.create(tmp_path / ".") as runtime:
        assert runtime.read_file("only.txt") == b"x\n"
        assert runtime.diff() == ""


def test_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure, match="not a git working tree") as info:
        LocalRuntime.create(tmp_path)
    assert info.value.hint
    with pytest.raises(RuntimeFailure, match="not found"):
        LocalRuntime.create(tmp_path / "missing")


def test_hostile_git_setup(
    user_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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
    for var in IDENTITY:
        monkeypatch.delenv(var, raising=False)
    before = snapshot(user_repo)
    with LocalRuntime.create(user_repo) as runtime:
        assert runtime.run("git rev-parse --show-toplevel", 5).output == f"{runtime.root}\n"
        assert runtime.run("echo x > f && git add f && git commit -qm agent", 5).exit_code == 0
        assert "diff --git a/f b/f" in runtime.diff()
    assert snapshot(user_repo) == before


def test_close_removes_copy_and_is_idempotent(user_repo: Path) -> None:
    runtime = LocalRuntime.create(user_repo)
    runtime.run("mkdir locked && touch locked/f && chmod 500 locked", 5)
    top = Path(runtime.root).parent
    runtime.close()
    runtime.close()
    assert not top.exists()
