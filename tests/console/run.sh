#!/usr/bin/env bash
# Headless-Chromium end to end for the manager's web console (/console/): builds bai-manager,
# starts it all-in-one (an embedded agent on Docker) on a free loopback port, creates an admin
# keypair and a normal user's keypair, and runs tests/console/test_console.py (pytest + Selenium
# driving /usr/bin/chromium through /usr/bin/chromedriver) against it.
#
# Needs: Debian's chromium and chromium-driver packages, python3 with venv, cargo, Docker with
# the kernel image. Environment (defaults in brackets):
#   BAI_TEST_DOCKER_HOST   [unix:///var/run/docker.sock]  scripts/test sets it
#   BAI_TEST_KERNEL_IMAGE  [bai/python:3.11]              scripts/test sets it
#   BAI_CONSOLE_VENV       [/var/tmp/bai-console-venv]    selenium + pytest, created when missing
#   CARGO_TARGET_DIR       [/var/tmp/bai-target]
#   BAI_CONSOLE_ARTIFACTS  [$CARGO_TARGET_DIR/console-screenshots]  screenshots, failure dumps
# Extra arguments are passed to pytest (e.g. -x, -k agents).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=tests/lib/allinone.sh
. "$root/tests/lib/allinone.sh"
docker_host="${BAI_TEST_DOCKER_HOST:-unix:///var/run/docker.sock}"
image="${BAI_TEST_KERNEL_IMAGE:-bai/python:3.11}"
venv="${BAI_CONSOLE_VENV:-/var/tmp/bai-console-venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/bai-target}"
artifacts="${BAI_CONSOLE_ARTIFACTS:-$CARGO_TARGET_DIR/console-screenshots}"

say() { printf '\n== %s\n' "$*"; }
work=""
manager_pid=""
agent_id="i-console-$$"
show_manager_log() {
    if [ -n "$work" ] && [ -f "$work/manager.log" ]; then
        echo "--- manager log (last 60 lines)" >&2
        tail -60 "$work/manager.log" | sed 's/\x1b\[[0-9;]*m//g' >&2
    fi
}
fail() {
    printf '\nFAILED: %s\n' "$*" >&2
    exit 1
}
cleanup() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        show_manager_log
    fi
    if [ -n "$manager_pid" ]; then
        kill "$manager_pid" 2>/dev/null || true
        wait "$manager_pid" 2>/dev/null || true
    fi
    # The embedded agent leaves its kernels running on shutdown; remove them.
    docker -H "$docker_host" ps -aq --filter "label=ai.backend.owner=$agent_id" |
        xargs -r docker -H "$docker_host" rm -f >/dev/null 2>&1 || true
    if [ -n "$work" ]; then
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for bin in /usr/bin/chromium /usr/bin/chromedriver; do
    [ -x "$bin" ] || fail "$bin is missing (apt-get install chromium chromium-driver)"
done

if [ ! -x "$venv/bin/pytest" ] || ! "$venv/bin/python" -c 'import selenium' 2>/dev/null; then
    say "installing selenium and pytest into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q selenium pytest
fi

say "building bai-manager (into $CARGO_TARGET_DIR)"
(cd "$root" && CARGO_INCREMENTAL=0 cargo build -q -p bai-manager --bin bai-manager)
manager="$CARGO_TARGET_DIR/debug/bai-manager"

work="$(mktemp -d /tmp/bai-console.XXXXXX)"
port="$(free_port)"
db="sqlite://$work/manager.db?mode=rwc"
allinone_configs "$work" "$agent_id" "$docker_host" 23500 23519

say "creating an admin keypair and a user keypair (user@example.com)"
read -r admin_ak admin_sk <<<"$(allinone_keypair "$manager" "$db" --admin)"
read -r user_ak user_sk <<<"$(allinone_keypair "$manager" "$db" --email user@example.com)"
if [ -z "${admin_ak:-}" ] || [ -z "${user_ak:-}" ]; then fail "no keys"; fi

say "starting an all-in-one manager on 127.0.0.1:$port (agent $agent_id)"
allinone_start "$manager" "$work" "$db" "$port"
code="$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/console/")" || true
echo "GET /console/ -> $code"

mkdir -p "$artifacts"
rm -f "$artifacts"/*.png "$artifacts"/failure-* "$artifacts"/browser-console.log
rm -rf "$artifacts/downloads"

say "pytest tests/console/test_console.py (artifacts in $artifacts)"
start=$SECONDS
set +e
(
    cd "$root"
    export BAI_CONSOLE_URL="http://127.0.0.1:$port" \
        BAI_ADMIN_AK="$admin_ak" BAI_ADMIN_SK="$admin_sk" \
        BAI_USER_AK="$user_ak" BAI_USER_SK="$user_sk" \
        BAI_CONSOLE_IMAGE="$image" BAI_CONSOLE_ARTIFACTS="$artifacts" \
        BAI_CONSOLE_WORK="$work" BAI_CONSOLE_AGENT_ID="$agent_id" \
        PYTHONDONTWRITEBYTECODE=1 SE_OFFLINE=true
    # no cache provider: nothing is written into the repository
    "$venv/bin/pytest" -q -p no:cacheprovider tests/console/test_console.py "$@"
)
rc=$?
set -e
echo "pytest exited $rc after $((SECONDS - start)) s; screenshots and failure dumps in $artifacts"
[ "$rc" -eq 0 ] || fail "console tests failed"
say "console end-to-end: all passed"
