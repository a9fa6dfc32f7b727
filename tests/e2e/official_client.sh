#!/usr/bin/env bash
# End to end with the official Backend.AI client: installs backend.ai-client 23.9.10 in a venv,
# starts an all-in-one bai-manager (an embedded agent on Docker), and drives sessions, the admin
# listings, an image rescan (a background task) and alias, a second user's isolation, the admin
# update/delete/purge commands, the session's apps (`backend.ai app` forwarding a local
# port) and virtual folders through the unmodified `backend.ai` CLI, asserting on its output; then runs code through our own `bai` CLI against the same
# manager.
#
# Needs: BAI_TEST_DOCKER_HOST and BAI_TEST_KERNEL_IMAGE (scripts/test sets them), cargo, python3
# with venv, network access to PyPI on the first run (the venv is kept in $BAI_E2E_VENV).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=tests/lib/allinone.sh
. "$root/tests/lib/allinone.sh"
docker_host="${BAI_TEST_DOCKER_HOST:?set by scripts/test}"
image="${BAI_TEST_KERNEL_IMAGE:?set by scripts/test}"
venv="${BAI_E2E_VENV:-/var/tmp/bai-e2e-venv}"
target="${CARGO_TARGET_DIR:-$root/target}"

say() { printf '\n== %s\n' "$*"; }
fail() {
    printf '\nFAILED: %s\n' "$*" >&2
    if [ -f "${work:-/nonexistent}/manager.log" ]; then
        echo "--- manager log (last 60 lines)" >&2
        tail -60 "$work/manager.log" >&2
    fi
    exit 1
}

if [ ! -x "$venv/bin/backend.ai" ]; then
    say "installing backend.ai-client 23.9.10 into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'backend.ai-client==23.9.10' 'yarl<1.17.1'
fi

say "building bai-manager and bai"
(cd "$root" && cargo build -q -p bai-manager -p bai-client --bin bai-manager --bin bai)
manager="$target/debug/bai-manager"
bai="$target/debug/bai"

work="$(mktemp -d /tmp/bai-e2e.XXXXXX)"
agent_id="i-e2e-$$"
manager_pid=""
app_pids=()
cleanup() {
    for pid in "${app_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "$manager_pid" ]; then
        kill "$manager_pid" 2>/dev/null || true
        wait "$manager_pid" 2>/dev/null || true
    fi
    # The embedded agent leaves its kernels running on shutdown; remove them.
    docker -H "$docker_host" ps -aq --filter "label=ai.backend.owner=$agent_id" | xargs -r docker -H "$docker_host" rm -f >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

port="$(free_port)"
db="sqlite://$work/manager.db?mode=rwc"
allinone_configs "$work" "$agent_id" "$docker_host" 23000 23099

say "creating an admin keypair"
read -r access_key secret_key <<<"$(allinone_keypair "$manager" "$db" --admin)"
if [ -z "${access_key:-}" ] || [ -z "${secret_key:-}" ]; then fail "keypair create printed no keys"; fi

say "starting an all-in-one manager on 127.0.0.1:$port"
allinone_start "$manager" "$work" "$db" "$port"

cd "$work" # no .env here: the client reads one from the working directory upward
export BACKEND_ENDPOINT="http://127.0.0.1:$port" BACKEND_ACCESS_KEY="$access_key" BACKEND_SECRET_KEY="$secret_key"
export BACKEND_ENDPOINT_TYPE=api
cli() { "$venv/bin/backend.ai" "$@"; }

say "backend.ai session create"
out="$(cli session create --name e2e-sess -r cpu=1 -r mem=512m "$image" 2>&1)" || fail "session create: $out"
echo "$out"
session_id="$(grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' <<<"$out" | head -1)"
[ -n "$session_id" ] || fail "no session id in: $out"

say "backend.ai run -c 'print(1+1)'"
out="$(cli run --rm -r cpu=1 -r mem=512m -c 'print(1+1)' "$image" 2>/dev/null)" || fail "run: $out"
echo "$out"
grep -qx '2' <<<"$out" || fail "run did not print 2: $out"

say "backend.ai ps"
out="$(cli --output json ps 2>&1)" || fail "ps: $out"
echo "$out"
grep -q 'e2e-sess' <<<"$out" || fail "ps does not list e2e-sess: $out"

say "backend.ai session info"
out="$(cli session info "$session_id" 2>&1)" || fail "session info: $out"
echo "$out"
grep -q 'e2e-sess' <<<"$out" || fail "session info does not show e2e-sess: $out"
grep -qi 'running' <<<"$out" || fail "session info does not show RUNNING: $out"

say "backend.ai admin … list"
for what in "agent list" "user list" "keypair list" "domain list" "group list" "scaling-group list" \
    "keypair-resource-policy list" "image list"; do
    out="$(cli --output json admin $what 2>&1)" || fail "admin $what: $out"
    grep -q '"total_count": [1-9]' <<<"$out" || fail "admin $what lists nothing: $out"
done
out="$(cli --output json admin agent list 2>&1)"
grep -q "\"$agent_id\"" <<<"$out" || fail "admin agent list does not show $agent_id: $out"
out="$(cli --output json admin image list 2>&1)"
grep -q "\"${image%%:*}\"" <<<"$out" || fail "admin image list does not show ${image%%:*}: $out"

say "backend.ai admin image rescan (a background task), alias and dealias"
out="$(cli admin image rescan 2>&1)" || fail "admin image rescan: $out"
echo "$out"
grep -q "Finished registry scanning" <<<"$out" || fail "admin image rescan did not report the task's end: $out"
out="$(cli admin image alias e2e-python "$image" 2>&1)" || fail "admin image alias: $out"
grep -q "An alias has created: e2e-python" <<<"$out" || fail "admin image alias: $out"
out="$(cli --output json admin image list 2>&1)"
grep -q '"e2e-python"' <<<"$out" || fail "admin image list does not show the alias: $out"
out="$(cli admin image alias e2e-python "$image" 2>&1)"
grep -q "Aliasing has failed: alias: \"e2e-python\" already names" <<<"$out" || fail "a second alias was not refused: $out"
out="$(cli admin image dealias e2e-python 2>&1)" || fail "admin image dealias: $out"
grep -q "The alias has been removed: e2e-python" <<<"$out" || fail "admin image dealias: $out"

say "a second user sees only their own sessions"
out="$(cli admin user add default carol@example.com 'carol-password-1' 2>&1)" || fail "admin user add: $out"
out="$(cli --output json admin keypair list -u carol@example.com 2>&1)" || fail "admin keypair list -u: $out"
carol_keys="$(python3 -c 'import json,sys; k=json.load(sys.stdin)["items"][0]; print(k["access_key"], k["secret_key"])' <<<"$out")" ||
    fail "no keypair for carol: $out"
read -r carol_ak carol_sk <<<"$carol_keys"
out="$(BACKEND_ACCESS_KEY=$carol_ak BACKEND_SECRET_KEY=$carol_sk cli --output json ps 2>&1)" || fail "carol ps: $out"
grep -q 'e2e-sess' <<<"$out" && fail "carol sees the admin's session: $out"
grep -q '"total_count": 0' <<<"$out" || fail "carol's ps is not empty: $out"
if out="$(BACKEND_ACCESS_KEY=$carol_ak BACKEND_SECRET_KEY=$carol_sk cli session rm e2e-sess 2>&1)"; then
    fail "carol destroyed the admin's session: $out"
fi

say "backend.ai admin domain / scaling-group / keypair-resource-policy update, delete, purge; user purge"
jcli() { cli --output json "$@"; }
ok() { grep -q '"ok": true' <<<"$2" || fail "$1 did not succeed: $2"; }
refused() { # refused WHAT NEEDLE OUTPUT: the command failed and said NEEDLE
    grep -q '"ok": false' <<<"$3" || fail "$1 was not refused: $3"
    grep -q "$2" <<<"$3" || fail "$1 was refused without saying '$2': $3"
}
out="$(jcli admin domain add e2e-dom 2>&1)" || fail "admin domain add: $out"
out="$(jcli admin domain update e2e-dom --description 'for e2e' --total-resource-slots '{"cpu": "8"}' 2>&1)" || fail "admin domain update: $out"
ok "admin domain update" "$out"
out="$(jcli admin domain info e2e-dom 2>&1)" || fail "admin domain info: $out"
grep -q '"description": "for e2e"' <<<"$out" || fail "admin domain update did not change the description: $out"
out="$(jcli admin domain update e2e-dom --total-resource-slots '[1]' 2>&1)" && fail "a bad domain update succeeded: $out"
refused "admin domain update" "invalid total_resource_slots" "$out"
out="$(jcli admin domain delete e2e-dom 2>&1)" || fail "admin domain delete: $out"
ok "admin domain delete" "$out"
out="$(jcli admin domain info e2e-dom 2>&1)" || fail "admin domain info: $out"
grep -q '"is_active": false' <<<"$out" || fail "admin domain delete did not deactivate: $out"
out="$(cli admin user add e2e-dom dave@example.com 'dave-password-1' 2>&1)" || fail "admin user add: $out"
out="$(echo y | jcli admin domain purge e2e-dom 2>&1)" && fail "a domain with a user was purged: $out"
refused "admin domain purge" "still has 1 user" "$out"
out="$(echo y | jcli admin user purge dave@example.com 2>&1)" || fail "admin user purge: $out"
ok "admin user purge" "$out"
out="$(jcli admin user list 2>&1)" || fail "admin user list: $out"
grep -q 'dave@example.com' <<<"$out" && fail "a purged user is still listed: $out"
out="$(echo y | jcli admin domain purge e2e-dom 2>&1)" || fail "admin domain purge: $out"
ok "admin domain purge" "$out"
out="$(jcli admin domain list 2>&1)" || fail "admin domain list: $out"
grep -q 'e2e-dom' <<<"$out" && fail "a purged domain is still listed: $out"

out="$(jcli admin scaling-group add e2e-sg 2>&1)" || fail "admin scaling-group add: $out"
out="$(jcli admin scaling-group associate-scaling-group e2e-sg default 2>&1)" || fail "associate-scaling-group: $out"
out="$(jcli admin scaling-group dissociate-scaling-group e2e-sg default 2>&1)" || fail "dissociate-scaling-group: $out"
ok "admin scaling-group dissociate-scaling-group" "$out"
out="$(jcli admin scaling-group update e2e-sg --description updated --scheduler lifo 2>&1)" || fail "admin scaling-group update: $out"
ok "admin scaling-group update" "$out"
out="$(jcli admin scaling-group info e2e-sg 2>&1)" || fail "admin scaling-group info: $out"
grep -q '"scheduler": "lifo"' <<<"$out" || fail "admin scaling-group update did not change the scheduler: $out"
out="$(jcli admin scaling-group update e2e-sg --scheduler random 2>&1)" && fail "a bad scheduler was accepted: $out"
refused "admin scaling-group update" "invalid scheduler" "$out"
out="$(jcli admin scaling-group delete default 2>&1)" && fail "the agent's scaling group was deleted: $out"
refused "admin scaling-group delete" "$agent_id" "$out"
out="$(jcli admin scaling-group delete e2e-sg 2>&1)" || fail "admin scaling-group delete: $out"
ok "admin scaling-group delete" "$out"

out="$(jcli admin keypair-resource-policy add e2e-pol 2>&1)" || fail "admin keypair-resource-policy add: $out"
out="$(jcli admin keypair-resource-policy update e2e-pol --max-concurrent-sessions 7 2>&1)" || fail "admin keypair-resource-policy update: $out"
ok "admin keypair-resource-policy update" "$out"
out="$(jcli admin keypair-resource-policy info e2e-pol 2>&1)" || fail "admin keypair-resource-policy info: $out"
grep -q '"max_concurrent_sessions": 7' <<<"$out" || fail "the policy was not updated: $out"
out="$(echo y | jcli admin keypair-resource-policy delete default 2>&1)" && fail "the default policy was deleted: $out"
refused "admin keypair-resource-policy delete" "default" "$out"
out="$(echo y | jcli admin keypair-resource-policy delete e2e-pol 2>&1)" || fail "admin keypair-resource-policy delete: $out"
ok "admin keypair-resource-policy delete" "$out"

say "backend.ai apps / app: the session's services through the manager"
out="$(cli apps e2e-sess --list-names 2>&1)" || fail "apps: $out"
echo "$out"
grep -q 'http-server, echo' <<<"$out" || fail "apps does not list http-server and echo: $out"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 100); do
        python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
echo_port="$(free_port)"
cli app e2e-sess echo -b "127.0.0.1:$echo_port" >"$work/app-echo.log" 2>&1 &
app_pids+=($!)
wait_port "$echo_port" || fail "backend.ai app did not listen: $(cat "$work/app-echo.log")"
reply="$(python3 - "$echo_port" <<'PY'
import socket, sys
conn = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 60)
conn.sendall(b"ping through the app proxy")
data = b""
while len(data) < 26:
    chunk = conn.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.decode())
PY
)" || fail "the echo app did not answer: $(cat "$work/app-echo.log")"
[ "$reply" = "ping through the app proxy" ] || fail "the echo app answered: $reply"
http_port="$(free_port)"
cli app e2e-sess http-server -b "127.0.0.1:$http_port" >"$work/app-http.log" 2>&1 &
app_pids+=($!)
wait_port "$http_port" || fail "backend.ai app did not listen: $(cat "$work/app-http.log")"
out="$(curl -fsS --max-time 60 "http://127.0.0.1:$http_port/")" || fail "http-server through the proxy: $(cat "$work/app-http.log")"
grep -q 'Directory listing for /' <<<"$out" || fail "http-server answered: $out"
grep -q "http://127.0.0.1:$http_port/" "$work/app-http.log" || fail "app did not print the URL: $(cat "$work/app-http.log")"
if out="$(BACKEND_ACCESS_KEY=$carol_ak BACKEND_SECRET_KEY=$carol_sk cli apps e2e-sess 2>&1)" && ! grep -qi 'error\|fail' <<<"$out"; then
    fail "carol lists the admin's apps: $out"
fi
echo "carol: $out"
for pid in "${app_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
app_pids=()

say "backend.ai vfolder create/upload/ls/download/rm/delete"
echo "payload-$$" >"$work/upload.txt"
out="$(cli vfolder create e2e-data local:volume1 2>&1)" || fail "vfolder create: $out"
out="$(cli vfolder upload e2e-data upload.txt 2>&1)" || fail "vfolder upload: $out"
out="$(cli vfolder ls e2e-data 2>&1)" || fail "vfolder ls: $out"
grep -q 'upload.txt' <<<"$out" || fail "vfolder ls does not show upload.txt: $out"
mkdir -p "$work/down"
out="$(cd "$work/down" && cli vfolder download e2e-data upload.txt 2>&1)" || fail "vfolder download: $out"
cmp -s "$work/upload.txt" "$work/down/upload.txt" || fail "the downloaded file differs"
say "backend.ai run -m e2e-data (a folder mounted into the session)"
out="$(cli run --rm -r cpu=1 -r mem=512m -m e2e-data \
    -c "print(open('/home/work/e2e-data/upload.txt').read().strip()); _ = open('/home/work/e2e-data/from-kernel.txt', 'w').write('ok')" \
    "$image" 2>/dev/null)" || fail "run with a mount: $out"
grep -qx "payload-$$" <<<"$out" || fail "the kernel did not read the mounted file: $out"
out="$(cli vfolder ls e2e-data 2>&1)" || fail "vfolder ls: $out"
grep -q 'from-kernel.txt' <<<"$out" || fail "the kernel's file is not in the folder: $out"
out="$(echo y | cli vfolder rm e2e-data upload.txt 2>&1)" || fail "vfolder rm: $out"
out="$(cli vfolder delete e2e-data 2>&1)" || fail "vfolder delete: $out"

say "bai run (our CLI, same manager)"
out="$("$bai" -q run "$image" -r cpu=1 -r mem=512m --rm -c 'import sys; print(6 * 7); sys.exit(5)')" && code=0 || code=$?
[ "$out" = "42" ] || fail "bai run printed: $out"
[ "$code" = 5 ] || fail "bai run exited $code, not the code's 5"

say "backend.ai session rm"
out="$(cli session rm e2e-sess 2>&1)" || fail "session rm: $out"
echo "$out"
for _ in $(seq 1 50); do
    if ! docker -H "$docker_host" ps -q --filter "label=ai.backend.owner=$agent_id" | grep -q .; then
        break
    fi
    sleep 0.2
done
docker -H "$docker_host" ps -q --filter "label=ai.backend.owner=$agent_id" | grep -q . && fail "kernels still running after rm"

say "official client end-to-end: all passed"
