"""Plans a large random cluster once from Python and reports the time, like the Rust example.

    python benches/python/plan_throughput.py [--agents 5000] [--sessions 100000] [--kernels 1]
        [--policy fifo] [--selector dispersed] [--seed 7] [--rust]

The cluster is the one `examples/common/cluster.rs` generates (the same xorshift64* generator,
seed and shapes), so the plan is the Rust example's plan: compare the numbers with

    cargo run --release -p bai-examples --example plan_throughput -- \\
        --agents 5000 --sessions 100000 --policy fifo --selector dispersed

(`--rust` runs that command after the Python run and prints its last line). The figure to
compare is `plan_ms` (the `plan()` call alone, as the Rust example times it); the script also
prints the time to build the dicts and to convert them into a `bai.scheduler.Snapshot`, which
the Rust example does not have. `--repeat N` plans N times and reports the fastest (the Rust
example plans once). Needs `pip install ./bai-py` first.
"""

import argparse
import pathlib
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

from bai import scheduler

GIB = 1 << 30
MASK = (1 << 64) - 1


class Rng:
    """xorshift64*, exactly as examples/common/cluster.rs."""

    def __init__(self, seed):
        self.state = max(seed, 1)

    def next(self):
        s = self.state
        s ^= s >> 12
        s ^= (s << 25) & MASK
        s ^= s >> 27
        self.state = s
        return (s * 0x2545F4914F6CDD1D) & MASK

    def range(self, lo, hi):
        return lo + self.next() % (hi - lo + 1)


def slots(cpu, mem_gib, gpu=None):
    out = {"cpu": cpu, "mem": mem_gib * GIB}
    if gpu is not None:
        out["cuda.shares"] = gpu
    return out


def random_cluster(agents, sessions, kernels, seed):
    """60% CPU nodes, 30% GPU nodes, 10% small nodes; sessions from 100 access keys."""
    rng = Rng(seed)
    agent_list = []
    for i in range(agents):
        kind = rng.range(0, 9)
        if kind <= 5:
            cpu = rng.range(4, 16) * 8
            available = slots(cpu, rng.range(8, 32) * 16)
        elif kind <= 8:
            cpu = rng.range(4, 8) * 8
            mem = rng.range(16, 32) * 16
            available = slots(cpu, mem, rng.range(4, 8))
        else:
            cpu = rng.range(2, 8)
            available = slots(cpu, rng.range(4, 16))
        agent_list.append(
            {"id": f"i-{i:06d}", "scaling_group": "default", "architecture": "x86_64", "status": "ALIVE", "available_slots": available}
        )
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    pending = []
    for i in range(sessions):
        gpu = None
        if rng.range(0, 4) == 0:
            tenths = rng.range(1, 4) * 5
            gpu = f"{tenths // 10}.{tenths % 10}"  # Decimal::new(n, 1)
        cpu = rng.range(1, 4)
        per_kernel = slots(cpu, rng.range(1, 16), gpu)
        pending.append(
            {
                "id": uuid.UUID(int=(1 << 64) | i),
                "name": f"s{i}",
                "access_key": f"AK{rng.range(0, 99):04d}",
                "user": "",
                "group": "default",
                "domain": "default",
                "created_at": start + timedelta(milliseconds=i),
                "scaling_group": "default",
                "architecture": "x86_64",
                "kernels": [{"id": uuid.UUID(int=((2 + k) << 64) | i), "requested_slots": per_kernel} for k in range(kernels)],
                "cluster_mode": "multi-node" if kernels > 1 else "single-node",
            }
        )
    return {"agents": agent_list, "pending": pending}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--kernels", type=int, default=1)
    parser.add_argument("--policy", default="fifo")
    parser.add_argument("--selector", default="dispersed")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=1, help="plan this many times and report the fastest and the median")
    parser.add_argument("--rust", action="store_true", help="also run the Rust example with the same arguments")
    args = parser.parse_args()
    if args.kernels < 1:
        parser.error("--kernels must be at least 1")

    t0 = time.perf_counter()
    data = random_cluster(args.agents, args.sessions, args.kernels, args.seed)
    t1 = time.perf_counter()
    snapshot = scheduler.Snapshot(data)
    t2 = time.perf_counter()
    config = scheduler.Config(queue=args.policy, selector=args.selector)
    now = datetime(2026, 1, 2, tzinfo=timezone.utc)

    times = []
    for _ in range(max(args.repeat, 1)):
        started = time.perf_counter()
        plan = scheduler.plan(snapshot, config, now)
        times.append(time.perf_counter() - started)
    times.sort()
    elapsed = times[0]

    placed_kernels = plan.placement_count * args.kernels
    accounted = plan.placement_count + plan.blocked_count + plan.cancellation_count
    if accounted != args.sessions:
        sys.exit(f"{accounted} sessions accounted for, {args.sessions} pending")
    print(
        f"agents={args.agents} sessions={args.sessions} kernels_per_session={args.kernels} policy={args.policy} "
        f"selector={args.selector}: {plan.placement_count} sessions placed, {plan.blocked_count} waiting"
    )
    print(f"python: build_dicts_ms={1000 * (t1 - t0):.1f} snapshot_ms={1000 * (t2 - t1):.1f}")
    print(
        f"python: placements={placed_kernels} plan_ms={1000 * elapsed:.1f} "
        f"placements_per_sec={placed_kernels / elapsed:.0f}"
        + (f" (fastest of {len(times)}; median {1000 * times[len(times) // 2]:.1f} ms)" if len(times) > 1 else "")
    )
    if args.rust:
        command = [
            "cargo", "run", "--quiet", "--release", "-p", "bai-examples", "--example", "plan_throughput", "--",
            "--agents", str(args.agents), "--sessions", str(args.sessions), "--kernels", str(args.kernels),
            "--policy", args.policy, "--selector", args.selector, "--seed", str(args.seed),
        ]  # fmt: skip
        repo = pathlib.Path(__file__).resolve().parents[2]
        out = subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout.strip().splitlines()
        print(f"rust:   {out[-1]}")


if __name__ == "__main__":
    main()
