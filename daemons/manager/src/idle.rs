//! Idle checkers: sessions left idle are terminated with a reason users can read, as the
//! original's `idle.py` does.
//!
//! Three checkers, each a pure function of what is known about a session and the time
//! ([`check_network_timeout`], [`check_session_lifetime`], [`check_utilization`]):
//!
//! - `session_lifetime` (always on): older than the keypair resource policy's
//!   `max_session_lifetime` (0: unlimited) → `idle-session-lifetime`;
//! - `network_timeout`: no user traffic (code execution, app-proxy traffic, file transfers)
//!   for the policy's `idle_timeout` (0: never; negative: the configured `threshold`), while no
//!   app connection is open; batch sessions are exempt → `idle-timeout`;
//! - `utilization`: after `initial-grace-period`, the average utilisation of the session's
//!   kernels over the window (the policy's `idle_timeout` when not negative, else
//!   `time-window`) is under the `resource-thresholds` — all of them with `and`, any with
//!   `or`; resources the session holds none of, or that no kernel reports, do not count →
//!   `idle-utilization`.
//!
//! [`IdleState`] holds what the checks read besides the database: the sessions' last traffic
//! and open app connections (the API records them), the kernels' latest statistics (agents
//! send them in their heartbeats' `kernel_stats`) and each session's utilisation samples.
//! It lives in the manager's memory: with several managers, each keeps what its own API
//! served and the heartbeats it consumed.
//!
//! [`check_sessions`] runs every `[idle] check-interval` in the manager core: every RUNNING
//! session is checked, and one found idle is destroyed the normal way with the checker's reason
//! as `status_info` and `status_data` `{"idle_checker": …}` saying why. [`report`] is the
//! original's `idle_checks` (GraphQL `compute_session.idle_checks`, REST `idleChecks`): per
//! checker `{remaining, remaining_time_type, extra}`, `remaining` in seconds (-1 once expired,
//! null when the checker does not apply).
//!
//! [`report`] runs on every `GET /session/{ref}`, so the resource policy limits it needs (two
//! queries: the owner's keypair, then its policy) come from [`PolicyLimits`], a small cache
//! in [`IdleState`]: an access key's limits are kept for [`POLICY_LIMITS_TTL`] (10 s), at
//! most [`POLICY_LIMITS_MAX`] keys, and dropped at once when this manager changes a keypair,
//! a user or a keypair resource policy (the GraphQL mutations call
//! [`PolicyLimits::invalidate`] and [`PolicyLimits::clear`]); another manager's change is seen
//! within the TTL. Sessions and kernels are never cached, and [`check_sessions`], which acts
//! on the limits, reads them fresh on every pass.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bai_core::{KernelId, ResourceSlot, SessionId, SessionStatus, SessionType};
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use serde_json::{json, Map, Value};

use crate::config::{ConfigError, DurationValue, EtcdSection, IdleCheckersSection, IdleSection};
use crate::db::entities::session;
use crate::db::repo;
use crate::db::DbError;
use crate::manager::Manager;

/// The `network_timeout` checker's name.
pub const NETWORK_TIMEOUT: &str = "network_timeout";
/// The `session_lifetime` checker's name.
pub const SESSION_LIFETIME: &str = "session_lifetime";
/// The `utilization` checker's name.
pub const UTILIZATION: &str = "utilization";

/// `remaining` once a checker's time is up (the original's `IDLE_TIMEOUT_VALUE`).
pub const EXPIRED: f64 = -1.0;

/// Statistics older than this are not used (the agent died, or stopped reporting a kernel).
pub const STATS_MAX_AGE: Duration = Duration::from_secs(120);

/// The utilisation metrics, and the slot (prefix) a session must hold for each to count.
pub const METRICS: [(&str, &str); 5] =
    [("cpu_util", "cpu"), ("mem", "mem"), ("cuda_util", "cuda"), ("cuda_mem", "cuda"), ("atom_mem", "atom")];

/// How the utilisation checker combines its thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdOperator {
    /// Idle when every resource is under its threshold.
    And,
    /// Idle when any resource is under its threshold.
    Or,
}

impl ThresholdOperator {
    /// `and` or `or`.
    pub fn as_str(self) -> &'static str {
        match self {
            ThresholdOperator::And => "and",
            ThresholdOperator::Or => "or",
        }
    }
}

/// The `utilization` checker's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct UtilizationConfig {
    /// The window when the resource policy's `idle_timeout` is negative.
    pub time_window: Duration,
    /// How long after creation a session is left alone.
    pub initial_grace_period: Duration,
    /// How thresholds combine.
    pub operator: ThresholdOperator,
    /// Metric → least average percentage that counts as in use.
    pub thresholds: BTreeMap<String, f64>,
}

/// The checked idle settings (see [`IdleConfig::from_section`]).
#[derive(Debug, Clone, PartialEq)]
pub struct IdleConfig {
    /// How often sessions are checked.
    pub check_interval: Duration,
    /// `network_timeout`'s default threshold, when that checker is enabled.
    pub network_timeout: Option<Duration>,
    /// `utilization`'s settings, when that checker is enabled.
    pub utilization: Option<UtilizationConfig>,
}

impl Default for IdleConfig {
    fn default() -> Self {
        Self { check_interval: Duration::from_secs(15), network_timeout: None, utilization: None }
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), reason: reason.into() }
}

fn duration(field: &str, value: &DurationValue) -> Result<Duration, ConfigError> {
    value.parse().map_err(|reason| invalid(format!("idle.{field}"), reason))
}

impl IdleConfig {
    /// Checks `[idle]`: every duration, the operator, the metric names and the enabled
    /// checkers' names; errors name the key.
    pub fn from_section(s: &IdleSection) -> Result<Self, ConfigError> {
        let check_interval = duration("check-interval", &s.check_interval)?;
        if check_interval < Duration::from_millis(100) || check_interval > Duration::from_secs(86_400) {
            return Err(invalid("idle.check-interval", "must be between 0.1 s and 1 day"));
        }
        let network = s.checkers.network_timeout.clone().unwrap_or_default();
        let threshold = duration("checkers.network_timeout.threshold", &network.threshold)?;
        let u = s.checkers.utilization.clone().unwrap_or_default();
        let prefix = "checkers.utilization";
        let operator = match u.thresholds_check_operator.trim() {
            "and" => ThresholdOperator::And,
            "or" => ThresholdOperator::Or,
            other => {
                return Err(invalid(
                    format!("idle.{prefix}.thresholds-check-operator"),
                    format!("{other:?} is neither \"and\" nor \"or\""),
                ))
            }
        };
        let mut thresholds = BTreeMap::new();
        for (metric, value) in u.resource_thresholds.iter().flatten() {
            let field = format!("idle.{prefix}.resource-thresholds.{metric}");
            if !METRICS.iter().any(|(m, _)| m == metric) {
                let known: Vec<&str> = METRICS.iter().map(|(m, _)| *m).collect();
                return Err(invalid(field, format!("unknown metric; expected one of {}", known.join(", "))));
            }
            if let Some(t) = value {
                if !(t.average.is_finite() && t.average >= 0.0) {
                    return Err(invalid(field + ".average", format!("{} is not a percentage >= 0", t.average)));
                }
                thresholds.insert(metric.clone(), t.average);
            }
        }
        let utilization = UtilizationConfig {
            time_window: duration(&format!("{prefix}.time-window"), &u.time_window)?,
            initial_grace_period: duration(&format!("{prefix}.initial-grace-period"), &u.initial_grace_period)?,
            operator,
            thresholds,
        };
        let mut config = IdleConfig { check_interval, ..Default::default() };
        for name in &s.enabled {
            match name.trim() {
                NETWORK_TIMEOUT | "network-timeout" => config.network_timeout = Some(threshold),
                UTILIZATION => config.utilization = Some(utilization.clone()),
                SESSION_LIFETIME | "session-lifetime" | "" => {}
                other => {
                    return Err(invalid(
                        "idle.enabled",
                        format!("{other:?} is not one of network_timeout, utilization, session_lifetime"),
                    ))
                }
            }
        }
        Ok(config)
    }
}

/// Applies etcd's idle settings to `section`: `enabled` is `config/idle/enabled` (names
/// separated by commas), `checkers` is `config/idle/checkers` as one JSON object keyed by
/// checker. Checkers this manager does not know are skipped with a warning (as the
/// original does); a bad value is an error naming `source` and the key.
pub fn apply_etcd(
    section: &mut IdleSection,
    enabled: Option<&str>,
    checkers: Option<Value>,
    source: &str,
) -> Result<(), ConfigError> {
    if let Some(enabled) = enabled {
        section.enabled = enabled.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect();
    }
    if let Some(checkers) = checkers {
        let Value::Object(map) = checkers else {
            return Err(invalid(format!("{source}/checkers"), "is not a JSON object"));
        };
        let known = [NETWORK_TIMEOUT, "network-timeout", UTILIZATION, SESSION_LIFETIME, "session-lifetime"];
        let mut kept = Map::new();
        for (name, value) in map {
            if known.contains(&name.as_str()) {
                kept.insert(name, value);
            } else {
                tracing::warn!(checker = %name, "ignoring the settings of an unknown idle checker");
            }
        }
        let parsed: IdleCheckersSection = serde_path_to_error::deserialize(Value::Object(kept))
            .map_err(|e| invalid(format!("{source}/checkers/{}", e.path()), e.inner().to_string()))?;
        section.checkers = parsed;
    }
    Ok(())
}

/// Reads `/bai/<namespace>/config/idle/enabled` and `…/config/idle/checkers` (one JSON value,
/// or a tree of keys under it as the original's `etcd put-json` leaves them) into `section`,
/// when etcd is configured.
pub async fn fetch_etcd(etcd: &EtcdSection, section: &mut IdleSection) -> Result<(), ConfigError> {
    if etcd.endpoints.is_empty() {
        return Ok(());
    }
    let endpoints = etcd.endpoints.join(",");
    let unreachable = |e: etcd_client::Error| invalid("etcd.endpoints", format!("{endpoints}: {e}"));
    let mut client = tokio::time::timeout(Duration::from_secs(10), etcd_client::Client::connect(&etcd.endpoints, None))
        .await
        .map_err(|_| invalid("etcd.endpoints", format!("{endpoints}: no answer within 10 s")))?
        .map_err(unreachable)?;
    let prefix = format!("/bai/{}/config/idle", etcd.namespace);
    let enabled = client.get(format!("{prefix}/enabled"), None).await.map_err(unreachable)?;
    let enabled = enabled.kvs().first().and_then(|kv| kv.value_str().ok()).map(str::to_string);
    let key = format!("{prefix}/checkers");
    let tree =
        client.get(key.clone(), Some(etcd_client::GetOptions::new().with_prefix())).await.map_err(unreachable)?;
    let mut checkers: Option<Value> = None;
    for kv in tree.kvs() {
        let (Ok(k), Ok(v)) = (kv.key_str(), kv.value_str()) else { continue };
        if k == key {
            let parsed = serde_json::from_str(v).map_err(|e| invalid(k, format!("is not JSON: {e}")))?;
            checkers = Some(parsed);
            break;
        }
        let Some(path) = k.strip_prefix(&format!("{key}/")) else { continue };
        let root = checkers.get_or_insert_with(|| json!({}));
        insert_path(root, path, v);
    }
    apply_etcd(section, enabled.as_deref(), checkers, &prefix)
}

/// Puts `value` at the `/`-separated `path` of `root`; numbers become JSON numbers.
fn insert_path(root: &mut Value, path: &str, value: &str) {
    let mut node = root;
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        if !node.is_object() {
            *node = json!({});
        }
        let Value::Object(map) = node else { return };
        if i + 1 == parts.len() {
            let leaf =
                value.trim().parse::<f64>().ok().and_then(|n| serde_json::Number::from_f64(n).map(Value::Number));
            map.insert(part.to_string(), leaf.unwrap_or_else(|| Value::String(value.to_string())));
            return;
        }
        node = map.entry(part.to_string()).or_insert_with(|| json!({}));
    }
}

/// What the checkers know about a session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionFacts {
    /// Interactive, batch, …
    pub session_type: SessionType,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Its last user traffic (or when it started RUNNING), if known.
    pub last_activity: Option<DateTime<Utc>>,
    /// App connections open through this manager now.
    pub active_connections: usize,
    /// The keypair resource policy's `idle_timeout` (seconds; 0 never, negative undefined).
    pub idle_timeout: i64,
    /// The keypair resource policy's `max_session_lifetime` (seconds; 0 unlimited).
    pub max_session_lifetime: i64,
    /// The slots its kernels hold.
    pub occupied: ResourceSlot,
}

/// One checker's verdict on one session.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// The checker's name.
    pub checker: &'static str,
    /// Seconds until the session is idle ([`EXPIRED`] once it is), or `None` when the checker
    /// does not apply.
    pub remaining: Option<f64>,
    /// `expire_after` or `grace_period`.
    pub remaining_time_type: &'static str,
    /// The checker's details (the utilisation averages), if any.
    pub extra: Option<Value>,
    /// Set when the session is idle: why, as its `status_data`.
    pub idle: Option<Value>,
}

impl CheckReport {
    fn keep(checker: &'static str, remaining_time_type: &'static str) -> Self {
        CheckReport { checker, remaining: None, remaining_time_type, extra: None, idle: None }
    }

    /// The `status_info` of a session this checker terminates.
    pub fn reason(&self) -> &'static str {
        reason_of(self.checker)
    }
}

/// The termination reason of a checker: `idle-timeout`, `idle-session-lifetime`,
/// `idle-utilization`.
pub fn reason_of(checker: &str) -> &'static str {
    match checker {
        SESSION_LIFETIME => bai_core::KernelLifecycleReason::IdleSessionLifetime.as_str(),
        UTILIZATION => bai_core::KernelLifecycleReason::IdleUtilization.as_str(),
        _ => bai_core::KernelLifecycleReason::IdleTimeout.as_str(),
    }
}

fn seconds(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

fn delta(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
}

fn shown(remaining: f64) -> f64 {
    if remaining > 0.0 {
        remaining
    } else {
        EXPIRED
    }
}

/// `network_timeout`: idle once `now` is more than the timeout past the last traffic.
pub fn check_network_timeout(default_threshold: Duration, facts: &SessionFacts, now: DateTime<Utc>) -> CheckReport {
    let keep = CheckReport::keep(NETWORK_TIMEOUT, "expire_after");
    if facts.session_type == SessionType::Batch || facts.active_connections > 0 {
        return keep;
    }
    let Some(last) = facts.last_activity else { return keep };
    let timeout =
        if facts.idle_timeout >= 0 { Duration::from_secs(facts.idle_timeout as u64) } else { default_threshold };
    if timeout.is_zero() {
        return keep;
    }
    let remaining = seconds(last + delta(timeout) - now);
    let idle = (remaining < 0.0).then(|| {
        json!({
            "idle_checker": NETWORK_TIMEOUT,
            "threshold": timeout.as_secs_f64(),
            "idle_for": seconds(now - last),
            "last_activity": last.to_rfc3339(),
        })
    });
    CheckReport { remaining: Some(shown(remaining)), idle, ..keep }
}

/// `session_lifetime`: idle once the session is older than `max_session_lifetime`.
pub fn check_session_lifetime(facts: &SessionFacts, now: DateTime<Utc>) -> CheckReport {
    let keep = CheckReport::keep(SESSION_LIFETIME, "expire_after");
    if facts.max_session_lifetime <= 0 {
        return keep;
    }
    let lifetime = Duration::from_secs(facts.max_session_lifetime as u64);
    let remaining = seconds(facts.created_at + delta(lifetime) - now);
    let idle = (remaining <= 0.0).then(|| {
        json!({
            "idle_checker": SESSION_LIFETIME,
            "threshold": lifetime.as_secs_f64(),
            "age": seconds(now - facts.created_at),
        })
    });
    CheckReport { remaining: Some(shown(remaining)), idle, ..keep }
}

/// The window `utilization` averages over: the policy's `idle_timeout` unless it is negative.
pub fn utilization_window(config: &UtilizationConfig, facts: &SessionFacts) -> Duration {
    if facts.idle_timeout >= 0 {
        Duration::from_secs(facts.idle_timeout as u64)
    } else {
        config.time_window
    }
}

/// The end of `utilization`'s initial grace period for a session.
pub fn grace_end(config: &UtilizationConfig, facts: &SessionFacts) -> DateTime<Utc> {
    facts.created_at + delta(config.initial_grace_period)
}

/// A session's utilisation samples, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UtilSeries {
    /// When the first sample was taken.
    pub first: Option<DateTime<Utc>>,
    /// `(when, metric → percent)`, within the window.
    pub samples: VecDeque<(DateTime<Utc>, BTreeMap<String, f64>)>,
}

impl UtilSeries {
    /// Adds a sample and forgets those older than `window`.
    pub fn record(&mut self, at: DateTime<Utc>, sample: BTreeMap<String, f64>, window: Duration) {
        self.first.get_or_insert(at);
        self.samples.push_back((at, sample));
        let oldest = at - delta(window);
        while self.samples.front().is_some_and(|(t, _)| *t < oldest) {
            self.samples.pop_front();
        }
    }

    /// Each metric's average over the samples that have it.
    pub fn averages(&self) -> BTreeMap<String, f64> {
        let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for (_, sample) in &self.samples {
            for (metric, value) in sample {
                let e = sums.entry(metric.clone()).or_default();
                e.0 += value;
                e.1 += 1;
            }
        }
        sums.into_iter().map(|(m, (sum, n))| (m, sum / n as f64)).collect()
    }
}

/// The metrics that do not count for a session: those of slots it holds none of.
fn excluded_metrics(occupied: &ResourceSlot) -> Vec<&'static str> {
    let mut held: BTreeMap<String, rust_decimal::Decimal> = BTreeMap::new();
    for (slot, amount) in occupied.iter() {
        let prefix = slot.split('.').next().unwrap_or(slot).to_string();
        *held.entry(prefix).or_default() += amount;
    }
    METRICS
        .iter()
        .filter(|(_, prefix)| held.get(*prefix).is_none_or(|a| a.is_zero()))
        .map(|(metric, _)| *metric)
        .collect()
}

/// `utilization`: after the grace period and a full window of samples, idle when the
/// averages are under the thresholds (all with `and`, any with `or`).
pub fn check_utilization(
    config: &UtilizationConfig,
    facts: &SessionFacts,
    series: &UtilSeries,
    now: DateTime<Utc>,
) -> CheckReport {
    let keep = CheckReport::keep(UTILIZATION, "grace_period");
    let window = utilization_window(config, facts);
    if window.is_zero() {
        return keep;
    }
    let grace_end = grace_end(config, facts);
    let remaining = seconds(grace_end + delta(window) - now);
    let keep = CheckReport { remaining: Some(shown(remaining)), ..keep };
    if now <= grace_end {
        return keep;
    }
    let excluded = excluded_metrics(&facts.occupied);
    let averages = series.averages();
    let mut resources = Map::new();
    let mut judged = Vec::new();
    for (metric, threshold) in &config.thresholds {
        if excluded.contains(&metric.as_str()) {
            continue;
        }
        let Some(avg) = averages.get(metric) else { continue };
        resources.insert(metric.clone(), json!([avg, threshold]));
        judged.push((metric.clone(), *avg, *threshold));
    }
    let extra = json!({"thresholds_check_operator": config.operator.as_str(), "resources": resources});
    let keep = CheckReport { extra: Some(extra), ..keep };
    let full = series.first.is_some_and(|first| now - first >= delta(window));
    if !full || judged.is_empty() {
        return keep;
    }
    let under = judged.iter().filter(|(_, avg, threshold)| avg < threshold).count();
    let idle = match config.operator {
        ThresholdOperator::And => under == judged.len(),
        ThresholdOperator::Or => under > 0,
    };
    if !idle {
        return keep;
    }
    let details: Map<String, Value> =
        judged.iter().map(|(m, avg, threshold)| (m.clone(), json!({"average": avg, "threshold": threshold}))).collect();
    let why = json!({
        "idle_checker": UTILIZATION,
        "thresholds_check_operator": config.operator.as_str(),
        "time_window": window.as_secs_f64(),
        "resources": details,
    });
    CheckReport { idle: Some(why), ..keep }
}

/// Every enabled checker's verdict, `session_lifetime` first.
pub fn check_all(
    config: &IdleConfig,
    facts: &SessionFacts,
    series: &UtilSeries,
    now: DateTime<Utc>,
) -> Vec<CheckReport> {
    let mut reports = vec![check_session_lifetime(facts, now)];
    if let Some(threshold) = config.network_timeout {
        reports.push(check_network_timeout(threshold, facts, now));
    }
    if let Some(u) = &config.utilization {
        reports.push(check_utilization(u, facts, series, now));
    }
    reports
}

/// The original's `idle_checks` object.
pub fn report_json(reports: &[CheckReport]) -> Value {
    let map: Map<String, Value> = reports
        .iter()
        .map(|r| {
            (
                r.checker.to_string(),
                json!({"remaining": r.remaining, "remaining_time_type": r.remaining_time_type, "extra": r.extra}),
            )
        })
        .collect();
    Value::Object(map)
}

/// A kernel's latest statistics from its agent's heartbeat: metric → (percent, current).
#[derive(Debug, Clone, PartialEq)]
pub struct KernelStat {
    /// When the heartbeat was handled.
    pub at: DateTime<Utc>,
    /// Metric → `(pct, current)`.
    pub metrics: BTreeMap<String, (f64, f64)>,
}

/// A session's current utilisation from its kernels' statistics: each metric's percentage
/// averaged over the kernels, and `mem` as the memory in use over the memory the session
/// holds (the original's rule: the agent's `mem.pct` is against the container limit). `None`
/// when a kernel has no recent statistics.
pub fn session_utilization(kernels: &[Option<&KernelStat>], occupied: &ResourceSlot) -> Option<BTreeMap<String, f64>> {
    if kernels.is_empty() {
        return None;
    }
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let mut mem_current = 0.0;
    for k in kernels {
        let k = (*k)?;
        for (metric, (pct, current)) in &k.metrics {
            let e = sums.entry(metric.clone()).or_default();
            e.0 += pct;
            e.1 += 1;
            if metric == "mem" {
                mem_current += current;
            }
        }
    }
    let mut out: BTreeMap<String, f64> = sums.into_iter().map(|(m, (sum, n))| (m, sum / n as f64)).collect();
    if out.contains_key("mem") {
        let held = occupied.get("mem").to_string().parse::<f64>().unwrap_or(0.0);
        out.insert("mem".into(), if held > 0.0 { mem_current / held * 100.0 } else { 0.0 });
    }
    Some(out)
}

/// The clock idle checks read: the wall clock, or tokio's clock (from when the state was
/// made) when that is ahead — so tests drive idle timeouts with `tokio::time::pause()`.
#[derive(Debug)]
pub struct IdleClock {
    wall: DateTime<Utc>,
    mono: tokio::time::Instant,
}

impl Default for IdleClock {
    fn default() -> Self {
        IdleClock { wall: Utc::now(), mono: tokio::time::Instant::now() }
    }
}

impl IdleClock {
    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        let ticked = self.wall + delta(self.mono.elapsed());
        Utc::now().max(ticked)
    }
}

/// A session's traffic as this manager saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Activity {
    /// The last traffic.
    pub last: DateTime<Utc>,
    /// App connections open now.
    pub connections: usize,
}

/// How long [`PolicyLimits`] keeps an access key's resource policy limits.
pub const POLICY_LIMITS_TTL: Duration = Duration::from_secs(10);
/// The most access keys [`PolicyLimits`] holds before it drops expired ones (and, if that is
/// not enough, everything).
pub const POLICY_LIMITS_MAX: usize = 10_000;

/// `(idle_timeout, max_session_lifetime)` of a keypair's resource policy.
pub type Limits = (i64, i64);

/// The resource policy limits of access keys that [`report`] shows, kept briefly (see the
/// module documentation): bounded, expiring after the TTL, and emptied by this manager's own
/// changes to keypairs and policies.
#[derive(Debug)]
pub struct PolicyLimits {
    ttl: Duration,
    entries: Mutex<LimitEntries>,
}

#[derive(Debug, Default)]
struct LimitEntries {
    by_key: HashMap<String, (std::time::Instant, Limits)>,
    /// Bumped by every invalidation, so that a lookup that started before one does not put
    /// back what it read.
    generation: u64,
}

impl Default for PolicyLimits {
    fn default() -> Self {
        Self::with_ttl(POLICY_LIMITS_TTL)
    }
}

impl PolicyLimits {
    /// A cache keeping limits for `ttl` (zero: never).
    pub fn with_ttl(ttl: Duration) -> Self {
        PolicyLimits { ttl, entries: Mutex::default() }
    }

    /// The limits of `access_key`'s resource policy: remembered ones while fresh, else read
    /// from `db` (a missing keypair or policy has none: (0, 0)).
    pub async fn of(&self, db: &impl ConnectionTrait, access_key: &str) -> Result<Limits, DbError> {
        let generation = {
            let entries = lock(&self.entries);
            if let Some((expires, limits)) = entries.by_key.get(access_key) {
                if *expires > std::time::Instant::now() {
                    return Ok(*limits);
                }
            }
            entries.generation
        };
        let limits = read_limits(db, access_key).await?;
        if !self.ttl.is_zero() {
            let now = std::time::Instant::now();
            let mut entries = lock(&self.entries);
            if entries.generation == generation {
                if entries.by_key.len() >= POLICY_LIMITS_MAX {
                    entries.by_key.retain(|_, (expires, _)| *expires > now);
                    if entries.by_key.len() >= POLICY_LIMITS_MAX {
                        entries.by_key.clear();
                    }
                }
                entries.by_key.insert(access_key.to_string(), (now + self.ttl, limits));
            }
        }
        Ok(limits)
    }

    /// Forgets one access key (its keypair or user changed).
    pub fn invalidate(&self, access_key: &str) {
        let mut entries = lock(&self.entries);
        entries.generation += 1;
        entries.by_key.remove(access_key);
    }

    /// Forgets everything (a resource policy changed).
    pub fn clear(&self) {
        let mut entries = lock(&self.entries);
        entries.generation += 1;
        entries.by_key.clear();
    }

    /// How many access keys are remembered.
    pub fn len(&self) -> usize {
        lock(&self.entries).by_key.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `(idle_timeout, max_session_lifetime)` of the access key's policy, from the database.
async fn read_limits(db: &impl ConnectionTrait, access_key: &str) -> Result<Limits, DbError> {
    Ok(match repo::get_keypair(db, access_key).await? {
        Some(kp) => match repo::get_keypair_resource_policy(db, &kp.resource_policy).await? {
            Some(p) => (p.idle_timeout, i64::from(p.max_session_lifetime)),
            None => (0, 0),
        },
        None => (0, 0),
    })
}

/// What idle checks read besides the database (see the module documentation).
#[derive(Debug, Default)]
pub struct IdleState {
    config: RwLock<IdleConfig>,
    clock: IdleClock,
    activity: Mutex<HashMap<SessionId, Activity>>,
    stats: Mutex<HashMap<KernelId, KernelStat>>,
    series: Mutex<HashMap<SessionId, UtilSeries>>,
    passes: std::sync::atomic::AtomicU64,
    limits: PolicyLimits,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl IdleState {
    /// The settings.
    pub fn config(&self) -> IdleConfig {
        self.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the settings (before the manager's loops start: the check interval is read
    /// once).
    pub fn set_config(&self, config: IdleConfig) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// How many idle-check passes the manager's loop has finished (successful or not).
    pub fn passes(&self) -> u64 {
        self.passes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Counts a finished pass (see [`passes`](Self::passes)).
    pub fn pass_done(&self) {
        self.passes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The resource policy limits [`report`] shows, kept briefly.
    pub fn policy_limits(&self) -> &PolicyLimits {
        &self.limits
    }

    /// The time checks use.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Records user traffic of a session now.
    pub fn touch(&self, session: SessionId) {
        let now = self.now();
        lock(&self.activity)
            .entry(session)
            .and_modify(|a| a.last = a.last.max(now))
            .or_insert(Activity { last: now, connections: 0 });
    }

    /// Records an app connection open until the returned guard is dropped (which counts as
    /// traffic too): the session is not network-idle meanwhile.
    pub fn connection(self: &Arc<Self>, session: SessionId) -> ActiveConnection {
        self.touch(session);
        if let Some(a) = lock(&self.activity).get_mut(&session) {
            a.connections += 1;
        }
        ActiveConnection { state: self.clone(), session }
    }

    /// A session's traffic, if this manager saw any.
    pub fn activity(&self, session: SessionId) -> Option<Activity> {
        lock(&self.activity).get(&session).copied()
    }

    /// Records the per-kernel statistics of a heartbeat's `kernel_stats`
    /// (`{kernel id: {metric: {current, capacity, pct}}}`, numbers or decimal strings).
    pub fn record_heartbeat(&self, agent_info: &Value) {
        let Some(Value::Object(kernels)) = agent_info.get("kernel_stats") else { return };
        let now = self.now();
        let number = |v: Option<&Value>| match v {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.parse::<f64>().ok(),
            _ => None,
        };
        let mut stats = lock(&self.stats);
        for (id, metrics) in kernels {
            let Ok(kernel) = id.parse::<KernelId>() else { continue };
            let Value::Object(metrics) = metrics else { continue };
            let parsed: BTreeMap<String, (f64, f64)> = METRICS
                .iter()
                .filter_map(|(m, _)| {
                    let v = metrics.get(*m)?;
                    Some((
                        m.to_string(),
                        (number(v.get("pct")).unwrap_or(0.0), number(v.get("current")).unwrap_or(0.0)),
                    ))
                })
                .collect();
            stats.insert(kernel, KernelStat { at: now, metrics: parsed });
        }
        let oldest = now - delta(STATS_MAX_AGE * 5);
        stats.retain(|_, s| s.at >= oldest);
    }

    /// A kernel's statistics, if recent.
    pub fn kernel_stat(&self, kernel: KernelId, now: DateTime<Utc>) -> Option<KernelStat> {
        lock(&self.stats).get(&kernel).filter(|s| now - s.at <= delta(STATS_MAX_AGE)).cloned()
    }

    /// A session's utilisation samples.
    pub fn series(&self, session: SessionId) -> UtilSeries {
        lock(&self.series).get(&session).cloned().unwrap_or_default()
    }

    fn record_sample(&self, session: SessionId, at: DateTime<Utc>, sample: BTreeMap<String, f64>, window: Duration) {
        lock(&self.series).entry(session).or_default().record(at, sample, window);
    }

    /// Forgets the sessions not in `live`.
    fn retain(&self, live: &std::collections::HashSet<SessionId>) {
        lock(&self.series).retain(|s, _| live.contains(s));
        lock(&self.activity).retain(|s, a| live.contains(s) || a.connections > 0);
    }
}

/// An open app connection (see [`IdleState::connection`]).
#[derive(Debug)]
pub struct ActiveConnection {
    state: Arc<IdleState>,
    session: SessionId,
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        if let Some(a) = lock(&self.state.activity).get_mut(&self.session) {
            a.connections = a.connections.saturating_sub(1);
        }
        self.state.touch(self.session);
    }
}

/// When the session became RUNNING, from its status history.
fn running_since(row: &session::Model) -> Option<DateTime<Utc>> {
    let text = row.status_history.get(SessionStatus::Running.as_str())?.as_str()?;
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// The resource policy limits of each access key, read once per pass.
#[derive(Default)]
struct Policies(HashMap<String, Limits>);

impl Policies {
    /// `(idle_timeout, max_session_lifetime)` of the access key's policy; a missing keypair or
    /// policy has none (0, 0).
    async fn of(&mut self, db: &impl ConnectionTrait, access_key: Option<&str>) -> Result<Limits, DbError> {
        let Some(key) = access_key else { return Ok((0, 0)) };
        if let Some(p) = self.0.get(key) {
            return Ok(*p);
        }
        let limits = read_limits(db, key).await?;
        self.0.insert(key.to_string(), limits);
        Ok(limits)
    }
}

fn facts_of(state: &IdleState, row: &session::Model, limits: Limits) -> SessionFacts {
    let id = SessionId::from_uuid(row.id);
    let activity = state.activity(id);
    let last = [activity.map(|a| a.last), running_since(row)].into_iter().flatten().max();
    SessionFacts {
        session_type: row.session_type.0,
        created_at: row.created_at,
        last_activity: last,
        active_connections: activity.map_or(0, |a| a.connections),
        idle_timeout: limits.0,
        max_session_lifetime: limits.1,
        occupied: row.occupying_slots.0.clone(),
    }
}

/// The `idle_checks` report of a session (GraphQL `idle_checks`, REST `idleChecks`); an
/// empty object for a session that is not RUNNING.
pub async fn report(manager: &Manager, row: &session::Model) -> Result<Value, DbError> {
    if row.status.0 != SessionStatus::Running {
        return Ok(json!({}));
    }
    let state = manager.idle();
    let limits = match row.access_key.as_deref() {
        Some(key) => state.policy_limits().of(manager.db(), key).await?,
        None => (0, 0),
    };
    let facts = facts_of(state, row, limits);
    let series = state.series(SessionId::from_uuid(row.id));
    Ok(report_json(&check_all(&state.config(), &facts, &series, state.now())))
}

/// A session an idle check terminated.
#[derive(Debug, Clone, PartialEq)]
pub struct Terminated {
    /// The session.
    pub session_id: SessionId,
    /// The checker's reason (`idle-timeout`, …).
    pub reason: &'static str,
    /// Why, as stored in `status_data`.
    pub status_data: Value,
}

/// One pass over every RUNNING session (inference sessions excepted, as in the original):
/// records a utilisation sample when that checker is on, and destroys the sessions a checker
/// finds idle (the first checker to do so gives the reason).
///
/// Cancel safety: each session is destroyed through [`Manager::destroy_session_for`]; an
/// aborted pass leaves the rest for the next one.
pub async fn check_sessions(manager: &Manager) -> Result<Vec<Terminated>, DbError> {
    let state = manager.idle();
    let config = state.config();
    let filter = repo::SessionFilter { statuses: vec![SessionStatus::Running], limit: 1_000_000, ..Default::default() };
    let (rows, _) = repo::list_sessions(manager.db(), &filter).await?;
    let live: std::collections::HashSet<SessionId> = rows.iter().map(|s| SessionId::from_uuid(s.id)).collect();
    state.retain(&live);
    let mut policies = Policies::default();
    let mut terminated = Vec::new();
    for row in rows.iter().filter(|s| s.session_type.0 != SessionType::Inference) {
        let id = SessionId::from_uuid(row.id);
        let limits = policies.of(manager.db(), row.access_key.as_deref()).await?;
        let facts = facts_of(state, row, limits);
        let now = state.now();
        if let Some(u) = &config.utilization {
            let window = utilization_window(u, &facts);
            if !window.is_zero() && now > grace_end(u, &facts) {
                let kernels = repo::list_kernels_of_session(manager.db(), id).await?;
                let stats: Vec<Option<KernelStat>> = kernels
                    .iter()
                    .filter(|k| !k.status.0.is_terminal())
                    .map(|k| state.kernel_stat(KernelId::from_uuid(k.id), now))
                    .collect();
                let refs: Vec<Option<&KernelStat>> = stats.iter().map(Option::as_ref).collect();
                if let Some(sample) = session_utilization(&refs, &facts.occupied) {
                    state.record_sample(id, now, sample, window);
                }
            }
        }
        let series = state.series(id);
        let Some(report) = check_all(&config, &facts, &series, now).into_iter().find(|r| r.idle.is_some()) else {
            continue;
        };
        let status_data = report.idle.clone().unwrap_or(Value::Null);
        let reason = report.reason();
        tracing::info!(session = %id, checker = report.checker, reason, why = %status_data, "terminating an idle session");
        match manager.destroy_session_for(id, reason, status_data.clone()).await {
            Ok(_) => terminated.push(Terminated { session_id: id, reason, status_data }),
            Err(e) => tracing::warn!(session = %id, error = %e, "could not terminate an idle session"),
        }
    }
    Ok(terminated)
}

#[cfg(test)]
mod tests;
