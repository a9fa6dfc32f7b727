//! Predicates: the checks a session must pass before it may be placed, in the original's order
//! and with its names and messages.
//!
//! | name | passes when |
//! |---|---|
//! | `reserved_time` | not a batch session, or no `starts_at`, or `starts_at <= now` |
//! | `dependencies` | every session it depends on has TERMINATED successfully |
//! | `concurrency` | the keypair runs fewer sessions than `max_concurrent_sessions` (system sessions: `max_concurrent_sftp_sessions`) |
//! | `pending_session_resource_limit`* | what the keypair's pending sessions request together fits in `max_pending_session_resource_slots` |
//! | `pending_session_count_limit`* | the keypair has at most `max_pending_session_count` pending sessions |
//! | `keypair_resource_limit`* | keypair occupancy + request fits the keypair's limit |
//! | `user_resource_limit`* | user occupancy + request fits the user's limit |
//! | `user_group_resource_limit`* | project occupancy + request fits the project's limit |
//! | `domain_resource_limit`* | domain occupancy + request fits the domain's limit |
//!
//! `*`: skipped for system sessions. Usage includes the placements made earlier in the same plan.
//!
//! Differences from the original, on purpose: a pending-session limit counts the session being
//! scheduled as allowed (`count <= max`, `total fits in limit`) — the original's `<` and `>=`
//! block the only pending session of a keypair whose limit is 1 — and the concurrency counter is
//! not bumped for sessions that fail a later predicate.

use std::collections::HashMap;

use bai_core::{AccessKey, ResourceSlot, SessionStatus, SessionType};
use chrono::{DateTime, Utc};

use crate::plan::PredicateFailure;
use crate::snapshot::{PendingSession, ResourceLimit, Snapshot};

/// Running totals during one plan: the snapshot's usage plus what this plan placed.
#[derive(Debug)]
pub(crate) struct Ledger<'a> {
    snapshot: &'a Snapshot,
    // only scopes that have policies need their usage tracked
    track_keypairs: bool,
    track_users: bool,
    track_groups: bool,
    track_domains: bool,
    placed_occupied: HashMap<&'a AccessKey, ResourceSlot>,
    placed_sessions: HashMap<&'a AccessKey, u32>,
    placed_sftp: HashMap<&'a AccessKey, u32>,
    user: HashMap<&'a str, ResourceSlot>,
    group: HashMap<&'a str, ResourceSlot>,
    domain: HashMap<&'a str, ResourceSlot>,
    pending_count: HashMap<&'a AccessKey, u32>,
    pending_slots: HashMap<&'a AccessKey, ResourceSlot>,
}

fn humanize(slots: &ResourceSlot) -> String {
    slots.iter().map(|(k, v)| format!("{k}={}", v.normalize())).collect::<Vec<_>>().join(" ")
}

impl<'a> Ledger<'a> {
    /// `totals[i]` is the total request of `snapshot.pending[i]`.
    pub(crate) fn new(snapshot: &'a Snapshot, totals: &[ResourceSlot]) -> Self {
        let mut pending_count: HashMap<&AccessKey, u32> = HashMap::new();
        let mut pending_slots: HashMap<&AccessKey, ResourceSlot> = HashMap::new();
        let limited: std::collections::HashSet<&AccessKey> = snapshot
            .policies
            .keypairs
            .iter()
            .filter(|(_, p)| p.max_pending_session_count.is_some() || p.max_pending_session_resource_slots.is_some())
            .map(|(k, _)| k)
            .collect();
        if !limited.is_empty() {
            for (s, total) in snapshot.pending.iter().zip(totals) {
                if limited.contains(&s.access_key) {
                    *pending_count.entry(&s.access_key).or_insert(0) += 1;
                    *pending_slots.entry(&s.access_key).or_default() += total;
                }
            }
        }
        let policies = &snapshot.policies;
        Self {
            snapshot,
            track_keypairs: !policies.keypairs.is_empty(),
            track_users: !policies.users.is_empty(),
            track_groups: !policies.groups.is_empty(),
            track_domains: !policies.domains.is_empty(),
            placed_occupied: HashMap::new(),
            placed_sessions: HashMap::new(),
            placed_sftp: HashMap::new(),
            user: HashMap::new(),
            group: HashMap::new(),
            domain: HashMap::new(),
            pending_count,
            pending_slots,
        }
    }

    /// Runs every predicate; on failure returns the failures and the names of those that
    /// passed.
    pub(crate) fn check(
        &self,
        session: &'a PendingSession,
        total: &ResourceSlot,
        now: DateTime<Utc>,
    ) -> Result<(), (Vec<PredicateFailure>, Vec<String>)> {
        let mut failed = Vec::new();
        let mut run: [&'static str; 9] = [""; 9];
        let mut ran = 0;
        let mut record = |name: &'static str, result: Option<(String, Option<ResourceSlot>)>| {
            run[ran] = name;
            ran += 1;
            if let Some((msg, excess)) = result {
                failed.push(PredicateFailure { name: name.to_string(), msg, excess });
            }
        };
        record("reserved_time", self.reserved_time(session, now));
        record("dependencies", self.dependencies(session));
        record("concurrency", self.concurrency(session));
        if session.session_type != SessionType::System {
            record("pending_session_resource_limit", self.pending_resources(session));
            record("pending_session_count_limit", self.pending_count(session));
            let ak = &session.access_key;
            let usage = &self.snapshot.usage;
            let policies = &self.snapshot.policies;
            record(
                "keypair_resource_limit",
                policies.keypairs.get(ak).and_then(|p| {
                    let base = usage.keypairs.get(ak).map(|u| &u.occupied);
                    limit_check(
                        &p.limit,
                        base,
                        self.placed_occupied.get(ak),
                        total,
                        "Your keypair resource quota is exceeded.",
                    )
                }),
            );
            record(
                "user_resource_limit",
                policies.users.get(&session.user).and_then(|l| {
                    limit_check(
                        l,
                        usage.users.get(&session.user),
                        self.user.get(session.user.as_str()),
                        total,
                        "Your main-keypair resource quota is exceeded.",
                    )
                }),
            );
            record(
                "user_group_resource_limit",
                policies.groups.get(&session.group).and_then(|l| {
                    limit_check(
                        l,
                        usage.groups.get(&session.group),
                        self.group.get(session.group.as_str()),
                        total,
                        "Your group resource quota is exceeded.",
                    )
                }),
            );
            record(
                "domain_resource_limit",
                policies.domains.get(&session.domain).and_then(|l| {
                    limit_check(
                        l,
                        usage.domains.get(&session.domain),
                        self.domain.get(session.domain.as_str()),
                        total,
                        "Your domain resource quota is exceeded.",
                    )
                }),
            );
        }
        if failed.is_empty() {
            return Ok(());
        }
        let passed = run[..ran]
            .iter()
            .filter(|n| !failed.iter().any(|f: &PredicateFailure| f.name == **n))
            .map(|n| n.to_string())
            .collect();
        Err((failed, passed))
    }

    fn reserved_time(&self, s: &PendingSession, now: DateTime<Utc>) -> Option<(String, Option<ResourceSlot>)> {
        match (s.session_type, s.starts_at) {
            (SessionType::Batch, Some(at)) if at > now => Some(("Before start time".into(), None)),
            _ => None,
        }
    }

    fn dependencies(&self, s: &PendingSession) -> Option<(String, Option<ResourceSlot>)> {
        let waiting: Vec<String> = s
            .depends_on
            .iter()
            .filter_map(|id| match self.snapshot.dependencies.get(id) {
                Some(d) if d.status == SessionStatus::Terminated && d.succeeded => None,
                Some(d) => Some(format!("{} ({id})", d.name)),
                None => Some(format!("? ({id})")),
            })
            .collect();
        if waiting.is_empty() {
            None
        } else {
            Some((format!("Waiting dependency sessions to finish as success. ({})", waiting.join(", ")), None))
        }
    }

    fn concurrency(&self, s: &PendingSession) -> Option<(String, Option<ResourceSlot>)> {
        let ak = &s.access_key;
        let policy = self.snapshot.policies.keypairs.get(ak)?;
        let usage = self.snapshot.usage.keypairs.get(ak);
        let (limit, running) = if s.session_type == SessionType::System {
            (
                policy.max_concurrent_sftp_sessions?,
                usage.map_or(0, |u| u.running_sftp_sessions) + self.placed_sftp.get(ak).copied().unwrap_or(0),
            )
        } else {
            (
                policy.max_concurrent_sessions?,
                usage.map_or(0, |u| u.running_sessions) + self.placed_sessions.get(ak).copied().unwrap_or(0),
            )
        };
        (running >= limit).then(|| (format!("You cannot run more than {limit} concurrent sessions"), None))
    }

    fn pending_resources(&self, s: &PendingSession) -> Option<(String, Option<ResourceSlot>)> {
        let limit = self.snapshot.policies.keypairs.get(&s.access_key)?.max_pending_session_resource_slots.as_ref()?;
        let total = self.pending_slots.get(&s.access_key)?;
        let excess = total.shortfall(limit);
        (!excess.is_empty())
            .then(|| (format!("Your pending session quota is exceeded. ({})", humanize(&excess)), Some(excess)))
    }

    fn pending_count(&self, s: &PendingSession) -> Option<(String, Option<ResourceSlot>)> {
        let max = self.snapshot.policies.keypairs.get(&s.access_key)?.max_pending_session_count?;
        let count = self.pending_count.get(&s.access_key).copied().unwrap_or(0);
        (count > max).then(|| (format!("You cannot create more than {max} pending session(s)."), None))
    }

    /// Records a placed session: it runs now and is no longer pending.
    pub(crate) fn placed(&mut self, s: &'a PendingSession, total: &ResourceSlot) {
        self.left_queue(s, total);
        if self.track_keypairs && self.snapshot.policies.keypairs.contains_key(&s.access_key) {
            if s.session_type == SessionType::System {
                *self.placed_sftp.entry(&s.access_key).or_insert(0) += 1;
            } else {
                *self.placed_sessions.entry(&s.access_key).or_insert(0) += 1;
                *self.placed_occupied.entry(&s.access_key).or_default() += total;
            }
        }
        if s.session_type == SessionType::System {
            return;
        }
        if self.track_users {
            *self.user.entry(&s.user).or_default() += total;
        }
        if self.track_groups {
            *self.group.entry(&s.group).or_default() += total;
        }
        if self.track_domains {
            *self.domain.entry(&s.domain).or_default() += total;
        }
    }

    /// Records a session that leaves the queue without running (cancelled).
    pub(crate) fn left_queue(&mut self, s: &'a PendingSession, total: &ResourceSlot) {
        if self.pending_count.is_empty() {
            return;
        }
        if let Some(c) = self.pending_count.get_mut(&s.access_key) {
            *c = c.saturating_sub(1);
        }
        if let Some(p) = self.pending_slots.get_mut(&s.access_key) {
            *p -= total;
        }
    }
}

/// `None` when `base + placed + request` stays within `limit`, else the message and the excess.
fn limit_check(
    limit: &ResourceLimit,
    base: Option<&ResourceSlot>,
    placed: Option<&ResourceSlot>,
    request: &ResourceSlot,
    msg: &str,
) -> Option<(String, Option<ResourceSlot>)> {
    let mut wanted = request.clone();
    if let Some(b) = base {
        wanted += b;
    }
    if let Some(p) = placed {
        wanted += p;
    }
    let excess = limit.excess(&wanted);
    (!excess.is_empty()).then(|| (format!("{msg} (over by {})", humanize(&excess)), Some(excess)))
}
