//! The original scheduler's test scenarios, reproduced on bai-scheduler, plus gang placement,
//! block reasons and explanations.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use bai_core::{AgentId, AgentStatus, ClusterMode, SessionStatus, SessionType};
use bai_scheduler::queue::{self, Fifo, QueueContext, QueuePolicy};
use bai_scheduler::selector::{self, AgentSelector, AgentView, SelectionRequest};
use bai_scheduler::{
    BandMode, BlockReason, DependencyState, GroupConfig, KeypairPolicy, KeypairUsage, ResourceLimit, RoundRobinState,
};
use chrono::TimeDelta;
use common::*;

fn original_agents(h: &mut Harness) {
    h.agent("i-001", "sg01", &[("cpu", "4"), ("mem", "4096"), ("cuda.shares", "4"), ("rocm.devices", "2")]);
    h.agent("i-101", "sg01", &[("cpu", "3"), ("mem", "2560"), ("cuda.shares", "1"), ("rocm.devices", "8")]);
}

fn mixed_agents(h: &mut Harness) {
    h.agent("i-gpu", "sg01", &[("cpu", "4"), ("mem", "4096"), ("cuda.shares", "4")]);
    h.agent("i-cpu", "sg01", &[("cpu", "3"), ("mem", "2560"), ("cuda.shares", "0")]);
}

/// P0, P1, P2 of the original fixtures.
fn original_pending(h: &mut Harness) {
    h.session("user01", "sg01", &[("cpu", "2"), ("mem", "1024"), ("cuda.shares", "0"), ("rocm.devices", "1")]);
    h.session("user02", "sg01", &[("cpu", "1"), ("mem", "2048"), ("cuda.shares", "0.5"), ("rocm.devices", "0")]);
    h.session("user03", "sg01", &[("cpu", "1"), ("mem", "1024")]);
}

fn group(queue: &str, selector: &str) -> GroupConfig {
    GroupConfig::from_names(queue, &serde_json::json!({}), selector).expect("valid names")
}

#[test]
fn loading_policies_by_name() {
    assert_eq!(group("fifo", "dispersed").queue.name(), "fifo");
    assert_eq!(group("lifo", "concentrated").queue.name(), "lifo");
    assert_eq!(group("drf", "roundrobin").selector.name(), "roundrobin");
    let err = GroupConfig::from_names("fifo", &serde_json::json!({"num_retries_to_skip": -1, "extra": 1}), "dispersed")
        .unwrap_err();
    assert!(err.to_string().contains("num_retries_to_skip"), "{err}");
    assert!(GroupConfig::from_names("fifo", &serde_json::json!({"num_retries_to_skip": 5, "extra": 1}), "dispersed")
        .is_ok());
    assert!(GroupConfig::from_names("nope", &serde_json::json!({}), "dispersed").is_err());
    assert!(GroupConfig::from_names("fifo", &serde_json::json!({}), "nope").is_err());
}

#[test]
fn fifo_dispersed_places_p0_on_the_agent_with_more_free_gpu() {
    let mut h = Harness::new();
    original_agents(&mut h);
    original_pending(&mut h);
    let plan = h.plan();
    assert_eq!(plan.placements[0].session_id, sid(0));
    assert_eq!(plan.placements[0].kernels[0].agent_id.as_str(), "i-001");
}

#[test]
fn lifo_dispersed_places_p2_first_on_i001() {
    let mut h = Harness::new();
    original_agents(&mut h);
    original_pending(&mut h);
    h.snapshot.pending[2].kernels = (0..3)
        .map(|k| bai_scheduler::KernelRequest {
            id: kid(2, k),
            requested_slots: slots(&[("cpu", "1"), ("mem", "1024")]),
        })
        .collect();
    h.config.default = group("lifo", "dispersed");
    let plan = h.plan();
    assert_eq!(plan.placements[0].session_id, sid(2));
    assert!(plan.placements[0].kernels.iter().all(|k| k.agent_id.as_str() == "i-001"));
}

/// Selector-level check of scenarios 4 and 5 (three picks against the mixed agents, no
/// occupancy updates): a CPU-only request prefers the agent without unused GPU capacity.
#[test]
fn mixed_agents_pick_by_extras() {
    let mut h = Harness::new();
    mixed_agents(&mut h);
    original_pending(&mut h);
    let prio = h.config.resource_priority.clone();
    let views: Vec<AgentView<'_>> = h
        .snapshot
        .agents
        .iter()
        .map(|a| AgentView {
            id: &a.id,
            available: &a.available_slots,
            free: a.available_slots.clone(),
            endpoint_kernels: 0,
        })
        .collect();
    let pick = |i: usize| {
        let s = &h.snapshot.pending[i];
        let req = s.total_requested();
        let r = SelectionRequest { session: s, requested: &req, resource_priority: &prio, roundrobin_next: 0 };
        selector::Dispersed.select(&r, &views).map(|j| views[j].id.to_string())
    };
    assert_eq!(pick(0), None);
    assert_eq!(pick(1).as_deref(), Some("i-gpu"));
    assert_eq!(pick(2).as_deref(), Some("i-cpu"));

    // the same through the planner, FIFO and LIFO
    for policy in ["fifo", "lifo"] {
        h.config.default = group(policy, "dispersed");
        let plan = h.plan();
        let placed: HashMap<_, _> = placed_on(&plan).into_iter().collect();
        assert_eq!(placed.get(&sid(1)).map(String::as_str), Some("i-gpu"), "{policy}");
        assert_eq!(placed.get(&sid(2)).map(String::as_str), Some("i-cpu"), "{policy}");
        assert!(matches!(plan.reason(sid(0)), Some(BlockReason::NoResources { .. })), "{policy}");
    }
}

#[test]
fn fifo_head_of_line_skip() {
    let cases: &[(u32, [Option<u32>; 3], u32)] = &[
        (5, [None, None, None], 0),
        (0, [Some(5), None, None], 0),
        (5, [Some(5), Some(4), Some(3)], 1),
        (5, [Some(5), None, None], 1),
        (5, [Some(5), Some(10), None], 2),
        (5, [Some(5), Some(5), Some(5)], 0),
        (5, [None, Some(10), None], 0),
    ];
    for (skip, retries, expected) in cases {
        let mut h = Harness::new();
        for r in retries {
            h.session("ak", "sg", &[("cpu", "1")]).retries = r.unwrap_or(0);
        }
        let band: Vec<_> = h.snapshot.pending.iter().collect();
        let usage = bai_scheduler::Usage::default();
        let capacity = slots(&[]);
        let ctx = QueueContext { scaling_group: "sg", capacity: &capacity, usage: &usage };
        let first = Fifo { num_retries_to_skip: *skip }.start(ctx, band).next().map(|s| s.id);
        assert_eq!(first, Some(sid(*expected)), "skip={skip} retries={retries:?}");
    }
}

#[test]
fn drf_picks_the_key_with_the_smallest_dominant_share() {
    let mut h = Harness::new();
    original_agents(&mut h);
    original_pending(&mut h);
    let usage = [
        ("user01", &[("cpu", "3"), ("mem", "1024"), ("rocm.devices", "1")][..]),
        ("user02", &[("cpu", "1"), ("mem", "2048"), ("cuda.shares", "0.5")][..]),
        ("user03", &[("cpu", "4"), ("mem", "4096")][..]),
    ];
    for (ak, used) in usage {
        h.snapshot.usage.keypairs.insert(
            bai_core::AccessKey::new(ak).unwrap(),
            KeypairUsage { occupied: slots(used), running_sessions: 1, running_sftp_sessions: 0 },
        );
    }
    let capacity = slots(&[("cpu", "7"), ("mem", "6656"), ("cuda.shares", "5"), ("rocm.devices", "10")]);
    let share = |ak: &str| {
        queue::dominant_share(&h.snapshot.usage.keypairs[&bai_core::AccessKey::new(ak).unwrap()].occupied, &capacity)
    };
    assert_eq!(share("user01").round_dp(4).to_string(), "0.4286");
    assert_eq!(share("user02").round_dp(4).to_string(), "0.3077");
    assert_eq!(share("user03").round_dp(4).to_string(), "0.6154");
    h.config.default = group("drf", "dispersed");
    let plan = h.plan();
    assert_eq!(plan.placements[0].session_id, sid(1));
    assert_eq!(plan.placements[0].kernels[0].agent_id.as_str(), "i-001");
}

#[test]
fn pending_timeout_cancels_old_sessions() {
    for (timeout_days, cancelled, candidates) in [(2, 1, 2), (0, 0, 3)] {
        let mut h = Harness::new();
        h.agent("i-001", "sg", &[("cpu", "100")]);
        for age in [0, 1, 3] {
            h.session("ak", "sg", &[("cpu", "1")]).created_at = epoch() - TimeDelta::days(age);
        }
        h.config.default.pending_timeout = Some(TimeDelta::days(timeout_days));
        let plan = h.plan();
        assert_eq!(plan.cancellations.len(), cancelled);
        assert_eq!(plan.placements.len(), candidates);
        if cancelled == 1 {
            assert_eq!(plan.cancellations[0].session_id, sid(2));
            assert_eq!(plan.cancellations[0].reason, "pending-timeout");
        }
    }
}

#[test]
fn explanations_cover_every_session_once_with_the_sentences_of_explain() {
    let mut h = Harness::new();
    h.agent("i-001", "sg", &[("cpu", "2")]);
    h.session("ak", "sg", &[("cpu", "1")]); // placed
    h.session("ak", "sg", &[("cpu", "4")]); // blocked: no agent has 4 CPUs
    h.session("ak", "sg", &[("cpu", "1")]).created_at = epoch() - TimeDelta::days(3); // cancelled
    h.config.default.pending_timeout = Some(TimeDelta::days(2));
    let plan = h.plan();
    let all = plan.explanations();
    assert_eq!(all.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![sid(0), sid(1), sid(2)]);
    for (id, text) in &all {
        assert_eq!(Some(text), plan.explain(*id).as_ref());
    }
    assert_eq!(all[0].1, "Scheduled: 1 kernel(s) on i-001 in scaling group \"sg\".");
    assert!(all[1].1.starts_with("Waiting: it needs {cpu: 4}"), "{}", all[1].1);
    assert_eq!(all[2].1, "Cancelled (pending-timeout).");
}

#[test]
fn designated_agent_with_odd_capacities_never_panics() {
    for (capacity, placed) in [
        (None, false),
        (Some(vec![]), false),
        (Some(vec![("cpu", "100"), ("mem", "100000")]), true),
        (Some(vec![("cpu", "0"), ("mem", "0")]), false),
    ] {
        let mut h = Harness::new();
        match &capacity {
            Some(c) => {
                h.agent("i-001", "sg01", c);
            }
            None => {
                h.agent("i-001", "sg01", &[]).status = AgentStatus::Lost;
            }
        }
        h.session("ak", "sg01", &[("cpu", "1"), ("mem", "512")]).designated_agents =
            vec![AgentId::new("i-001").unwrap()];
        let plan = h.plan();
        assert_eq!(plan.placements.len() == 1, placed, "{capacity:?}");
        if !placed {
            let reason = plan.reason(sid(0)).expect("blocked");
            assert_eq!(reason.status_info(), "no-available-instances");
            assert!(matches!(reason, BlockReason::DesignatedAgentUnavailable { .. }));
        }
    }
}

#[test]
fn reserved_batch_sessions_wait_for_their_start_time() {
    for (offset, passes) in [(Some(1), false), (Some(-1), true), (None, true)] {
        let mut h = Harness::new();
        h.agent("i-001", "sg", &[("cpu", "4")]);
        let s = h.session("ak", "sg", &[("cpu", "1")]);
        s.session_type = SessionType::Batch;
        s.starts_at = offset.map(|o| epoch() + TimeDelta::seconds(o));
        let plan = h.plan();
        assert_eq!(plan.placements.len() == 1, passes, "{offset:?}");
        if !passes {
            let Some(BlockReason::PredicatesFailed { failed, passed }) = plan.reason(sid(0)) else {
                panic!("blocked by predicates")
            };
            assert_eq!(failed[0].name, "reserved_time");
            assert_eq!(failed[0].msg, "Before start time");
            assert!(passed.contains(&"dependencies".to_string()));
        }
    }
}

#[test]
fn priority_bands() {
    for (policy, expected) in [("fifo", [3, 0, 2, 4, 1]), ("lifo", [3, 4, 2, 0, 1])] {
        let mut h = Harness::new();
        h.agent("i-001", "sg", &[("cpu", "100")]);
        for p in [10, 8, 10, 12, 10] {
            h.session("ak", "sg", &[("cpu", "1")]).priority = p;
        }
        h.config.default = group(policy, "dispersed");
        h.config.bands = BandMode::AllBands;
        let order: Vec<_> = h.plan().placements.iter().map(|p| p.session_id).collect();
        assert_eq!(order, expected.map(sid), "{policy}");

        // the original's behaviour: only the highest band runs
        h.config.bands = BandMode::HighestOnly;
        let plan = h.plan();
        assert_eq!(plan.placements.len(), 1);
        assert_eq!(plan.placements[0].session_id, sid(3));
        assert_eq!(plan.reason(sid(1)), Some(&BlockReason::LowerPriority { priority: 8, scheduled_priority: 12 }));
        assert!(!plan.reason(sid(1)).unwrap().counts_as_retry());
    }
}

#[test]
fn roundrobin_cycles_through_equal_agents() {
    let mut h = Harness::new();
    for i in 0..10 {
        h.agent(&format!("i-{i:03}"), "sg", &[("cpu", "100"), ("mem", "100000")]);
    }
    for _ in 0..20 {
        h.session("ak", "sg", &[("cpu", "1"), ("mem", "1")]);
    }
    h.config.default = group("fifo", "roundrobin");
    let plan = h.plan();
    let agents: Vec<_> = placed_on(&plan).into_iter().map(|(_, a)| a).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("i-{:03}", i % 10)).collect();
    assert_eq!(agents, expected);
    assert_eq!(
        plan.roundrobin_next,
        vec![RoundRobinState { scaling_group: "sg".into(), architecture: "x86_64".into(), next_index: 0 }]
    );
}

#[test]
fn roundrobin_with_occupancy() {
    let mut h = Harness::new();
    for (id, cpu, mem) in
        [("i-001", "8", "4096"), ("i-002", "4", "2048"), ("i-003", "2", "1024"), ("i-004", "1", "512")]
    {
        h.agent(id, "sg", &[("cpu", cpu), ("mem", mem)]);
    }
    for _ in 0..8 {
        h.session("ak", "sg", &[("cpu", "2"), ("mem", "500")]);
    }
    h.config.default = group("fifo", "roundrobin");
    let plan = h.plan();
    let agents: Vec<_> = placed_on(&plan).into_iter().map(|(_, a)| a).collect();
    assert_eq!(agents, ["i-001", "i-002", "i-003", "i-001", "i-002", "i-001", "i-001"]);
    assert!(matches!(plan.reason(sid(7)), Some(BlockReason::NoResources { .. })));
}

#[test]
fn concentrated_spreads_endpoint_replicas() {
    for (counts, expected) in [
        (vec![], "i-001"),
        (vec![("i-001", 1), ("i-002", 1)], "i-003"),
        (vec![("i-001", 2), ("i-002", 1), ("i-003", 2)], "i-002"),
    ] {
        let mut h = Harness::new();
        h.agent("i-001", "sg", &[("cpu", "1"), ("mem", "512")]);
        h.agent("i-002", "sg", &[("cpu", "4"), ("mem", "2048")]);
        h.agent("i-003", "sg", &[("cpu", "4"), ("mem", "2048")]);
        let s = h.session("ak", "sg", &[("cpu", "1"), ("mem", "512")]);
        s.session_type = SessionType::Inference;
        s.endpoint_kernel_counts = Some(counts.iter().map(|(a, n)| (AgentId::new(*a).unwrap(), *n)).collect());
        h.config.default = group("fifo", "concentrated");
        let plan = h.plan();
        assert_eq!(plan.placements[0].kernels[0].agent_id.as_str(), expected, "{counts:?}");
    }
}

#[test]
fn multi_node_sessions_are_all_or_nothing() {
    let mut h = Harness::new();
    h.agent("i-a", "sg", &[("cpu", "4"), ("mem", "4096")]);
    h.agent("i-b", "sg", &[("cpu", "4"), ("mem", "4096")]);
    // 3 kernels of 3 CPUs: only two agents can take one each
    h.session_with_kernels("ak", "sg", &[("cpu", "3"), ("mem", "1024")], 3).cluster_mode = ClusterMode::MultiNode;
    // then 2 kernels of 3 CPUs fit, one per agent
    h.session_with_kernels("ak", "sg", &[("cpu", "3"), ("mem", "1024")], 2).cluster_mode = ClusterMode::MultiNode;
    let plan = h.plan();
    let Some(BlockReason::NoResources { kernel_index, shortages, agents_considered, .. }) = plan.reason(sid(0)) else {
        panic!("gang blocked: {:?}", plan.reason(sid(0)))
    };
    assert_eq!(*kernel_index, Some(2));
    assert_eq!(*agents_considered, 2);
    assert_eq!(shortages[0].slot, "cpu");
    assert_eq!(shortages[0].largest_free.to_string(), "1");
    let p = plan.placement(sid(1)).expect("second gang placed");
    let mut agents: Vec<_> = p.kernels.iter().map(|k| k.agent_id.as_str()).collect();
    agents.sort();
    assert_eq!(agents, ["i-a", "i-b"], "the first gang's reservations were rolled back");
    let text = plan.explain(sid(0)).unwrap();
    assert_eq!(text, "Waiting: kernel #2 needs {cpu: 3, mem: 1024}, and none of the 2 agent(s) considered has enough cpu 3 (most free: 1).");
}

#[test]
fn single_node_sessions_stay_on_one_agent() {
    let mut h = Harness::new();
    h.agent("i-a", "sg", &[("cpu", "4")]);
    h.agent("i-b", "sg", &[("cpu", "4")]);
    h.session_with_kernels("ak", "sg", &[("cpu", "2")], 3);
    let plan = h.plan();
    let Some(BlockReason::NoResources { requested, shortages, .. }) = plan.reason(sid(0)) else { panic!() };
    assert_eq!(requested, &slots(&[("cpu", "6")]));
    assert_eq!(shortages.len(), 1);
    assert_eq!(
        plan.explain(sid(0)).unwrap(),
        "Waiting: it needs {cpu: 6}, and none of the 2 agent(s) considered has enough cpu 6 (most free: 4)."
    );
}

#[test]
fn fragmentation_is_explained() {
    let mut h = Harness::new();
    h.agent("i-a", "sg", &[("cpu", "4"), ("mem", "1")]);
    h.agent("i-b", "sg", &[("cpu", "1"), ("mem", "4")]);
    h.session("ak", "sg", &[("cpu", "2"), ("mem", "2")]);
    let plan = h.plan();
    assert_eq!(
        plan.explain(sid(0)).unwrap(),
        "Waiting: it needs {cpu: 2, mem: 2}, and every slot is free on some of the 2 agent(s) considered, but not all on one."
    );
}

#[test]
fn agents_that_cannot_take_work_are_skipped() {
    let mut h = Harness::new();
    h.agent("i-lost", "sg", &[("cpu", "8")]).status = AgentStatus::Lost;
    h.agent("i-drained", "sg", &[("cpu", "8")]).schedulable = false;
    h.agent("i-arm", "sg", &[("cpu", "8")]).architecture = "aarch64".into();
    h.agent("i-other", "other", &[("cpu", "8")]);
    h.session("ak", "sg", &[("cpu", "1")]);
    let plan = h.plan();
    assert_eq!(
        plan.reason(sid(0)),
        Some(&BlockReason::NoAgents { scaling_group: "sg".into(), architecture: "x86_64".into(), agents_in_group: 1 })
    );
    assert_eq!(
        plan.explain(sid(0)).unwrap(),
        "Waiting: none of the 1 alive agent(s) of scaling group \"sg\" runs x86_64."
    );
}

#[test]
fn predicates_report_every_failure_by_name() {
    let mut h = Harness::new();
    h.agent("i-001", "sg", &[("cpu", "100"), ("mem", "100000")]);
    let ak = bai_core::AccessKey::new("ak").unwrap();
    h.snapshot.policies.keypairs.insert(
        ak.clone(),
        KeypairPolicy {
            limit: ResourceLimit { total_resource_slots: slots(&[("cpu", "4")]), ..Default::default() },
            max_concurrent_sessions: Some(2),
            ..Default::default()
        },
    );
    h.snapshot
        .usage
        .keypairs
        .insert(ak, KeypairUsage { occupied: slots(&[("cpu", "1")]), running_sessions: 1, running_sftp_sessions: 0 });
    h.snapshot.policies.domains.insert(
        "default".into(),
        ResourceLimit { total_resource_slots: slots(&[("cpu", "50")]), ..Default::default() },
    );
    h.session("ak", "sg", &[("cpu", "2")]); // fits: 1 + 2 <= 4, 2 sessions <= 2
    h.session("ak", "sg", &[("cpu", "2")]); // concurrency and keypair limit fail
    let dep = h.session("ak", "sg", &[("cpu", "1")]);
    dep.depends_on = vec![sid(100)];
    let plan = h.plan();
    assert!(plan.placement(sid(0)).is_some());
    let Some(BlockReason::PredicatesFailed { failed, .. }) = plan.reason(sid(1)) else { panic!() };
    let names: Vec<_> = failed.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["concurrency", "keypair_resource_limit"]);
    assert_eq!(failed[0].msg, "You cannot run more than 2 concurrent sessions");
    assert_eq!(failed[1].excess, Some(slots(&[("cpu", "1")])));
    assert_eq!(
        plan.explain(sid(1)).unwrap(),
        "Waiting: You cannot run more than 2 concurrent sessions (concurrency); Your keypair resource quota is exceeded. (over by cpu=1) (keypair_resource_limit)."
    );
    let Some(BlockReason::PredicatesFailed { failed, .. }) = plan.reason(sid(2)) else { panic!() };
    assert_eq!(failed[0].name, "dependencies");

    // a finished dependency lets it through
    h.snapshot
        .dependencies
        .insert(sid(100), DependencyState { name: "prep".into(), status: SessionStatus::Terminated, succeeded: true });
    h.snapshot.policies.keypairs.clear();
    let plan = h.plan();
    assert!(plan.placement(sid(2)).is_some());
}

#[test]
fn custom_selector_through_the_trait() {
    #[derive(Debug)]
    struct LastFitting;
    impl AgentSelector for LastFitting {
        fn name(&self) -> &str {
            "last-fitting"
        }
        fn select(&self, req: &SelectionRequest<'_>, agents: &[AgentView<'_>]) -> Option<usize> {
            agents.iter().rposition(|a| req.requested.fits_in(&a.free))
        }
    }
    let mut h = Harness::new();
    h.agent("i-a", "sg", &[("cpu", "4")]);
    h.agent("i-b", "sg", &[("cpu", "4")]);
    h.agent("i-c", "sg", &[("cpu", "1")]);
    for _ in 0..3 {
        h.session("ak", "sg", &[("cpu", "2")]);
    }
    h.config.default.selector = Arc::new(LastFitting);
    let agents: Vec<_> = placed_on(&h.plan()).into_iter().map(|(_, a)| a).collect();
    assert_eq!(agents, ["i-b", "i-b", "i-a"]);
}

#[test]
fn session_types_and_invalid_requests_are_reported() {
    let mut h = Harness::new();
    h.agent("i-a", "sg", &[("cpu", "4")]);
    h.session("ak", "sg", &[("cpu", "1")]).session_type = SessionType::Inference;
    h.session("ak", "sg", &[("cpu", "1")]).kernels.clear();
    h.config.default.allowed_session_types = Some(vec![SessionType::Interactive, SessionType::Batch]);
    let plan = h.plan();
    assert_eq!(plan.reason(sid(0)), Some(&BlockReason::SessionTypeNotAllowed { session_type: "inference".into() }));
    assert_eq!(plan.explain(sid(1)).unwrap(), "Not schedulable: the session has no kernels.");
}

#[test]
fn the_plan_serialises_for_the_manager() {
    let mut h = Harness::new();
    h.agent("i-a", "sg", &[("cpu", "1")]);
    h.session("ak", "sg", &[("cpu", "1")]);
    h.session("ak", "sg", &[("cpu", "1")]);
    let plan = h.plan();
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["placements"][0]["kernels"][0]["agent_id"], "i-a");
    assert_eq!(json["blocked"][0]["reason"]["kind"], "no_resources");
    let back: bai_scheduler::Plan = serde_json::from_value(json).unwrap();
    assert_eq!(back, plan);
}
