"""Slot math and the scheduler from Python: a small cluster, a plan, its explanations, a what-if.

    pip install ./bai-py
    python examples/python/plan_cluster.py

The Python counterpart of `examples/embed_scheduler.rs` and `examples/simulate_cluster.rs`.
"""

from datetime import datetime, timedelta, timezone

import bai
from bai import scheduler
from bai.scheduler import Agent, Arrival, Session


def main():
    # Slot math: exact decimals, a missing slot is zero, `<=` means "fits within".
    free = bai.ResourceSlot({"cpu": 16, "mem": "64g", "cuda.shares": 4})
    want = bai.ResourceSlot({"cpu": "2.5", "mem": bai.BinarySize("8 GiB"), "cuda.shares": 0.5})
    print(f"{want.humanize()} fits in {free.humanize()}: {want <= free}; left: {(free - want).humanize()}")
    try:
        bai.ResourceSlot({"mem": "4 gigs"})
    except bai.BaiError as err:
        print(f"{type(err).__name__}: {err}")

    # A snapshot from dataclasses (plain dicts with the same keys work too).
    t0 = datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)
    agents = [Agent("gpu-1", {"cpu": 16, "mem": "64g", "cuda.shares": 4}), Agent("cpu-1", {"cpu": 32, "mem": "128g"})]
    pending = [
        Session.with_slots("AKALICE", {"cpu": 4, "mem": "8g"}, name="notebook", created_at=t0),
        Session.with_slots("AKBOB", {"cpu": 8, "mem": "32g", "cuda.shares": 8}, name="training", created_at=t0),
        Session.with_slots("AKCAROL", {"cpu": 8, "mem": "16g"}, kernels=2, name="mpi-job", created_at=t0),
    ]
    snapshot = scheduler.Snapshot(agents=agents, pending=pending)
    plan = scheduler.plan(snapshot, scheduler.Config(selector="concentrated"), now=t0 + timedelta(minutes=5))
    for session in pending:
        print(f"{session.name:>9}: {plan.explain(session.id)}")
    for blocked in plan.blocked:
        for shortage in blocked.reason.shortages:
            print(f"           short of {shortage.slot}: wants {shortage.requested}, most free {shortage.largest_free}")

    # What if one team queues 30 jobs at once while another submits one every two minutes?
    # FIFO serves the batch first; DRF lets the light user in as soon as a node frees up.
    heavy = [Arrival(t0, timedelta(minutes=20), Session.with_slots("AKHEAVY", {"cpu": 8, "mem": "16g"})) for _ in range(30)]
    light = [
        Arrival(t0 + timedelta(minutes=1 + 2 * i), timedelta(minutes=20), Session.with_slots("AKLIGHT", {"cpu": 8, "mem": "16g"}))
        for i in range(10)
    ]
    arrivals = heavy + light
    for queue in ("fifo", "drf"):
        report = scheduler.simulate(scheduler.Snapshot(agents=agents), arrivals, {"queue": queue}, interval=30)
        waits = ", ".join(f"{key} {k.mean_wait_secs:.0f}s" for key, k in sorted(report.keys.items()))
        print(f"{queue}: mean waits {waits}; cpu {report.utilisation['cpu']:.0%} busy; fairness {report.fairness:.3f}")


if __name__ == "__main__":
    main()
