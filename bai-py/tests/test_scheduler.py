"""bai.scheduler: snapshots from dicts and dataclasses, plans, explanations, config, simulate."""

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import List

import pytest

import bai
from bai import scheduler
from bai.scheduler import Agent, Arrival, Config, Kernel, Session, Snapshot

NOW = datetime(2026, 1, 1, 9, 5, tzinfo=timezone.utc)


def sid(n: int) -> str:
    return str(uuid.UUID(int=n))


def agent(name, **slots):
    return {"id": name, "scaling_group": "default", "architecture": "x86_64", "status": "ALIVE", "available_slots": slots}


def session(n, access_key="AK1", kernels=({"cpu": 1},), **extra):
    s = {
        "id": sid(n),
        "name": f"s{n}",
        "access_key": access_key,
        "user": "alice",
        "group": "ml",
        "domain": "default",
        "created_at": f"2026-01-01T09:00:{n:02d}Z",
        "scaling_group": "default",
        "architecture": "x86_64",
        "kernels": [{"id": str(uuid.UUID(int=1000 + 10 * n + k)), "requested_slots": r} for k, r in enumerate(kernels)],
    }
    s.update(extra)
    return s


def small_cluster():
    return {
        "agents": [agent("gpu-1", cpu=16, mem="64g", **{"cuda.shares": 4}), agent("cpu-1", cpu=32, mem="128g")],
        "pending": [
            session(1, kernels=[{"cpu": 4, "mem": "8g"}]),
            session(2, kernels=[{"cpu": 8, "mem": "32g", "cuda.shares": 2}]),
            session(3, kernels=[{"cpu": 8, "mem": "32g", "cuda.shares": 8}]),
        ],
    }


def test_plan_places_a_small_cluster():
    plan = scheduler.plan(small_cluster(), now=NOW)
    assert (plan.placement_count, plan.blocked_count, plan.cancellation_count) == (2, 1, 0)
    # dispersed: the CPU-only session goes to the agent with the most free CPU; the GPU one to the GPU node
    assert plan.assignments == {sid(1): ["cpu-1"], sid(2): ["gpu-1"]}
    placed = plan.placement(sid(2))
    assert placed.session_id == sid(2) and placed.scaling_group == "default"
    [kernel] = placed.kernels
    assert kernel.agent_id == "gpu-1"
    assert kernel.kernel_id == str(uuid.UUID(int=1020))
    assert kernel.slots == {"cpu": 8, "mem": "32g", "cuda.shares": 2}
    assert plan.placement(uuid.UUID(int=3)) is None
    assert [p.session_id for p in plan.placements] == [sid(1), sid(2)]


def test_explain_gives_the_reason_with_its_numbers():
    plan = scheduler.plan(small_cluster(), now=NOW)
    [blocked] = plan.blocked
    assert blocked.session_id == sid(3)
    reason = blocked.reason
    assert reason.kind == "no_resources"
    assert reason.status_info == "no-available-instances"
    assert reason.counts_as_retry
    assert reason.agents_considered == 2
    assert reason.requested == {"cpu": 8, "mem": "32g", "cuda.shares": 8}
    [shortage] = reason.shortages
    assert (shortage.slot, shortage.requested, shortage.largest_free) == ("cuda.shares", 8, 2)
    assert reason.details["shortages"] == [{"slot": "cuda.shares", "requested": "8", "largest_free": "2"}]
    sentence = "Waiting: it needs {cpu: 8, cuda.shares: 8, mem: 34359738368}, and none of the 2 agent(s) considered has enough cuda.shares 8 (most free: 2)."
    assert reason.message == sentence
    assert plan.explain(sid(3)) == sentence
    assert plan.reason(sid(3)) == reason
    assert plan.explain(sid(1)) == 'Scheduled: 1 kernel(s) on cpu-1 in scaling group "default".'
    assert plan.explain(sid(99)) is None
    assert scheduler.explain(small_cluster(), now=NOW) == plan.explanations()
    assert set(plan.explanations()) == {sid(1), sid(2), sid(3)}


def test_predicate_failures_are_reported_by_name():
    data = small_cluster()
    data["policies"] = {"keypairs": {"AK1": {"max_concurrent_sessions": 1}}}
    data["usage"] = {"keypairs": {"AK1": {"running_sessions": 1, "occupied": {"cpu": 1, "mem": "1g"}}}}
    plan = scheduler.plan(data, now=NOW)
    assert plan.placement_count == 0
    reason = plan.reason(sid(1))
    assert reason.kind == "predicates_failed" and reason.status_info == "predicate-checks-failed"
    [failure] = reason.failed_predicates
    assert failure.name == "concurrency"
    assert failure.msg == "You cannot run more than 1 concurrent sessions"
    assert "concurrency" not in reason.passed_predicates and reason.passed_predicates
    assert plan.explain(sid(1)) == "Waiting: You cannot run more than 1 concurrent sessions (concurrency)."


def test_priority_bands_and_pending_timeout():
    data = {"agents": [agent("a", cpu=4)], "pending": [session(1, priority=20), session(2), session(3, created_at="2025-12-01T00:00:00Z")]}
    plan = scheduler.plan(data, now=NOW)
    assert plan.reason(sid(2)).kind == "lower_priority"
    assert plan.reason(sid(2)).details == {"priority": 10, "scheduled_priority": 20}
    assert not plan.reason(sid(2)).counts_as_retry
    plan = scheduler.plan(data, {"pending_timeout": timedelta(days=1), "all_bands": True}, now=NOW)
    assert [c.session_id for c in plan.cancellations] == [sid(3)]
    assert plan.cancellations[0].reason == "pending-timeout"
    assert plan.explain(sid(3)) == "Cancelled (pending-timeout)."
    assert plan.placement_count == 2


def test_dataclasses_of_ones_own_and_the_provided_ones():
    @dataclass
    class MyKernel:
        id: uuid.UUID
        requested_slots: dict

    @dataclass
    class MySession:
        id: uuid.UUID
        access_key: str
        kernels: List[MyKernel]
        created_at: datetime
        user: str = "bob"
        group: str = "g"
        domain: str = "d"
        scaling_group: str = "default"
        architecture: str = "x86_64"
        priority: int = 10

    @dataclass
    class Cluster:
        agents: list
        pending: list = field(default_factory=list)

    mine = MySession(uuid.UUID(int=7), "AK2", [MyKernel(uuid.UUID(int=70), {"cpu": 2, "mem": "2g"})], datetime(2026, 1, 1))
    provided = Session.with_slots("AK3", {"cpu": 1, "mem": bai.BinarySize("1g")}, kernels=2, id=uuid.UUID(int=8))
    snapshot = Snapshot(Cluster(agents=[Agent("n1", {"cpu": 2, "mem": "4g"}), Agent("n2", bai.ResourceSlot({"cpu": 2, "mem": "4g"}))], pending=[mine, provided]))
    assert (snapshot.agent_count, snapshot.pending_count) == (2, 2)
    pending = snapshot.to_dict()["pending"]
    assert pending[0]["created_at"].startswith("2026-01-01T00:00:00")  # a naive datetime is UTC
    assert pending[1]["cluster_mode"] == "multi-node"
    plan = scheduler.plan(snapshot, now=NOW)
    assert plan.placement_count == 2
    assert len(plan.placement(uuid.UUID(int=8)).kernels) == 2
    # keyword arguments work as well, and a Snapshot converts back to the same Snapshot
    again = Snapshot(agents=[Agent("n1", {"cpu": 2, "mem": "4g"})], pending=[provided])
    assert Snapshot(again.to_dict()).to_json() == again.to_json()


def test_snapshot_json_is_the_rust_form():
    snapshot = Snapshot(small_cluster())
    text = snapshot.to_json()
    data = json.loads(text)
    assert data["agents"][0]["available_slots"] == {"cpu": "16", "cuda.shares": "4", "mem": "68719476736"}
    assert Snapshot.from_json(text).to_json() == text
    assert scheduler.plan(Snapshot.from_json(text), now=NOW).assignments == scheduler.plan(snapshot, now=NOW).assignments
    with pytest.raises(bai.InvalidSnapshotError, match=r"agents\[0\]"):
        Snapshot.from_json('{"agents": [{"id": "x"}], "pending": []}')


@pytest.mark.parametrize(
    "mutate, path, reason",
    [
        (lambda d: d["agents"][1].pop("scaling_group"), "agents[1]", "missing field `scaling_group`"),
        (lambda d: d["pending"][0]["kernels"][0].update(id="nope"), "pending[0].kernels[0].id", "UUID parsing failed"),
        (lambda d: d["pending"][2]["kernels"][0]["requested_slots"].update(mem="lots"), "pending[2].kernels[0].requested_slots", 'invalid value for slot "mem"'),
        (lambda d: d["agents"][0].update(status="SLEEPY"), "agents[0].status", "invalid agent status"),
        (lambda d: d["pending"][1].update(created_at=object()), "pending[1].created_at", "unsupported value of type object"),
    ],
)
def test_bad_input_names_where_and_why(mutate, path, reason):
    data = small_cluster()
    mutate(data)
    with pytest.raises(bai.InvalidSnapshotError) as err:
        scheduler.plan(data, now=NOW)
    assert isinstance(err.value, bai.BaiError) and isinstance(err.value, ValueError)
    assert err.value.path == path
    assert str(err.value).startswith(f"{path}: ")
    assert reason in str(err.value)


def test_config():
    data = {"agents": [agent("a", cpu=4), agent("b", cpu=8)], "pending": [session(1), session(2)]}
    dispersed = scheduler.plan(data, now=NOW)
    concentrated = scheduler.plan(data, Config(selector="concentrated"), now=NOW)
    assert list(dispersed.assignments.values()) == [["b"], ["b"]]  # the most free CPU, twice
    assert list(concentrated.assignments.values()) == [["a"], ["a"]]
    per_group = Config(groups={"default": {"queue": "drf", "selector": "concentrated"}})
    assert per_group.groups == ["default"] and per_group.queue == "fifo"
    assert scheduler.plan(data, per_group, now=NOW).assignments == concentrated.assignments
    assert repr(Config(queue="lifo")) == "Config(queue='lifo', selector='dispersed', groups=[], all_bands=False)"
    rejected = scheduler.plan({**data, "pending": [session(1, session_type="batch")]}, {"allowed_session_types": ["interactive"]}, now=NOW)
    assert rejected.reason(sid(1)).kind == "session_type_not_allowed"


@pytest.mark.parametrize(
    "make, field_name, text",
    [
        (lambda: Config(queue="random"), "scheduler", "random"),
        (lambda: Config(selector="nope"), "agent_selection_strategy", "unknown strategy"),
        (lambda: Config(queue_options={"num_retries_to_skip": -1}), "num_retries_to_skip", "num_retries_to_skip"),
        (lambda: Config(groups={"sg": {"selectr": "dispersed"}}), "groups.sg.selectr", "unknown option"),
        (lambda: Config(allowed_session_types=["party"]), "allowed_session_types", "invalid session type"),
        (lambda: scheduler.plan({"agents": [], "pending": []}, {"speed": "max"}), "speed", "unknown option"),
    ],
)
def test_bad_config_raises_invalid_config(make, field_name, text):
    with pytest.raises(bai.InvalidConfigError) as err:
        make()
    assert text in str(err.value)
    assert field_name in (err.value.field or str(err.value))


def test_times_and_ids_are_checked():
    with pytest.raises(bai.InvalidValueError, match="now"):
        scheduler.plan({"agents": [], "pending": []}, now="yesterday")
    plan = scheduler.plan({"agents": [], "pending": []}, now="2026-01-01T00:00:00+09:00")
    assert plan.placement_count == 0
    with pytest.raises(bai.InvalidValueError, match="invalid session id"):
        plan.explain("not-a-uuid")


def test_simulate_runs_sessions_one_after_another():
    # three 2-CPU sessions of 60 s on one 2-CPU node (the Rust simulator's own scenario)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    node = {"agents": [agent("i-1", cpu=2)], "pending": []}
    arrivals = [
        Arrival(at=t0, duration=timedelta(seconds=60), session=session(i, access_key="bbb" if i == 2 else "aaa", kernels=[{"cpu": 2}]))
        for i in range(3)
    ]
    report = scheduler.simulate(node, arrivals)
    a, b = report.keys["aaa"], report.keys["bbb"]
    assert (a.submitted, a.started, b.started) == (2, 2, 1)
    assert a.max_wait_secs == 60.0 and b.max_wait_secs == 120.0
    assert report.still_waiting == 0
    assert abs(report.utilisation["cpu"] - 1.0) < 0.2
    assert 0.5 < report.fairness <= 1.0
    # arrivals as dicts, durations in seconds, created_at left out: the same report
    as_dicts = [{"at": t0.isoformat(), "duration": 60, "session": {k: v for k, v in session(i, access_key="bbb" if i == 2 else "aaa", kernels=[{"cpu": 2}]).items() if k != "created_at"}} for i in range(3)]
    assert scheduler.simulate(node, as_dicts, interval=10) == report
    assert report.to_dict()["keys"]["aaa"]["started"] == 2
    with pytest.raises(bai.InvalidSnapshotError, match=r"arrivals\[0\]\.duration"):
        scheduler.simulate(node, [{"at": t0, "session": session(1)}])


def big_snapshot(agents: int, sessions: int) -> Snapshot:
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return Snapshot(
        agents=[agent(f"i-{i:05d}", cpu=64, mem=f"{256 + i % 7}g") for i in range(agents)],
        pending=[
            {
                "id": uuid.UUID(int=i + 1),
                "access_key": f"AK{i % 50}",
                "user": "u",
                "group": "g",
                "domain": "d",
                "created_at": t0 + timedelta(milliseconds=i),
                "scaling_group": "default",
                "architecture": "x86_64",
                "kernels": [{"id": uuid.UUID(int=10**9 + i), "requested_slots": {"cpu": 1 + i % 4, "mem": f"{1 + i % 16}g"}}],
            }
            for i in range(sessions)
        ],
    )


def test_the_gil_is_released_while_planning():
    snapshot = big_snapshot(3000, 40000)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        time.sleep(0.05)
        started = time.perf_counter()
        plan = scheduler.plan(snapshot, now=NOW)
        ended = time.perf_counter()
    finally:
        stop.set()
        thread.join()
    during = [t for t in ticks if started < t < ended]
    # with the GIL held for the whole plan, the ticker could not run a single line in between
    assert plan.placement_count > 0
    assert len(during) >= 5, f"{len(during)} ticks during a {1000 * (ended - started):.0f} ms plan"


def test_plans_in_threads_agree_with_a_plan_alone():
    snapshot = big_snapshot(200, 3000)
    alone = scheduler.plan(snapshot, now=NOW).to_json()
    results = [None] * 4

    def run(i):
        results[i] = scheduler.plan(snapshot, now=NOW).to_json()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [alone] * 4
