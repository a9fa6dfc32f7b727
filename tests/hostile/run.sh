#!/usr/bin/env bash
# Hostile input: schemathesis (from PyPI, in its own venv) generates requests from the manager's
# own /openapi.json — valid, invalid and edge-case bodies, query strings and path parameters —
# and checks that none gets a 5xx. Two passes: as a superadmin and as a plain user, each
# through tests/hostile/sign_proxy.py, which signs every request with the pass's keypair. A
# third pass sends the same operations unsigned. Afterwards the manager must still answer and
# its log must hold no panic.
#
# The manager runs all-in-one on SQLite with an embedded agent on the process backend (kernels
# would be host processes, but no generated image name is the process backend's `host`).
# Streaming routes (server-sent events, WebSockets, the app proxy) are left out: they wait for
# events by design.
#
# Environment (defaults in brackets):
#   BAI_HOSTILE_VENV      [/var/tmp/bai-schemathesis-venv]  schemathesis, created when missing
#   BAI_HOSTILE_EXAMPLES  [10]   examples per operation and pass (bounded on purpose)
#   CARGO_TARGET_DIR      [/var/tmp/bai-target]
# Reports (JUnit) go to $CARGO_TARGET_DIR/hostile-report.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=tests/lib/allinone.sh
. "$root/tests/lib/allinone.sh"
venv="${BAI_HOSTILE_VENV:-/var/tmp/bai-schemathesis-venv}"
examples="${BAI_HOSTILE_EXAMPLES:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/bai-target}"
reports="$CARGO_TARGET_DIR/hostile-report"
schemathesis_version="4.32.5"

say() { printf '\n== %s\n' "$*"; }
fail() {
    printf '\nFAILED: %s\n' "$*" >&2
    exit 1
}
work="$(mktemp -d /tmp/bai-hostile.XXXXXX)"
manager_pid=""
proxy_pids=()
cleanup() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ -f "$work/manager.log" ]; then
        echo "--- manager log (last 40 lines)" >&2
        tail -40 "$work/manager.log" | sed 's/\x1b\[[0-9;]*m//g' >&2
    fi
    for pid in "${proxy_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "$manager_pid" ]; then
        kill "$manager_pid" 2>/dev/null || true
        wait "$manager_pid" 2>/dev/null || true
    fi
    # Kernels of the process backend are host processes under the work directory.
    pkill -f "$work/process" 2>/dev/null || true
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$schemathesis_version"; then
    say "installing schemathesis $schemathesis_version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==$schemathesis_version"
fi

say "building bai-manager"
(cd "$root" && cargo build -q -p bai-manager --bin bai-manager)
manager="$CARGO_TARGET_DIR/debug/bai-manager"

port="$(free_port)"
db="sqlite://$work/manager.db?mode=rwc"
allinone_configs "$work" "i-hostile-$$" process
read -r admin_ak admin_sk <<<"$(allinone_keypair "$manager" "$db" --admin)"
read -r user_ak user_sk <<<"$(allinone_keypair "$manager" "$db" --email fuzz-user@example.com)"

say "starting an all-in-one manager on 127.0.0.1:$port"
allinone_start "$manager" "$work" "$db" "$port"

start_proxy() {
    local ak=$1 sk=$2 proxy_port
    proxy_port="$(free_port)"
    python3 "$here/sign_proxy.py" "$proxy_port" "127.0.0.1:$port" "$ak" "$sk" >"$work/proxy-$proxy_port.log" 2>&1 &
    proxy_pids+=($!)
    for _ in $(seq 1 50); do
        grep -q ready "$work/proxy-$proxy_port.log" 2>/dev/null && break
        sleep 0.1
    done
    printf '%s\n' "$proxy_port"
}

mkdir -p "$reports"
cd "$work" # schemathesis keeps its state (.schemathesis/) in the working directory
failed=()
pass() {
    local name=$1 base=$2
    say "schemathesis ($name): $examples examples per operation against $base"
    # The exit status also counts schemathesis' own errors (e.g. a generator crashing on a deep
    # schema); the verdict is the JUnit report's failures, which are server errors only.
    PYTHONPATH="$here" SCHEMATHESIS_HOOKS=hooks "$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" --url "$base" \
        --checks not_a_server_error \
        --max-examples "$examples" --seed 20261123 \
        --phases examples,coverage,fuzzing \
        --exclude-path-regex '^/(events/|stream/session/\{reference\}/(execute|tcpproxy|httpproxy)$|app-proxy/)' \
        --request-timeout 30 --workers 2 --generation-database none --no-color --suppress-health-check all \
        --report junit --report-junit-path "$reports/$name.xml" || true
    if ! python3 "$here/verdict.py" "$reports/$name.xml"; then
        failed+=("$name")
    fi
    curl -fsS "http://127.0.0.1:$port/" >/dev/null || fail "the manager stopped answering during the $name pass"
}

pass superadmin "http://127.0.0.1:$(start_proxy "$admin_ak" "$admin_sk")"
pass user "http://127.0.0.1:$(start_proxy "$user_ak" "$user_sk")"
pass unsigned "http://127.0.0.1:$port"

if grep -n "panicked" "$work/manager.log" >&2; then
    fail "the manager panicked"
fi
if ((${#failed[@]})); then
    fail "server errors in: ${failed[*]} (JUnit reports in $reports)"
fi
say "no server error in any pass"
