#!/usr/bin/env bash
# Provision a private Docker engine and the test images on a bare Debian bookworm machine.
# Run as root. Idempotent: a second run only checks what is already there.
#
#   scripts/provision-docker.sh [up]   install, start dockerd, build images (default)
#   scripts/provision-docker.sh stop   stop the dockerd this script started
#   scripts/provision-docker.sh env    print the export line only
#
# Progress and timings go to stderr; the last stdout line is `export DOCKER_HOST=...`,
# so `eval "$(scripts/provision-docker.sh)"` works.
set -euo pipefail

STATE=${CWM_DOCKER_STATE:-/tmp/cwm-docker}
CACHE=${CWM_DOCKER_CACHE:-/var/cache/cwm-agent}
SOCK=$STATE/docker.sock
PIDFILE=$STATE/dockerd.pid
LOG=$STATE/dockerd.log
BASE_IMAGE=${CWM_BASE_IMAGE:-cwm-agent-base:bookworm}
TEST_IMAGE=${CWM_TEST_IMAGE:-cwm-agent-test:latest}
NOPY_IMAGE=${CWM_TEST_NOPY_IMAGE:-cwm-agent-test-nopy:latest}
SWEBENCH_IMAGE=${CWM_TEST_SWEBENCH_IMAGE:-cwm-agent-swebench:latest}
MIRROR=${CWM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
START_TIMEOUT=${CWM_DOCKER_START_TIMEOUT:-60}
# Empty = let dockerd choose (overlay2 where the kernel allows it, else vfs).
STORAGE_DRIVER=${CWM_DOCKER_STORAGE_DRIVER:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DOCKERFILE_DIR=$HERE/../tests/docker

export DOCKER_HOST=unix://$SOCK
export DOCKER_BUILDKIT=0   # legacy builder: no buildx plugin needed, honours --network=host

log() { printf '[provision-docker] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

now_us() { echo "${EPOCHREALTIME/./}"; }
TIMINGS=()
record() {  # record NAME START_US
    local us=$(($(now_us) - $2))
    TIMINGS+=("$(printf '%-10s %4d.%02ds' "$1" $((us / 1000000)) $((us % 1000000 / 10000)))")
}
timed() {  # timed NAME CMD...: run CMD, record its wall time
    local name=$1 start
    start=$(now_us)
    shift
    "$@"
    record "$name" "$start"
}

engine_up() { docker info >/dev/null 2>&1; }

dockerd_pid() {
    [[ -s $PIDFILE ]] || return 1
    local pid
    pid=$(<"$PIDFILE")
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}

install_packages() {
    local missing=()
    for pkg in docker.io debootstrap; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then log "packages: present"; return; fi
    log "packages: installing ${missing[*]}"
    # Unreachable third-party sources must not stop us: the install below is what counts.
    mkdir -p "$STATE"
    apt-get update >"$STATE/apt.log" 2>&1 || log "apt-get update reported errors; trying the install anyway"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
        >>"$STATE/apt.log" 2>&1 || { tail -n 20 "$STATE/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
}

start_dockerd() {
    if dockerd_pid >/dev/null && engine_up; then log "dockerd: running (pid $(dockerd_pid))"; return; fi
    command -v dockerd >/dev/null || die "dockerd not found: is docker.io installed?"
    mkdir -p "$STATE"
    rm -f "$SOCK" "$PIDFILE"
    local flags=(--iptables=false --ip-masq=false --bridge=none
        -H "unix://$SOCK" --data-root "$STATE/data" --exec-root "$STATE/exec"
        --pidfile "$PIDFILE")
    [[ -n $STORAGE_DRIVER ]] && flags+=(--storage-driver "$STORAGE_DRIVER")
    log "dockerd: starting: dockerd ${flags[*]}"
    setsid nohup dockerd "${flags[@]}" >"$LOG" 2>&1 </dev/null &
    local pid=$! deadline=$((SECONDS + START_TIMEOUT))
    until engine_up; do
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
            kill -0 "$pid" 2>/dev/null && log "dockerd did not answer within ${START_TIMEOUT}s" \
                || log "dockerd exited"
            log "last lines of $LOG:"
            grep -v 'module=grpc' "$LOG" | tail -n 15 >&2 || true
            kill "$pid" 2>/dev/null || true
            unmount_leftovers
            die "dockerd failed to start (see above; where overlayfs is unavailable, try CWM_DOCKER_STORAGE_DRIVER=vfs)"
        fi
        sleep 0.1
    done
    log "dockerd: up (pid $pid, storage driver $(docker info -f '{{.Driver}}'))"
}

rootfs_tarball() {  # debootstrap once; the tarball is cached across runs
    local tarball=$CACHE/bookworm-minbase.tar
    if [[ -s $tarball ]]; then log "rootfs: cached $tarball"; return; fi
    mkdir -p "$CACHE"
    local rootfs
    rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    log "rootfs: debootstrap --variant=minbase bookworm (a few minutes)"
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -n 20 "$CACHE/debootstrap.log" >&2; rm -rf "$rootfs"; die "debootstrap failed"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" --numeric-owner -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
}

import_base() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then log "import: $BASE_IMAGE present"; return; fi
    log "import: $BASE_IMAGE"
    docker import --change 'CMD ["/bin/bash"]' "$CACHE/bookworm-minbase.tar" "$BASE_IMAGE" >/dev/null
}

build_image() {  # build_image TAG PACKAGES: skipped when the same recipe built TAG already
    local tag=$1 packages=$2 recipe
    recipe=$( (cat "$DOCKERFILE_DIR/Dockerfile"; echo "$BASE_IMAGE $packages") | sha256sum | cut -c1-16)
    if [[ $(docker image inspect -f '{{index .Config.Labels "cwm-agent.recipe"}}' "$tag" 2>/dev/null) == "$recipe" ]]; then
        log "build: $tag present"; return
    fi
    log "build: $tag (FROM $BASE_IMAGE + $packages)"
    # --network=host: the engine has no bridge, and apt inside the build needs the mirror.
    docker build --network=host --build-arg "BASE=$BASE_IMAGE" --build-arg "PACKAGES=$packages" \
        --label "cwm-agent.recipe=$recipe" -t "$tag" "$DOCKERFILE_DIR" >"$STATE/build.log" 2>&1 \
        || { tail -n 20 "$STATE/build.log" >&2; die "docker build of $tag failed"; }
}

swebench_wheels() {  # the testbed env's pinned wheels, fetched by the host's pip once
    local reqs=$DOCKERFILE_DIR/swebench/requirements.txt dir
    dir=$CACHE/swebench-wheels-$(sha256sum "$reqs" | cut -c1-16)
    if [[ ! -s $dir/.complete ]]; then
        log "wheels: pip download -r $reqs"
        rm -rf "$dir.part" && mkdir -p "$dir.part"
        python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
            --python-version 3.11 -d "$dir.part" -r "$reqs" >"$STATE/pip-download.log" 2>&1 \
            || { tail -n 20 "$STATE/pip-download.log" >&2; die "pip download of the testbed wheels failed"; }
        ls "$dir.part" >"$dir.part/.complete"
        rm -rf "$dir" && mv "$dir.part" "$dir"
    fi
    echo "$dir"
}

build_swebench_image() {  # FROM the test image (Debian bookworm: python 3.11)
    local source=$DOCKERFILE_DIR/swebench context=$STATE/swebench-context recipe wheels
    recipe=$( (docker image inspect -f '{{.Id}}' "$TEST_IMAGE"
        cd "$source" && find . -type f ! -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha256sum) |
        sha256sum | cut -c1-16)
    if [[ $(docker image inspect -f '{{index .Config.Labels "cwm-agent.recipe"}}' "$SWEBENCH_IMAGE" 2>/dev/null) == "$recipe" ]]; then
        log "build: $SWEBENCH_IMAGE present"; return
    fi
    wheels=$(swebench_wheels)
    log "build: $SWEBENCH_IMAGE (FROM $TEST_IMAGE + testbed env, project at /testbed)"
    rm -rf "$context" && mkdir -p "$context"
    (cd "$source" && tar --exclude=__pycache__ -cf - .) | tar -C "$context" -xf -
    cp -r "$wheels" "$context/wheels"
    # --network=host: apt inside the build needs the mirror (the engine has no bridge).
    docker build --network=host --build-arg "BASE=$TEST_IMAGE" --label "cwm-agent.recipe=$recipe" \
        -t "$SWEBENCH_IMAGE" "$context" >"$STATE/build-swebench.log" 2>&1 \
        || { tail -n 20 "$STATE/build-swebench.log" >&2; die "docker build of $SWEBENCH_IMAGE failed"; }
    rm -rf "$context"
}

stop_dockerd() {
    local pid
    if pid=$(dockerd_pid); then
        kill -TERM "$pid"
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "stop: dockerd $pid ignored SIGTERM for 15s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stop: dockerd $pid stopped"
    else
        log "stop: no dockerd running for $STATE"
    fi
    unmount_leftovers
}

unmount_leftovers() {  # dockerd leaves mounts (netns, data-root) that block `rm -rf $STATE`
    sleep 0.2
    awk -v s="$STATE/" 'index($2, s) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
}

case ${1:-up} in
    up)
        [[ $(id -u) == 0 ]] || die "run as root (it installs packages and starts dockerd)"
        total=$(now_us)
        timed packages install_packages
        timed dockerd start_dockerd
        timed rootfs rootfs_tarball
        timed import import_base
        timed build build_image "$TEST_IMAGE" "python3 git"
        timed build-nopy build_image "$NOPY_IMAGE" "git"
        timed swebench build_swebench_image
        record total "$total"
        printf '[provision-docker] timing %s\n' "${TIMINGS[@]}" >&2
        echo "export DOCKER_HOST=$DOCKER_HOST"
        ;;
    stop) stop_dockerd ;;
    env) echo "export DOCKER_HOST=$DOCKER_HOST" ;;
    *) die "usage: $0 [up|stop|env]" ;;
esac
