"""The bash of the warm runtime (``warm.py``): snapshot, reset, fingerprint, kill.

Run through any command runner (a runtime's session, where they are sourced, or a
container's ``bash -c``): each script defines functions and calls one, so a failure is a
return status, never the end of a shell. Needs bash, git, GNU find/sort/comm/tar and
sha1sum (every SWE-bench image and Debian have them). @ROOT@ (quoted), @TOKEN@, @PIDS@
and @WATCH@ (quoted paths) are filled in by ``fill``.

What the fingerprint covers, and why each part:

- ``T``: every file under the root but ``.git`` (tracked, untracked and ignored alike),
  content, executable bit and symlinks, as a tree hash of a private git repository kept
  in ``.git/cwm-warm-TOKEN`` (objects borrowed from the repository's own through
  alternates). Left out: Python's caches (``__pycache__``, ``*.pyc``, ``.pytest_cache``:
  Python revalidates them, and the reset deletes the ones written after the snapshot) and
  environments (``.tox``, ``.nox``, ``.venv``, ``venv``, ``node_modules``: too large to
  snapshot; their files count by size and mtime in ``L``).
- ``L``: every path with its type and full mode bits (a ``chmod 000``, an empty folder);
  files over 16 MiB, left out of ``T``, by size and mtime.
- ``G``: ``.git`` itself except its objects (config, HEAD, refs, index, hooks), and the
  names and sizes of its packs.
- ``W``: folders outside the root the caller watches (by default the box's Pythons'
  site-packages: ``warm.site_packages``), two levels deep (packages installed or removed,
  ``.pth`` and ``.egg-link`` files): paths, types, modes and the sizes of files (not of
  folders: a bytecode cache written below one may grow it); a change there cannot be
  undone, only seen.
- ``P``: processes that were not there at the snapshot (where the runtime has its own
  process namespace), once the runs' own are killed.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

MARK_VAR = "CWM_WARM_RUN"  # every process of a run inherits it: how stragglers are found
SCRATCH = "cwm-warm-"  # + token, inside the repository's .git (survives a shell restart)
# Files larger than this are not copied into the snapshot (a dataset, a build product: the
# disk would double); they count by size and time, and a change to one costs a fresh runtime.
BIG_KIB = 16 * 1024

_COMMON = r"""
__w_s=@ROOT@/.git/cwm-warm-@TOKEN@
__w_git() {
  GIT_DIR="$__w_s/git" GIT_INDEX_FILE="$__w_s/index" GIT_WORK_TREE=@ROOT@ \
  GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null HOME="$__w_s" GIT_OPTIONAL_LOCKS=0 \
  git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c safe.directory='*' "$@"
}
__w_add() {  # big files (listed at the snapshot) count by size and time only
  local big=() p
  while IFS= read -r -d '' p; do big+=(":(exclude,literal)$p"); done <"$__w_s/big"
  ( cd @ROOT@ && __w_git add -A -f -- . ':(exclude,glob)**/__pycache__/**' \
    ':(exclude,glob)**/*.py[co]' ':(exclude,glob)**/.pytest_cache/**' \
    ':(exclude,glob)**/.tox/**' ':(exclude,glob)**/.nox/**' ':(exclude,glob)**/.venv/**' \
    ':(exclude,glob)**/venv/**' ':(exclude,glob)**/node_modules/**' "${big[@]}" )
}
__w_bigstat() {
  [ -s "$__w_s/big" ] || { echo -; return; }
  ( cd @ROOT@ && xargs -0 stat -c '%n//%s %Y' -- <"$__w_s/big" 2>&1 ) | sha1sum
}
__w_list() {  # every path (NUL-separated, sorted): path//type mode [size mtime]
  ( cd @ROOT@ && find . \( -path ./.git -o -name __pycache__ -o -name .pytest_cache \
      -o -name '*.py[co]' \) -prune -o \( -path '*/.tox/*' -o -path '*/.nox/*' \
      -o -path '*/.venv/*' -o -path '*/venv/*' -o -path '*/node_modules/*' \) \
      -printf '%p//%y %m %s %T@\0' -o -printf '%p//%y %m\0' ) | LC_ALL=C sort -z
}
__w_gitstate() {
  ( cd @ROOT@/.git && tar --sort=name --numeric-owner --exclude=./objects \
      --exclude='./cwm-warm-*' -cf - . | sha1sum
    find objects/pack -maxdepth 1 -printf '%f %s\n' 2>/dev/null | LC_ALL=C sort ) | sha1sum
}
__w_watch() {
  local w=(@WATCH@)
  [ ${#w[@]} -gt 0 ] || { echo -; return; }
  find "${w[@]}" -maxdepth 2 -name __pycache__ -prune -o -type d -printf '%p//%y %m\0' \
    -o -printf '%p//%y %m %s\0' 2>/dev/null | LC_ALL=C sort -z | sha1sum
}
__w_procs() {  # pid:starttime of live processes but this one and its ancestors
  local p s q=$BASHPID anc=" "
  while [ -n "$q" ] && [ "$q" != 0 ]; do
    anc="$anc$q "; read -r s <"/proc/$q/stat" || break; s=${s##*) }; set -- $s; q=$2
  done
  for p in /proc/[0-9]*; do
    read -r s <"$p/stat" 2>/dev/null || continue
    s=${s##*) }; set -- $s
    [ "$1" = Z ] && continue
    case $anc in *" ${p#/proc/} "*) continue ;; esac
    printf '%s:%s\n' "${p#/proc/}" "${20}"
  done
}
__w_strays() {  # processes that were not there at the snapshot: "pid cmdline" lines
  [ @PIDS@ = 1 ] || return 0
  __w_procs >"$__w_s/procs.now"
  LC_ALL=C sort -o "$__w_s/procs.now" "$__w_s/procs.now"
  local line
  LC_ALL=C comm -13 "$__w_s/procs.base" "$__w_s/procs.now" | while read -r line; do
    printf '%s %s\n' "${line%%:*}" "$(tr '\0' ' ' <"/proc/${line%%:*}/cmdline" 2>/dev/null)"
  done
}
__w_kill() {  # the runs' processes, wherever they went (setsid, daemons)
  local round f p found
  for round in 1 2 3 4 5; do
    found=$(grep -lzxF "@MARKVAR@=@TOKEN@" /proc/[0-9]*/environ 2>/dev/null)
    [ -n "$found" ] || return 0
    for f in $found; do
      p=${f#/proc/}; p=${p%/environ}
      [ "$p" = "$BASHPID" ] || builtin kill -9 "$p" 2>/dev/null
    done
    sleep 0.05
  done
}
__w_fingerprint() {
  local t l g w p
  __w_add >"$__w_s/add.log" 2>&1 \
    || { echo "git add failed: $(tail -c 300 "$__w_s/add.log")"; return 1; }
  t=$(__w_git write-tree) || return 1
  __w_list >"$__w_s/list.now"
  l=$( (cat "$__w_s/list.now"; __w_bigstat) | sha1sum); g=$(__w_gitstate); w=$(__w_watch)
  __w_strays >"$__w_s/strays"; p=$(wc -l <"$__w_s/strays")
  echo "T=$t L=${l%% *} G=${g%% *} W=${w%% *} P=$p"
}
"""

PREPARE = (
    _COMMON
    + r"""
__w_prepare() {
  [ -d @ROOT@/.git ] || { echo "@ROOT@/.git is not a folder"; return 3; }
  rm -rf "$__w_s" && mkdir -p "$__w_s" || return 3
  env -u GIT_DIR -u GIT_WORK_TREE -u GIT_INDEX_FILE git init -q --bare "$__w_s/git" || return 3
  [ -d @ROOT@/.git/objects ] && echo @ROOT@/.git/objects >"$__w_s/git/objects/info/alternates"
  # No conversion of any kind: the files go back byte for byte.
  printf '* -text !eol -filter -ident !working-tree-encoding\n' >"$__w_s/git/info/attributes"
  __w_git config core.bare false && __w_git config core.compression 0 \
    && __w_git config core.looseCompression 0 && __w_git config gc.auto 0 \
    && __w_git config core.fileMode true && __w_git config core.autocrlf false || return 3
  touch "$__w_s/stamp"
  ( cd @ROOT@ && find . \( -path ./.git -o -name node_modules -o -name .tox -o -name .nox \
      -o -name .venv -o -name venv \) -prune -o -type f -size +@BIG@k -printf '%P\0' ) \
    >"$__w_s/big"
  __w_add >"$__w_s/add.log" 2>&1 || { tail -c 500 "$__w_s/add.log"; return 3; }
  local tree
  tree=$(__w_git write-tree) || return 3
  echo base | __w_git -c user.name=cwm -c user.email=cwm@invalid commit-tree "$tree" \
    >"$__w_s/base" || return 3
  ( cd @ROOT@/.git && tar --numeric-owner --exclude=./objects --exclude='./cwm-warm-*' \
      -cf "$__w_s/gitstate.tar" . ) || return 3
  __w_list >"$__w_s/list.base"
  __w_procs >"$__w_s/procs.base"
  LC_ALL=C sort -o "$__w_s/procs.base" "$__w_s/procs.base"
  __w_fingerprint >"$__w_s/fp.base" && cat "$__w_s/fp.base"
}
__w_prepare
"""
)

RESET = (
    _COMMON
    + r"""
__w_tidy() {  # one listing: every changed mode put back, every new path removed
  local r p m
  __w_list >"$__w_s/list.now"
  LC_ALL=C comm -z -23 "$__w_s/list.base" "$__w_s/list.now" \
    | while IFS= read -r -d '' r; do  # symlinks have no mode of their own
        p=${r%%//*}; m=${r#*//}; set -- $m
        [ "$1" = l ] || [ ! -e "@ROOT@/$p" ] || chmod "$2" -- "@ROOT@/$p" 2>/dev/null
      done
  LC_ALL=C comm -z -13 <(sed -z 's#//.*##' "$__w_s/list.base") \
      <(sed -z 's#//.*##' "$__w_s/list.now") \
    | while IFS= read -r -d '' p; do rm -rf -- "@ROOT@/$p"; done
}
__w_reset() {
  [ -s "$__w_s/base" ] || { echo "the snapshot is gone ($__w_s)"; return 4; }
  __w_kill
  find @ROOT@/.git -mindepth 1 -maxdepth 1 ! -name objects ! -name 'cwm-warm-*' \
    -exec rm -rf -- {} + && tar -C @ROOT@/.git -xpf "$__w_s/gitstate.tar" \
    || { echo "cannot put .git back"; return 4; }
  __w_tidy
  __w_add >"$__w_s/add.log" 2>&1 || { echo "git add: $(tail -c 300 "$__w_s/add.log")"; return 4; }
  __w_git reset -q --hard "$(cat "$__w_s/base")" >"$__w_s/reset.log" 2>&1 \
    || { echo "git reset: $(tail -c 300 "$__w_s/reset.log")"; return 4; }
  ( cd @ROOT@ && find . -path ./.git -prune -o -name '*.py[co]' -newer "$__w_s/stamp" \
      -exec rm -f -- {} + )
  local now
  now=$(__w_fingerprint)
  if [ "$now" != "$(cat "$__w_s/fp.base")" ]; then  # folders git made again, say: once more
    __w_tidy
    now=$(__w_fingerprint)
  fi
  echo "$now"
}
__w_reset
"""
)

STRAYS = _COMMON + "__w_kill; __w_strays\n"
REMOVE = _COMMON + 'cd @ROOT@ && __w_kill; rm -rf -- "$__w_s"\n'


def fill(template: str, root: str, token: str, private_pids: bool, watch: Sequence[str]) -> str:
    values = {
        "@ROOT@": shlex.quote(root),
        "@TOKEN@": token,
        "@PIDS@": "1" if private_pids else "0",
        "@WATCH@": " ".join(shlex.quote(w) for w in watch),
        "@MARKVAR@": MARK_VAR,
        "@BIG@": str(BIG_KIB),
    }
    for key, value in values.items():
        template = template.replace(key, value)
    return template
