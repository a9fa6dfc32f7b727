# shellcheck shell=bash
# Shared by the end-to-end scripts (tests/e2e, tests/console): an all-in-one bai-manager on
# SQLite with an embedded agent on Docker, in a work directory of the caller's. Source it; it
# defines functions only. Each function fails through the caller's `fail` (which must exist).

# allinone_configs WORK AGENT_ID DOCKER_HOST PORT_LO PORT_HI: writes WORK/agent.toml (Docker
# backend, host ports PORT_LO..PORT_HI on 127.0.0.1; DOCKER_HOST `process` means the process
# backend, kernels under WORK/process) and WORK/manager.toml (folders in WORK/vfolders, metrics
# on an ephemeral loopback port so that two managers never collide).
allinone_configs() {
    local work=$1 agent_id=$2 docker_host=$3 lo=${4:-} hi=${5:-} container
    if [ "$docker_host" = process ]; then
        container="backend = \"process\"
process-root = \"$work/process\""
    else
        container="backend = \"docker\"
docker-host = \"$docker_host\"
bind-host = \"127.0.0.1\"
port-range = [$lo, $hi]"
    fi
    cat >"$work/agent.toml" <<TOML
[agent]
id = "$agent_id"
rpc-listen = "127.0.0.1:0"
metrics-listen = "127.0.0.1:0"
heartbeat-interval = 1.0
[container]
$container
scratch-root = "$work/scratch"
scratch-type = "hostdir"
stop-timeout = 2.0
[resource]
reserved-cpu = 0
reserved-mem = "512m"
TOML
    cat >"$work/manager.toml" <<TOML
[manager]
metrics-listen = "127.0.0.1:0"
[storage]
root = "$work/vfolders"
TOML
}

# allinone_keypair MANAGER DB ARGS...: `bai-manager keypair create ARGS` on DB; prints "AK SK".
allinone_keypair() {
    local manager=$1 db=$2 out ak sk
    shift 2
    out="$("$manager" --db-url "$db" keypair create "$@")" || fail "keypair create $*: $out"
    ak="$(sed -n 's/^Access key: //p' <<<"$out")"
    sk="$(sed -n 's/^Secret key: //p' <<<"$out")"
    if [ -z "$ak" ] || [ -z "$sk" ]; then fail "keypair create $* printed no keys: $out"; fi
    printf '%s %s\n' "$ak" "$sk"
}

# allinone_start MANAGER WORK DB PORT: starts the manager in the background (log in
# WORK/manager.log), sets manager_pid, and waits until GET / answers.
allinone_start() {
    local manager=$1 work=$2 db=$3 port=$4
    BAI_LOG="${BAI_LOG:-info}" "$manager" --config "$work/manager.toml" --db-url "$db" start-server --all-in-one \
        --api-listen "127.0.0.1:$port" --agent-config "$work/agent.toml" >"$work/manager.log" 2>&1 &
    manager_pid=$!
    for _ in $(seq 1 150); do
        curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1 && return 0
        kill -0 "$manager_pid" 2>/dev/null || fail "the manager exited"
        sleep 0.2
    done
    curl -fsS "http://127.0.0.1:$port/" >/dev/null || fail "the manager did not answer"
}

# free_port: an unused loopback TCP port.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
