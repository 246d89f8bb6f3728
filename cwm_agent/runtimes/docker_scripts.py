"""The bash scripts the docker runtime runs in its internal session, and how they are filled.

A command file is sourced, so `return N` ends a script with status N (`exit` would end the
shell). @ROOT@ & co. are filled in already quoted (``fill``).
"""

from __future__ import annotations

import re
import shlex

from .baseline import BASE_REF
from .gitcmd import GIT_IDENTITY

GIT = "git -c safe.directory='*' -c core.hooksPath=/dev/null -c commit.gpgsign=false"
ID = " ".join(f"{k}={shlex.quote(v)}" for k, v in GIT_IDENTITY.items())

RESOLVE = """p=$(cd @ROOT@ && realpath -m -- @PATH@) || return 90
case $p in @ROOT@|@ROOT@/*) ;; *) return 91;; esac
"""
READ = """[ -d "$p" ] && { echo 'Is a directory'; return 92; }
[ -e "$p" ] || { echo 'No such file or directory'; return 92; }
base64 -- "$p"
"""
# The same bounded: a file over @LIMIT@ bytes is told by its size (status 93), and no more
# than @LIMIT@ + 1 bytes are sent (it may be growing).
READ_AT_MOST = """[ -d "$p" ] && { echo 'Is a directory'; return 92; }
[ -e "$p" ] || { echo 'No such file or directory'; return 92; }
n=$(wc -c < "$p") || return 92
[ "$n" -le @LIMIT@ ] || { echo "$n"; return 93; }
head -c @MORE@ -- "$p" | base64
"""
WRITE = """d=${p%/*}; [ -d "${d:-/}" ] || return 94
[ -d "$p" ] && { echo 'Is a directory'; return 92; }
base64 -d >| "$p" <<'@MARK@'
@DATA@@MARK@
"""
DIFF = f"""cd @ROOT@ && i=$(mktemp) && o=$(mktemp) || return 95
x=$({GIT} rev-parse --git-path index)
if [ -f "$x" ]; then cp -p -- "$x" "$i"; else rm -f -- "$i"; fi
if GIT_INDEX_FILE=$i {GIT} add -A >"$o" 2>&1 && GIT_INDEX_FILE=$i {GIT} diff --cached \\
  --binary --no-color --no-ext-diff --no-textconv --no-renames --src-prefix=a/ \\
  --dst-prefix=b/ @BASE@ -- . @SPECS@ >"$o" 2>"$i.e"
then base64 <"$o"; s=0; else cat -- "$o" "$i.e"; s=1; fi
rm -f -- "$i" "$o" "$i.e"; return $s
"""
# The repository already in the image (SWE-bench): only HEAD's ancestors stay reachable
# (no remotes, other branches, tags, stash or reflog, then unreachable objects pruned), so
# no later commit, the fix included, can be found; then the base is HEAD, or a commit of
# the working tree on top of it when the tree is not clean. Prints HEAD, then the base.
BASELINE = f"""cd @ROOT@ || return 1
{GIT} rev-parse --git-dir >/dev/null 2>&1 || {GIT} init -q || return 1
for kv in user.name=cwm-agent user.email=cwm-agent@localhost commit.gpgsign=false \\
  core.hooksPath=/dev/null gc.auto=0; do {GIT} config "${{kv%%=*}}" "${{kv#*=}}" || return 1; done
x=$({GIT} rev-parse --git-path info/exclude) && mkdir -p -- "${{x%/*}}" &&
  printf '\\n%s\\n' '__pycache__/' '*.py[cod]' '.pytest_cache/' >>"$x" || return 1
for r in $({GIT} remote); do {GIT} remote remove "$r" || return 1; done
cur=$({GIT} symbolic-ref -q HEAD)
{GIT} for-each-ref --format='%(refname)' | while read -r ref; do
  [ "$ref" = "$cur" ] || {GIT} update-ref -d "$ref" || exit 1; done || return 1
{GIT} reflog expire --expire=now --all && {GIT} gc -q --prune=now || return 1
head=$({GIT} rev-parse -q --verify HEAD) || head=-
{ID} {GIT} add -A >/dev/null || return 1
if [ "$head" = - ] || ! {GIT} diff --cached --quiet HEAD --; then
  {ID} {GIT} commit -q --no-verify --allow-empty -m 'cwm-agent baseline' || return 1; fi
{GIT} update-ref {BASE_REF} HEAD && echo "$head" && {GIT} rev-parse HEAD
"""
# SWE-bench's images keep the instance's dependencies in a conda env, activated the way
# the harness's own eval script does it.
SWEBENCH_ACTIVATE = "source /opt/miniconda3/bin/activate && conda activate testbed"
HAS_TESTBED = "[ -f /opt/miniconda3/bin/activate ] && [ -d /opt/miniconda3/envs/testbed ]"
EXPORT = f"""c=$({ID} {GIT} commit-tree '@BASE@^{{tree}}' -m 'cwm-agent base') &&
  {GIT} update-ref refs/cwm-agent/export "$c" && echo "$c"
"""


# The container's init (pid 1) and its children at start (the main process): what a
# clearing of the container must spare. Then: kill every other process but ourselves.
KEEP = """k=1; for p in /proc/[0-9]*; do read -r s <"$p/stat" 2>/dev/null || continue
  set -- ${s##*) }; [ "$2" = 1 ] && k="$k ${p#/proc/}"; done; echo "$k"
"""
KILL_ALL = """for p in /proc/[0-9]*; do p=${p#/proc/}; case " @KEEP@ $$ " in *" $p "*) ;;
  *) builtin kill -9 "$p" 2>/dev/null;; esac; done; true
"""
# What bash says when the container's process limit leaves it no new process.
FORK_FAILED = re.compile(r"fork: (?:retry: )?Resource temporarily unavailable|Cannot fork")


def fill(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", value)
    return template
