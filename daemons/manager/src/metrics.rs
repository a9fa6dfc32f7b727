//! The manager's Prometheus metrics, the API middleware that records request metrics, and
//! the metrics listener (`[manager] metrics-listen`, default `0.0.0.0:18080`) serving
//! `GET /metrics` and `GET /metrics/service_discovery`.
//!
//! [`ManagerMetrics`] owns one [`Registry`] (no prefix: the names below are complete) with the
//! families of the Backend.AI manager specification that this manager can produce:
//!
//! | name | type | labels |
//! |---|---|---|
//! | `backendai_api_request_count` | counter | `method`, `endpoint`, `domain`, `operation`, `error_detail`, `status_code` |
//! | `backendai_api_request_duration_sec` | histogram | same |
//! | `backendai_graphql_request_count` | counter | `operation_type`, `field_name`, `parent_type`, `operation_name`, `domain`, `operation`, `error_detail`, `success` |
//! | `backendai_graphql_request_duration_sec` | histogram | same |
//! | `backendai_event_count` | counter | `event_type` |
//! | `backendai_event_failure_count` | counter | `event_type`, `exception`, `domain`, `operation`, `error_detail` |
//! | `backendai_event_processing_time_sec` | histogram | `event_type`, `status`, `domain`, `operation`, `error_detail` |
//! | `backendai_action_count` | counter | `entity_type`, `operation_type`, `status`, `domain`, `operation`, `error_detail` |
//! | `backendai_action_duration_sec` | histogram | same |
//! | `backendai_layer_operation_triggered_count` | gauge | `domain`, `layer`, `operation` |
//! | `backendai_layer_operation_count` | counter | `domain`, `layer`, `operation`, `success` |
//! | `backendai_layer_operation_error_count` | counter | `domain`, `layer`, `operation`, `error_code` |
//! | `backendai_layer_retry_count` | counter | `domain`, `layer`, `operation` |
//! | `backendai_layer_operation_duration_sec` | histogram | `domain`, `layer`, `operation`, `success` |
//! | `backendai_bgtask_count` | gauge | `task_name` |
//! | `backendai_bgtask_done_count` | counter | `task_name`, `status`, `domain`, `operation`, `error_detail` |
//! | `backendai_bgtask_processing_time_sec` | histogram | same ([`BGTASK_BUCKETS`]) |
//! | `backendai_async_task_count` | gauge | — |
//! | `backendai_cpu_usage_percent` | gauge | — |
//! | `backendai_memory_used_rss` | gauge | — |
//! | `backendai_memory_used_vms` | gauge | — |
//!
//! Every histogram uses [`DURATION_BUCKETS`] except the background tasks' ([`BGTASK_BUCKETS`]). In the text exposition counters carry the
//! `_total` suffix (`backendai_api_request_count_total`, …) and histograms the `_bucket`,
//! `_sum` and `_count` suffixes. A labelled family shows up once it has a series; the four
//! system gauges are always there and are refreshed at every scrape.
//!
//! Error labels (`domain`, `operation`, `error_detail`) are empty on success. On failure they
//! come from an [`ErrorInfo`]: for API requests the `domain` is the first segment of the
//! route (`session` for `/session/{id}`), the `operation` follows the HTTP method (`read`,
//! `create`, `update`, `delete`) and the `error_detail` is the problem document's `type`
//! suffix (`auth-failed`, `object-not-found`, …).
//!
//! Not produced (their subsystems do not exist in this manager yet, so nothing is
//! registered for them): the sweeper (session/kernel), event propagator and stage families.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sea_orm::DatabaseConnection;
use serde_json::{json, Value};

use crate::api::ApiState;
use crate::db::DbError;

/// The buckets (upper bounds, in seconds) of every duration histogram of the manager; the
/// exposition adds the `+Inf` bucket.
pub const DURATION_BUCKETS: [f64; 9] = [0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// The buckets of `backendai_bgtask_processing_time_sec`, in seconds (as the seed gives them).
pub const BGTASK_BUCKETS: [f64; 7] = [0.1, 1.0, 10.0, 30.0, 60.0, 300.0, 600.0];

/// The content type of `GET /metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The port agents serve `GET /metrics` on unless told otherwise.
pub const DEFAULT_AGENT_METRICS_PORT: u16 = 6003;

/// The `endpoint` label of requests that matched no route.
pub const UNMATCHED_ENDPOINT: &str = "unmatched";

/// The largest error body the API middleware reads to find the problem `type`.
const MAX_PROBLEM_BODY: usize = 16 * 1024;

type GaugeF64 = Gauge<f64, AtomicU64>;
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn histogram_family<L: Clone + std::hash::Hash + Eq>() -> HistogramFamily<L> {
    Family::new_with_constructor(duration_histogram)
}

/// Escapes a label value for the text exposition (`\` → `\\`, `"` → `\"`, newline → `\n`):
/// prometheus-client writes label values verbatim, and error details could otherwise break
/// the whole scrape.
fn label(value: &str) -> String {
    if !value.contains(['\\', '"', '\n']) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn bool_label(b: bool) -> String {
    if b { "True" } else { "False" }.to_owned()
}

fn status_label(success: bool) -> String {
    if success { "success" } else { "failure" }.to_owned()
}

/// The error labels of a failed operation (`domain`, `operation`, `error_detail`) and the
/// `exception` class name event failures carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorInfo {
    /// What the error is about (`session`, `agent`, `database`, …).
    pub domain: String,
    /// What was being done (`read`, `create`, `handle`, …).
    pub operation: String,
    /// The error's detail code (`not-found`, `conflict`, `internal-error`, …).
    pub error_detail: String,
    /// The error class (`ObjectNotFound`, `DatabaseError`, …).
    pub exception: String,
}

impl ErrorInfo {
    /// An error of `domain` while doing `operation`, with this detail and class.
    pub fn new(domain: &str, operation: &str, error_detail: &str, exception: &str) -> Self {
        ErrorInfo {
            domain: domain.to_owned(),
            operation: operation.to_owned(),
            error_detail: error_detail.to_owned(),
            exception: exception.to_owned(),
        }
    }

    /// The labels of a database-layer error met while doing `operation`.
    pub fn from_db(err: &DbError, operation: &str) -> Self {
        match err {
            DbError::NotFound { kind, .. } => Self::new(kind, operation, "not-found", "ObjectNotFound"),
            DbError::Conflict { .. } => Self::new("database", operation, "conflict", "Conflict"),
            DbError::Invalid { .. } => Self::new("database", operation, "invalid-parameters", "InvalidParameters"),
            DbError::Db(_) => Self::new("database", operation, "internal-error", "DatabaseError"),
        }
    }

    fn labels(&self) -> (String, String, String) {
        (label(&self.domain), label(&self.operation), label(&self.error_detail))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ApiLabels {
    method: String,
    endpoint: String,
    domain: String,
    operation: String,
    error_detail: String,
    status_code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BgtaskLabels {
    task_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BgtaskDoneLabels {
    task_name: String,
    status: String,
    domain: String,
    operation: String,
    error_detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventLabels {
    event_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventFailureLabels {
    event_type: String,
    exception: String,
    domain: String,
    operation: String,
    error_detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventTimeLabels {
    event_type: String,
    status: String,
    domain: String,
    operation: String,
    error_detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ActionLabels {
    entity_type: String,
    operation_type: String,
    status: String,
    domain: String,
    operation: String,
    error_detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LayerLabels {
    domain: String,
    layer: String,
    operation: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LayerDoneLabels {
    domain: String,
    layer: String,
    operation: String,
    success: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LayerErrorLabels {
    domain: String,
    layer: String,
    operation: String,
    error_code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GqlLabels {
    operation_type: String,
    field_name: String,
    parent_type: String,
    operation_name: String,
    domain: String,
    operation: String,
    error_detail: String,
    success: String,
}

/// The previous CPU sample: when, and the process's CPU seconds then.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    at: Instant,
    cpu_seconds: f64,
}

/// The manager's metrics: one registry and the families listed in the module docs.
///
/// Share it as `Arc<ManagerMetrics>`; every method takes `&self`.
#[derive(Debug)]
pub struct ManagerMetrics {
    registry: Registry,

    api_requests: Family<ApiLabels, Counter>,
    api_duration: HistogramFamily<ApiLabels>,

    gql_requests: Family<GqlLabels, Counter>,
    gql_duration: HistogramFamily<GqlLabels>,

    events: Family<EventLabels, Counter>,
    event_failures: Family<EventFailureLabels, Counter>,
    event_time: HistogramFamily<EventTimeLabels>,

    actions: Family<ActionLabels, Counter>,
    action_duration: HistogramFamily<ActionLabels>,

    layer_triggered: Family<LayerLabels, Gauge>,
    layer_done: Family<LayerDoneLabels, Counter>,
    layer_errors: Family<LayerErrorLabels, Counter>,
    layer_retries: Family<LayerLabels, Counter>,
    layer_duration: HistogramFamily<LayerDoneLabels>,

    bgtasks: Family<BgtaskLabels, Gauge>,
    bgtasks_done: Family<BgtaskDoneLabels, Counter>,
    bgtask_time: HistogramFamily<BgtaskDoneLabels>,

    async_tasks: Gauge,
    cpu_usage: GaugeF64,
    memory_rss: Gauge,
    memory_vms: Gauge,
    cpu_sample: Mutex<Option<CpuSample>>,
}

impl Default for ManagerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ManagerMetrics {
    /// Creates the registry and every family.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = ManagerMetrics {
            registry: Registry::default(),
            api_requests: Family::default(),
            api_duration: histogram_family(),
            gql_requests: Family::default(),
            gql_duration: histogram_family(),
            events: Family::default(),
            event_failures: Family::default(),
            event_time: histogram_family(),
            actions: Family::default(),
            action_duration: histogram_family(),
            layer_triggered: Family::default(),
            layer_done: Family::default(),
            layer_errors: Family::default(),
            layer_retries: Family::default(),
            layer_duration: histogram_family(),
            bgtasks: Family::default(),
            bgtasks_done: Family::default(),
            bgtask_time: Family::new_with_constructor(|| Histogram::new(BGTASK_BUCKETS)),
            async_tasks: Gauge::default(),
            cpu_usage: GaugeF64::default(),
            memory_rss: Gauge::default(),
            memory_vms: Gauge::default(),
            cpu_sample: Mutex::new(
                process_cpu_seconds().map(|cpu_seconds| CpuSample { at: Instant::now(), cpu_seconds }),
            ),
        };
        // Help texts have no final period (the registry appends one); `register`, not
        // `register_with_unit`, so the names stay exactly the specified ones.
        registry.register(
            "backendai_api_request_count",
            "Total number of REST API requests received",
            m.api_requests.clone(),
        );
        registry.register(
            "backendai_api_request_duration_sec",
            "API request processing time in seconds",
            m.api_duration.clone(),
        );
        registry.register(
            "backendai_graphql_request_count",
            "Total number of GraphQL queries executed",
            m.gql_requests.clone(),
        );
        registry.register(
            "backendai_graphql_request_duration_sec",
            "GraphQL query processing time in seconds",
            m.gql_duration.clone(),
        );
        registry.register("backendai_event_count", "Total number of events processed", m.events.clone());
        registry.register(
            "backendai_event_failure_count",
            "Number of failed event processing attempts",
            m.event_failures.clone(),
        );
        registry.register(
            "backendai_event_processing_time_sec",
            "Event processing time in seconds",
            m.event_time.clone(),
        );
        registry.register("backendai_action_count", "Total number of actions executed", m.actions.clone());
        registry.register(
            "backendai_action_duration_sec",
            "Action execution time in seconds",
            m.action_duration.clone(),
        );
        registry.register(
            "backendai_layer_operation_triggered_count",
            "Number of layer operations currently in progress",
            m.layer_triggered.clone(),
        );
        registry.register(
            "backendai_layer_operation_count",
            "Total number of layer operations completed",
            m.layer_done.clone(),
        );
        registry.register(
            "backendai_layer_operation_error_count",
            "Total number of layer operation errors",
            m.layer_errors.clone(),
        );
        registry.register(
            "backendai_layer_retry_count",
            "Number of retries for layer operations",
            m.layer_retries.clone(),
        );
        registry.register(
            "backendai_layer_operation_duration_sec",
            "Layer operation execution time in seconds",
            m.layer_duration.clone(),
        );
        registry.register("backendai_bgtask_count", "Number of currently running background tasks", m.bgtasks.clone());
        registry.register(
            "backendai_bgtask_done_count",
            "Total number of completed background tasks",
            m.bgtasks_done.clone(),
        );
        registry.register(
            "backendai_bgtask_processing_time_sec",
            "Background task execution time in seconds",
            m.bgtask_time.clone(),
        );
        registry.register("backendai_async_task_count", "Number of active async tasks", m.async_tasks.clone());
        registry.register(
            "backendai_cpu_usage_percent",
            "CPU usage percentage of the Manager process",
            m.cpu_usage.clone(),
        );
        registry.register(
            "backendai_memory_used_rss",
            "Resident Set Size (RSS) memory usage in bytes",
            m.memory_rss.clone(),
        );
        registry.register("backendai_memory_used_vms", "Virtual Memory Size (VMS) in bytes", m.memory_vms.clone());
        ManagerMetrics { registry, ..m }
    }

    /// Records one REST API request: `endpoint` is the route pattern (or
    /// [`UNMATCHED_ENDPOINT`]), `error` the error labels of a failed request.
    pub fn observe_api_request(
        &self,
        method: &str,
        endpoint: &str,
        status_code: u16,
        elapsed: Duration,
        error: Option<&ErrorInfo>,
    ) {
        let (domain, operation, error_detail) = error.map(ErrorInfo::labels).unwrap_or_default();
        let labels = ApiLabels {
            method: label(method),
            endpoint: label(endpoint),
            domain,
            operation,
            error_detail,
            status_code: status_code.to_string(),
        };
        self.api_requests.get_or_create(&labels).inc();
        self.api_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Records one resolved root field of a GraphQL operation.
    pub fn observe_graphql_field(
        &self,
        operation_type: &str,
        operation_name: &str,
        parent_type: &str,
        field_name: &str,
        elapsed: Duration,
        error: Option<&ErrorInfo>,
    ) {
        let (domain, operation, error_detail) = error.map(ErrorInfo::labels).unwrap_or_default();
        let labels = GqlLabels {
            operation_type: label(operation_type),
            field_name: label(field_name),
            parent_type: label(parent_type),
            operation_name: label(operation_name),
            domain,
            operation,
            error_detail,
            success: bool_label(error.is_none()),
        };
        self.gql_requests.get_or_create(&labels).inc();
        self.gql_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// A background task named `task_name` started.
    pub fn bgtask_started(&self, task_name: &str) {
        self.bgtasks.get_or_create(&BgtaskLabels { task_name: label(task_name) }).inc();
    }

    /// A background task named `task_name` ended after `elapsed`, failed with `error` if given.
    pub fn bgtask_finished(&self, task_name: &str, elapsed: Duration, error: Option<&ErrorInfo>) {
        let task_name = label(task_name);
        self.bgtasks.get_or_create(&BgtaskLabels { task_name: task_name.clone() }).dec();
        let (domain, operation, error_detail) = error.map(ErrorInfo::labels).unwrap_or_default();
        let labels =
            BgtaskDoneLabels { task_name, status: status_label(error.is_none()), domain, operation, error_detail };
        self.bgtasks_done.get_or_create(&labels).inc();
        self.bgtask_time.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Records one handled event of `event_type` that took `elapsed`, failed with `error` if
    /// given.
    pub fn observe_event(&self, event_type: &str, elapsed: Duration, error: Option<&ErrorInfo>) {
        let event_type = label(event_type);
        self.events.get_or_create(&EventLabels { event_type: event_type.clone() }).inc();
        let (domain, operation, error_detail) = error.map(ErrorInfo::labels).unwrap_or_default();
        if let Some(e) = error {
            self.event_failures
                .get_or_create(&EventFailureLabels {
                    event_type: event_type.clone(),
                    exception: label(&e.exception),
                    domain: domain.clone(),
                    operation: operation.clone(),
                    error_detail: error_detail.clone(),
                })
                .inc();
        }
        let labels =
            EventTimeLabels { event_type, status: status_label(error.is_none()), domain, operation, error_detail };
        self.event_time.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Records one action (`entity_type`, `operation_type`) that took `elapsed`, failed with
    /// `error` if given.
    pub fn observe_action(
        &self,
        entity_type: &str,
        operation_type: &str,
        elapsed: Duration,
        error: Option<&ErrorInfo>,
    ) {
        let (domain, operation, error_detail) = error.map(ErrorInfo::labels).unwrap_or_default();
        let labels = ActionLabels {
            entity_type: label(entity_type),
            operation_type: label(operation_type),
            status: status_label(error.is_none()),
            domain,
            operation,
            error_detail,
        };
        self.actions.get_or_create(&labels).inc();
        self.action_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Starts a layer operation: `backendai_layer_operation_triggered_count` goes up until
    /// the returned guard is finished or dropped.
    pub fn layer_operation(&self, domain: &str, layer: &str, operation: &str) -> LayerOperation<'_> {
        let labels = LayerLabels { domain: label(domain), layer: label(layer), operation: label(operation) };
        self.layer_triggered.get_or_create(&labels).inc();
        LayerOperation { metrics: self, labels: Some(labels), started: Instant::now() }
    }

    /// Counts one retry of a layer operation.
    pub fn layer_retry(&self, domain: &str, layer: &str, operation: &str) {
        let labels = LayerLabels { domain: label(domain), layer: label(layer), operation: label(operation) };
        self.layer_retries.get_or_create(&labels).inc();
    }

    /// Refreshes the system gauges (async tasks, CPU, memory) from the runtime and `/proc`.
    pub fn refresh_system(&self) {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            self.async_tasks.set(i64::try_from(handle.metrics().num_alive_tasks()).unwrap_or(i64::MAX));
        }
        if let Some((rss, vms)) = process_memory() {
            self.memory_rss.set(rss);
            self.memory_vms.set(vms);
        }
        if let Some(cpu_seconds) = process_cpu_seconds() {
            let now = Instant::now();
            let mut last = self.cpu_sample.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(prev) = *last {
                let wall = now.duration_since(prev.at).as_secs_f64();
                if wall > 0.0 {
                    self.cpu_usage.set(((cpu_seconds - prev.cpu_seconds) / wall * 100.0).max(0.0));
                }
            }
            *last = Some(CpuSample { at: now, cpu_seconds });
        }
    }

    /// The OpenMetrics text exposition of every metric, ending with `# EOF` (refreshes the
    /// system gauges first).
    pub fn encode(&self) -> String {
        self.refresh_system();
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing into a String does not fail and every label set here encodes; keep
            // whatever was written rather than failing the scrape.
            tracing::error!(%error, "encoding the manager metrics failed");
        }
        out
    }
}

/// A layer operation in progress (see [`ManagerMetrics::layer_operation`]).
#[derive(Debug)]
pub struct LayerOperation<'a> {
    metrics: &'a ManagerMetrics,
    labels: Option<LayerLabels>,
    started: Instant,
}

impl LayerOperation<'_> {
    /// Ends the operation: counts it, observes its duration, and with `Some(error_code)`
    /// also counts the error.
    pub fn finish(mut self, error_code: Option<&str>) {
        let Some(labels) = self.labels.take() else { return };
        let m = self.metrics;
        m.layer_triggered.get_or_create(&labels).dec();
        let done = LayerDoneLabels {
            domain: labels.domain.clone(),
            layer: labels.layer.clone(),
            operation: labels.operation.clone(),
            success: bool_label(error_code.is_none()),
        };
        m.layer_done.get_or_create(&done).inc();
        m.layer_duration.get_or_create(&done).observe(self.started.elapsed().as_secs_f64());
        if let Some(code) = error_code {
            let errors = LayerErrorLabels {
                domain: labels.domain,
                layer: labels.layer,
                operation: labels.operation,
                error_code: label(code),
            };
            m.layer_errors.get_or_create(&errors).inc();
        }
    }
}

impl Drop for LayerOperation<'_> {
    fn drop(&mut self) {
        // Cancelled before finishing: it is no longer in progress.
        if let Some(labels) = self.labels.take() {
            self.metrics.layer_triggered.get_or_create(&labels).dec();
        }
    }
}

/// The async-graphql extension that records every root field of an operation in the
/// [`ManagerMetrics`] found in the request's data (`Arc<ManagerMetrics>`; nothing is recorded
/// without it). `operation_type` follows the root type (`Query` → `query`, …); a failed field
/// has `domain` `graphql`, `operation` its operation type and `error_detail` `forbidden`,
/// `database-error` or `graphql-error`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GqlMetrics;

impl async_graphql::extensions::ExtensionFactory for GqlMetrics {
    fn create(&self) -> Arc<dyn async_graphql::extensions::Extension> {
        Arc::new(GqlMetricsExtension::default())
    }
}

#[derive(Debug, Default)]
struct GqlMetricsExtension {
    operation_name: Mutex<String>,
}

fn gql_error_detail(message: &str) -> &'static str {
    if message.starts_with("Forbidden") {
        "forbidden"
    } else if message.starts_with("database error") {
        "database-error"
    } else {
        "graphql-error"
    }
}

#[async_trait::async_trait]
impl async_graphql::extensions::Extension for GqlMetricsExtension {
    async fn execute(
        &self,
        ctx: &async_graphql::extensions::ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: async_graphql::extensions::NextExecute<'_>,
    ) -> async_graphql::Response {
        *self.operation_name.lock().unwrap_or_else(PoisonError::into_inner) =
            operation_name.unwrap_or_default().to_owned();
        next.run(ctx, operation_name).await
    }

    async fn resolve(
        &self,
        ctx: &async_graphql::extensions::ExtensionContext<'_>,
        info: async_graphql::extensions::ResolveInfo<'_>,
        next: async_graphql::extensions::NextResolve<'_>,
    ) -> async_graphql::ServerResult<Option<async_graphql::Value>> {
        let metrics = match ctx.data_opt::<Arc<ManagerMetrics>>() {
            Some(m) if info.path_node.parent.is_none() => m.clone(),
            _ => return next.run(ctx, info).await,
        };
        let parent_type = info.parent_type.to_owned();
        let field_name = info.name.to_owned();
        let operation_type = match parent_type.as_str() {
            "Mutation" => "mutation",
            "Subscription" => "subscription",
            _ => "query",
        };
        let started = Instant::now();
        let result = next.run(ctx, info).await;
        let error =
            result.as_ref().err().map(|e| ErrorInfo::new("graphql", operation_type, gql_error_detail(&e.message), ""));
        let operation_name = self.operation_name.lock().unwrap_or_else(PoisonError::into_inner).clone();
        metrics.observe_graphql_field(
            operation_type,
            &operation_name,
            &parent_type,
            &field_name,
            started.elapsed(),
            error.as_ref(),
        );
        result
    }
}

/// The process's user + system CPU time in seconds (`/proc/self/stat`; Linux only).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture the manager runs on.
    Some((utime + stime) / 100.0)
}

/// The process's resident and virtual memory in bytes (`/proc/self/status`; Linux only).
fn process_memory() -> Option<(i64, i64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = |key: &str| -> Option<i64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let n: i64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
        Some(n * 1024)
    };
    Some((kb("VmRSS:")?, kb("VmSize:")?))
}

/// The error labels of a failed API response: the route's first segment as `domain`, the
/// method's `operation`, and the problem document's `type` suffix as `error_detail`.
fn api_error_info(method: &str, endpoint: &str, problem_type: Option<&str>, status: StatusCode) -> ErrorInfo {
    let domain = endpoint
        .trim_start_matches('/')
        .split('/')
        .next()
        .filter(|s| !s.is_empty() && !s.starts_with('{') && *s != UNMATCHED_ENDPOINT)
        .unwrap_or("api");
    let operation = match method {
        "GET" | "HEAD" => "read",
        "POST" => "create",
        "PUT" | "PATCH" => "update",
        "DELETE" => "delete",
        _ => "generic",
    };
    let detail = problem_type
        .map(|t| t.rsplit('/').next().unwrap_or(t).to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| {
            if status.is_server_error() {
                "internal-server-error".to_owned()
            } else {
                status.as_u16().to_string()
            }
        });
    ErrorInfo::new(domain, operation, &detail, "")
}

fn is_problem(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/problem+json"))
}

/// Middleware: records every API request in the [`ManagerMetrics`] service of the
/// [`ApiState`] (a no-op when there is none). Add it outside the error normalization so the
/// status code and problem type are the final ones.
pub async fn record_api_metrics(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let Some(metrics) = state.service::<ManagerMetrics>() else {
        return next.run(req).await;
    };
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| UNMATCHED_ENDPOINT.to_owned());
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        metrics.observe_api_request(&method, &endpoint, status.as_u16(), started.elapsed(), None);
        return response;
    }
    let (response, problem_type) = if is_problem(response.headers()) {
        let (parts, body) = response.into_parts();
        match axum::body::to_bytes(body, MAX_PROBLEM_BODY).await {
            Ok(bytes) => {
                let problem_type = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned));
                (Response::from_parts(parts, axum::body::Body::from(bytes)), problem_type)
            }
            Err(_) => (Response::from_parts(parts, axum::body::Body::empty()), None),
        }
    } else {
        (response, None)
    };
    let error = api_error_info(&method, &endpoint, problem_type.as_deref(), status);
    metrics.observe_api_request(&method, &endpoint, status.as_u16(), started.elapsed(), Some(&error));
    response
}

/// What `GET /metrics/service_discovery` lists: this manager and every known agent.
#[derive(Debug, Clone)]
pub struct ServiceDiscovery {
    db: DatabaseConnection,
    manager_id: String,
    metrics_addr: SocketAddr,
    agent_metrics: HashMap<String, SocketAddr>,
}

impl ServiceDiscovery {
    /// Lists the manager `manager_id` whose metrics listener is at `metrics_addr`, and the
    /// agents of `db`.
    pub fn new(db: DatabaseConnection, manager_id: &str, metrics_addr: SocketAddr) -> Self {
        ServiceDiscovery { db, manager_id: manager_id.to_owned(), metrics_addr, agent_metrics: HashMap::new() }
    }

    /// Records that agent `agent_id` serves its metrics at `addr` (the embedded agent);
    /// other agents are assumed on [`DEFAULT_AGENT_METRICS_PORT`] of their RPC host.
    pub fn with_agent_metrics(mut self, agent_id: &str, addr: SocketAddr) -> Self {
        self.agent_metrics.insert(agent_id.to_owned(), addr);
        self
    }

    /// The HTTP-SD target groups. `request_host` (the `Host` the scraper used) replaces an
    /// unspecified listen address of the manager.
    pub async fn targets(&self, request_host: Option<&str>) -> Result<Value, DbError> {
        let host_of_request = request_host.map(|h| split_host(h).0.to_owned());
        let manager_host = if self.metrics_addr.ip().is_unspecified() {
            host_of_request.clone().unwrap_or_else(|| "127.0.0.1".to_owned())
        } else {
            host_literal(self.metrics_addr.ip())
        };
        let mut groups = vec![json!({
            "targets": [format!("{manager_host}:{}", self.metrics_addr.port())],
            "labels": {
                "__metrics_path__": "/metrics",
                "service_group": "manager",
                "service_id": self.manager_id,
                "display_name": format!("manager {}", self.manager_id),
                "version": crate::VERSION,
            },
        })];
        for agent in crate::db::repo::list_agents(&self.db, None, None).await? {
            if agent.status.0 == bai_core::AgentStatus::Terminated {
                continue;
            }
            let rpc_host = rpc_host(&agent.addr)
                .or_else(|| agent.public_host.clone().filter(|h| !h.is_empty()))
                .unwrap_or_else(|| "127.0.0.1".to_owned());
            let target = match self.agent_metrics.get(&agent.id) {
                Some(addr) if !addr.ip().is_unspecified() => format!("{}:{}", host_literal(addr.ip()), addr.port()),
                Some(addr) => format!("{rpc_host}:{}", addr.port()),
                None => format!("{rpc_host}:{DEFAULT_AGENT_METRICS_PORT}"),
            };
            groups.push(json!({
                "targets": [target],
                "labels": {
                    "__metrics_path__": "/metrics",
                    "service_group": "agent",
                    "service_id": agent.id,
                    "display_name": format!("agent {}", agent.id),
                    "version": agent.version,
                    "agent_status": agent.status.0.to_string(),
                    "scaling_group": agent.scaling_group,
                    "region": agent.region,
                },
            }));
        }
        Ok(Value::Array(groups))
    }
}

/// An IP as it goes before `:port` (IPv6 in brackets).
fn host_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Splits `host:port` (IPv6 in brackets) into the host and the port, if any.
fn split_host(hostport: &str) -> (&str, Option<&str>) {
    if hostport.starts_with('[') {
        return match hostport.find(']') {
            Some(end) => (&hostport[..=end], hostport[end + 1..].strip_prefix(':')),
            None => (hostport, None),
        };
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (hostport, None),
    }
}

/// The host of an agent's RPC address (`grpc://10.0.0.5:6011`, `tcp://…`, `host:port`).
pub(crate) fn rpc_host(addr: &str) -> Option<String> {
    let rest = addr.split_once("://").map(|(_, r)| r).unwrap_or(addr);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let (host, _) = split_host(hostport);
    (!host.is_empty()).then(|| host.to_owned())
}

#[derive(Clone)]
struct MetricsApp {
    metrics: Arc<ManagerMetrics>,
    discovery: Arc<ServiceDiscovery>,
}

impl fmt::Debug for MetricsApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsApp").finish_non_exhaustive()
    }
}

async fn metrics_handler(State(app): State<MetricsApp>) -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], app.metrics.encode())
}

async fn service_discovery_handler(State(app): State<MetricsApp>, headers: HeaderMap) -> Response {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match app.discovery.targets(host).await {
        Ok(groups) => Json(groups).into_response(),
        Err(error) => {
            tracing::warn!(%error, "service discovery failed");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("service discovery failed: {error}")).into_response()
        }
    }
}

/// The metrics listener's routes: `GET /metrics` and `GET /metrics/service_discovery`; any
/// other path answers 404.
pub fn router(metrics: Arc<ManagerMetrics>, discovery: ServiceDiscovery) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/metrics/service_discovery", get(service_discovery_handler))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(MetricsApp { metrics, discovery: Arc::new(discovery) })
}

/// Serves [`router`] on the already bound `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<ManagerMetrics>,
    discovery: ServiceDiscovery,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving metrics");
    }
    axum::serve(listener, router(metrics, discovery)).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_encode_with_their_suffixes() {
        let m = ManagerMetrics::new();
        m.observe_api_request("GET", "/session/{id}", 200, Duration::from_millis(3), None);
        m.observe_event("kernel_started", Duration::from_millis(1), None);
        m.observe_event(
            "kernel_started",
            Duration::from_millis(1),
            Some(&ErrorInfo::new("session", "handle", "not-found", "ObjectNotFound")),
        );
        m.observe_action("session", "destroy", Duration::from_millis(1), None);
        m.layer_operation("client", "agent_client", "create_kernels").finish(Some("unavailable"));
        m.layer_retry("client", "agent_client", "create_kernels");
        drop(m.layer_operation("client", "agent_client", "destroy_kernel"));
        let text = m.encode();
        for line in [
            "# TYPE backendai_api_request_count counter",
            "backendai_api_request_count_total{method=\"GET\",endpoint=\"/session/{id}\",domain=\"\",operation=\"\",error_detail=\"\",status_code=\"200\"} 1",
            "# TYPE backendai_api_request_duration_sec histogram",
            "backendai_event_count_total{event_type=\"kernel_started\"} 2",
            "backendai_event_failure_count_total{event_type=\"kernel_started\",exception=\"ObjectNotFound\",domain=\"session\",operation=\"handle\",error_detail=\"not-found\"} 1",
            "backendai_layer_operation_error_count_total{domain=\"client\",layer=\"agent_client\",operation=\"create_kernels\",error_code=\"unavailable\"} 1",
            "backendai_layer_operation_count_total{domain=\"client\",layer=\"agent_client\",operation=\"create_kernels\",success=\"False\"} 1",
            "backendai_layer_operation_triggered_count{domain=\"client\",layer=\"agent_client\",operation=\"destroy_kernel\"} 0",
            "backendai_layer_retry_count_total{domain=\"client\",layer=\"agent_client\",operation=\"create_kernels\"} 1",
            "# TYPE backendai_memory_used_rss gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = ManagerMetrics::new();
        m.observe_action("a\"b", "x\\y", Duration::ZERO, Some(&ErrorInfo::new("d", "o", "line\nbreak", "E")));
        let text = m.encode();
        assert!(text.contains("entity_type=\"a\\\"b\",operation_type=\"x\\\\y\""), "{text}");
        assert!(text.contains("error_detail=\"line\\nbreak\""), "{text}");
    }

    #[test]
    fn api_errors_are_labelled_from_the_route_and_problem() {
        let e = api_error_info(
            "POST",
            "/session/{id}/rename",
            Some("https://api.backend.ai/probs/auth-failed"),
            StatusCode::UNAUTHORIZED,
        );
        assert_eq!(
            (e.domain.as_str(), e.operation.as_str(), e.error_detail.as_str()),
            ("session", "create", "auth-failed")
        );
        let e = api_error_info("GET", UNMATCHED_ENDPOINT, None, StatusCode::BAD_GATEWAY);
        assert_eq!(
            (e.domain.as_str(), e.operation.as_str(), e.error_detail.as_str()),
            ("api", "read", "internal-server-error")
        );
    }

    #[test]
    fn rpc_hosts_are_parsed() {
        assert_eq!(rpc_host("grpc://10.0.0.5:6011").as_deref(), Some("10.0.0.5"));
        assert_eq!(rpc_host("tcp://[::1]:6011").as_deref(), Some("[::1]"));
        assert_eq!(rpc_host("node01:6011").as_deref(), Some("node01"));
        assert_eq!(split_host("example.org"), ("example.org", None));
    }
}
