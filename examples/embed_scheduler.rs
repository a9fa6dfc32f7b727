//! Embedding the scheduler: build a snapshot by hand, plan, read placements and reasons.
//!
//! Run with `cargo run -p bai-examples --example embed_scheduler`.

use bai_scheduler::{plan, Config, Snapshot};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let snapshot: Snapshot = serde_json::from_value(serde_json::json!({
        "agents": [
            {"id": "gpu-1", "scaling_group": "default", "architecture": "x86_64", "status": "ALIVE",
             "available_slots": {"cpu": "16", "mem": "68719476736", "cuda.shares": "4"}},
            {"id": "cpu-1", "scaling_group": "default", "architecture": "x86_64", "status": "ALIVE",
             "available_slots": {"cpu": "32", "mem": "137438953472"}}
        ],
        "pending": [
            {"id": "00000000-0000-4000-8000-000000000001", "name": "notebook", "access_key": "AKUSER1",
             "user": "alice", "group": "ml", "domain": "default", "created_at": "2026-01-01T09:00:00Z",
             "scaling_group": "default", "architecture": "x86_64",
             "kernels": [{"id": "00000000-0000-4000-8000-0000000000a1", "requested_slots": {"cpu": "4", "mem": "8589934592"}}]},
            {"id": "00000000-0000-4000-8000-000000000002", "name": "training", "access_key": "AKUSER2",
             "user": "bob", "group": "ml", "domain": "default", "created_at": "2026-01-01T09:01:00Z",
             "scaling_group": "default", "architecture": "x86_64",
             "kernels": [{"id": "00000000-0000-4000-8000-0000000000b1", "requested_slots": {"cpu": "8", "mem": "34359738368", "cuda.shares": "8"}}]}
        ]
    }))?;

    let result = plan(&snapshot, &Config::default(), "2026-01-01T09:05:00Z".parse()?);
    for session in &snapshot.pending {
        println!("{:>9}: {}", session.name, result.explain(session.id).unwrap_or_default());
    }
    Ok(())
}
