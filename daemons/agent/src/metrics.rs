//! The agent's Prometheus metrics and the endpoint that exposes them.
//!
//! [`AgentMetrics`] owns one [`Registry`] (no prefix: the names below are complete) with
//! the families of the Backend.AI agent specification:
//!
//! | name | type | labels |
//! |---|---|---|
//! | `backendai_rpc_requests` | counter | `method` |
//! | `backendai_rpc_failure_requests` | counter | `method`, `exception` |
//! | `backendai_rpc_request_duration_seconds` | histogram | `method` |
//! | `backendai_container_utilization` | gauge | `container_metric_name`, `agent_id`, `kernel_id`, `session_id`, `user_id`, `project_id`, `value_type` |
//! | `backendai_device_utilization` | gauge | `device_metric_name`, `agent_id`, `device_id`, `value_type` |
//! | `backendai_sync_container_lifecycle_trigger_count` | counter | `agent_id` |
//! | `backendai_sync_container_lifecycle_success_count` | counter | `agent_id` |
//! | `backendai_sync_container_lifecycle_failure_count` | counter | `agent_id`, `exception` |
//! | `backendai_stat_task_trigger_count` | counter | `agent_id`, `stat_scope` |
//! | `backendai_stat_task_success_count` | counter | `agent_id`, `stat_scope` |
//! | `backendai_stat_task_failure_count` | counter | `agent_id`, `stat_scope`, `exception` |
//! | `backendai_agent_heartbeat` | gauge | `agent_id` |
//! | `backendai_agent_cpu_usage` | gauge | `agent_id` |
//! | `backendai_agent_mem_usage` | gauge | `agent_id` |
//! | `backendai_agent_gpu_usage` | gauge | `agent_id` |
//! | `backendai_kernel_count` | gauge | `agent_id` |
//!
//! In the text exposition counters carry the `_total` suffix (so
//! `backendai_rpc_requests_total`, `backendai_stat_task_trigger_count_total`, …) and
//! histograms the `_bucket`, `_sum` and `_count` suffixes, as the specification expects.
//! A family shows up once it has at least one series; the per-agent gauges are created at 0
//! by [`AgentMetrics::new`], so a scrape right after start already shows them.
//!
//! [`serve`] answers `GET /metrics` with the OpenMetrics text of an [`AgentMetrics`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The buckets (upper bounds, in seconds) of `backendai_rpc_request_duration_seconds`;
/// the exposition adds the `+Inf` bucket.
pub const RPC_DURATION_BUCKETS: [f64; 10] = [0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

/// The content type [`serve`] answers `GET /metrics` with.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A gauge holding an `f64`.
type GaugeF64 = Gauge<f64, AtomicU64>;

/// The scope of a statistics collection task (the `stat_scope` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatScope {
    /// Node-wide statistics (label value `node`).
    Node,
    /// Per-container statistics (label value `container`).
    Container,
    /// Per-process statistics (label value `process`).
    Process,
}

impl StatScope {
    /// The label value: `node`, `container` or `process`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatScope::Node => "node",
            StatScope::Container => "container",
            StatScope::Process => "process",
        }
    }
}

impl fmt::Display for StatScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for StatScope {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

/// The labels that identify a kernel's series in `backendai_container_utilization`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KernelMetricLabels {
    /// The kernel (container) id (`kernel_id`).
    pub kernel_id: String,
    /// The session the kernel belongs to (`session_id`).
    pub session_id: String,
    /// The owner of the session (`user_id`).
    pub user_id: String,
    /// The project (group) of the session (`project_id`).
    pub project_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodFailureLabels {
    method: String,
    exception: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ContainerLabels {
    container_metric_name: String,
    agent_id: String,
    kernel_id: String,
    session_id: String,
    user_id: String,
    project_id: String,
    value_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeviceLabels {
    device_metric_name: String,
    agent_id: String,
    device_id: String,
    value_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AgentLabels {
    agent_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AgentFailureLabels {
    agent_id: String,
    exception: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatLabels {
    agent_id: String,
    stat_scope: StatScope,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatFailureLabels {
    agent_id: String,
    stat_scope: StatScope,
    exception: String,
}

fn rpc_duration_histogram() -> Histogram {
    Histogram::new(RPC_DURATION_BUCKETS)
}

/// Escapes a label value for the text exposition (`\` → `\\`, `"` → `\"`, newline → `\n`):
/// prometheus-client writes label values verbatim, and exception messages or metric names
/// coming from plugins could otherwise break the whole scrape.
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

/// The agent's metrics: one registry and the families of the specification.
///
/// Cheap to share behind an [`Arc`]; every method takes `&self`.
#[derive(Debug)]
pub struct AgentMetrics {
    registry: Registry,
    /// The (escaped) `agent_id` label value.
    agent_id: String,
    agent_labels: AgentLabels,

    rpc_requests: Family<MethodLabels, Counter>,
    rpc_failure_requests: Family<MethodFailureLabels, Counter>,
    rpc_request_duration: Family<MethodLabels, Histogram, fn() -> Histogram>,

    container_utilization: Family<ContainerLabels, GaugeF64>,
    /// The label sets of `container_utilization` by (raw) kernel id, for [`Self::forget_kernel`]
    /// (prometheus-client's `Family` has no `retain`). Taken before the family's own lock
    /// whenever both are needed.
    kernel_series: Mutex<HashMap<String, HashSet<ContainerLabels>>>,
    device_utilization: Family<DeviceLabels, GaugeF64>,

    sync_trigger: Family<AgentLabels, Counter>,
    sync_success: Family<AgentLabels, Counter>,
    sync_failure: Family<AgentFailureLabels, Counter>,

    stat_trigger: Family<StatLabels, Counter>,
    stat_success: Family<StatLabels, Counter>,
    stat_failure: Family<StatFailureLabels, Counter>,

    heartbeat: Family<AgentLabels, GaugeF64>,
    cpu_usage: Family<AgentLabels, GaugeF64>,
    mem_usage: Family<AgentLabels, GaugeF64>,
    gpu_usage: Family<AgentLabels, GaugeF64>,
    kernel_count: Family<AgentLabels, Gauge>,
}

impl AgentMetrics {
    /// Creates the registry and every family; `agent_id` is the `agent_id` label of every
    /// per-agent series. The heartbeat, usage and kernel-count gauges start at 0.
    pub fn new(agent_id: &str) -> Self {
        let mut registry = Registry::default();
        let agent_id = label(agent_id);
        let agent_labels = AgentLabels { agent_id: agent_id.clone() };

        let rpc_requests = Family::<MethodLabels, Counter>::default();
        let rpc_failure_requests = Family::<MethodFailureLabels, Counter>::default();
        let rpc_request_duration =
            Family::<MethodLabels, Histogram, fn() -> Histogram>::new_with_constructor(rpc_duration_histogram);
        let container_utilization = Family::<ContainerLabels, GaugeF64>::default();
        let device_utilization = Family::<DeviceLabels, GaugeF64>::default();
        let sync_trigger = Family::<AgentLabels, Counter>::default();
        let sync_success = Family::<AgentLabels, Counter>::default();
        let sync_failure = Family::<AgentFailureLabels, Counter>::default();
        let stat_trigger = Family::<StatLabels, Counter>::default();
        let stat_success = Family::<StatLabels, Counter>::default();
        let stat_failure = Family::<StatFailureLabels, Counter>::default();
        let heartbeat = Family::<AgentLabels, GaugeF64>::default();
        let cpu_usage = Family::<AgentLabels, GaugeF64>::default();
        let mem_usage = Family::<AgentLabels, GaugeF64>::default();
        let gpu_usage = Family::<AgentLabels, GaugeF64>::default();
        let kernel_count = Family::<AgentLabels, Gauge>::default();

        // Help texts have no final period: the registry appends one.
        registry.register(
            "backendai_rpc_requests",
            "Number of RPC requests received by the agent",
            rpc_requests.clone(),
        );
        registry.register(
            "backendai_rpc_failure_requests",
            "Number of RPC requests that failed, by exception",
            rpc_failure_requests.clone(),
        );
        // Not `register_with_unit`: that would append `_seconds` a second time.
        registry.register(
            "backendai_rpc_request_duration_seconds",
            "Duration of RPC requests in seconds",
            rpc_request_duration.clone(),
        );
        registry.register(
            "backendai_container_utilization",
            "Container resource utilization (value_type: current, capacity or pct)",
            container_utilization.clone(),
        );
        registry.register(
            "backendai_device_utilization",
            "Device resource utilization (value_type: current, capacity or pct)",
            device_utilization.clone(),
        );
        registry.register(
            "backendai_sync_container_lifecycle_trigger_count",
            "Number of container lifecycle synchronizations triggered",
            sync_trigger.clone(),
        );
        registry.register(
            "backendai_sync_container_lifecycle_success_count",
            "Number of kernels synchronized by successful container lifecycle synchronizations",
            sync_success.clone(),
        );
        registry.register(
            "backendai_sync_container_lifecycle_failure_count",
            "Number of failed container lifecycle synchronizations, by exception",
            sync_failure.clone(),
        );
        registry.register(
            "backendai_stat_task_trigger_count",
            "Number of statistics collection tasks triggered, by scope",
            stat_trigger.clone(),
        );
        registry.register(
            "backendai_stat_task_success_count",
            "Number of statistics collection tasks that succeeded, by scope",
            stat_success.clone(),
        );
        registry.register(
            "backendai_stat_task_failure_count",
            "Number of statistics collection tasks that failed, by scope and exception",
            stat_failure.clone(),
        );
        registry.register(
            "backendai_agent_heartbeat",
            "Timestamp of the agent's last heartbeat (unix seconds)",
            heartbeat.clone(),
        );
        registry.register("backendai_agent_cpu_usage", "CPU usage of the agent node in percent", cpu_usage.clone());
        registry.register("backendai_agent_mem_usage", "Memory usage of the agent node in bytes", mem_usage.clone());
        registry.register("backendai_agent_gpu_usage", "GPU usage of the agent node in percent", gpu_usage.clone());
        registry.register("backendai_kernel_count", "Number of kernels running on the agent", kernel_count.clone());

        for gauge in [&heartbeat, &cpu_usage, &mem_usage, &gpu_usage] {
            gauge.get_or_create(&agent_labels).set(0.0);
        }
        kernel_count.get_or_create(&agent_labels).set(0);

        Self {
            registry,
            agent_id,
            agent_labels,
            rpc_requests,
            rpc_failure_requests,
            rpc_request_duration,
            container_utilization,
            kernel_series: Mutex::new(HashMap::new()),
            device_utilization,
            sync_trigger,
            sync_success,
            sync_failure,
            stat_trigger,
            stat_success,
            stat_failure,
            heartbeat,
            cpu_usage,
            mem_usage,
            gpu_usage,
            kernel_count,
        }
    }

    /// Records one RPC request of `method` that took `elapsed`: counts it, observes its
    /// duration, and when `failure` is `Some(exception)` also counts it as a failure with
    /// that `exception` label.
    pub fn observe_rpc(&self, method: &str, elapsed: Duration, failure: Option<&str>) {
        let labels = MethodLabels { method: label(method) };
        self.rpc_requests.get_or_create(&labels).inc();
        self.rpc_request_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        if let Some(exception) = failure {
            let labels = MethodFailureLabels { method: labels.method, exception: label(exception) };
            self.rpc_failure_requests.get_or_create(&labels).inc();
        }
    }

    /// Sets the `backendai_container_utilization` series of `kernel` for `metric`
    /// (`container_metric_name`) and `value_type` (`current`, `capacity` or `pct`).
    pub fn set_container_metric(&self, kernel: &KernelMetricLabels, metric: &str, value_type: &str, value: f64) {
        let labels = ContainerLabels {
            container_metric_name: label(metric),
            agent_id: self.agent_id.clone(),
            kernel_id: label(&kernel.kernel_id),
            session_id: label(&kernel.session_id),
            user_id: label(&kernel.user_id),
            project_id: label(&kernel.project_id),
            value_type: label(value_type),
        };
        // Holding the index lock while creating the series keeps a concurrent
        // `forget_kernel` from leaving a series behind that the index no longer knows.
        let mut index = self.kernel_series.lock().unwrap_or_else(PoisonError::into_inner);
        self.container_utilization.get_or_create(&labels).set(value);
        index.entry(kernel.kernel_id.clone()).or_default().insert(labels);
    }

    /// Removes every `backendai_container_utilization` series of the kernel `kernel_id`
    /// (for a kernel that is gone); a kernel without series is a no-op.
    pub fn forget_kernel(&self, kernel_id: &str) {
        let mut index = self.kernel_series.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = index.remove(kernel_id) {
            for labels in &series {
                self.container_utilization.remove(labels);
            }
        }
    }

    /// Sets the `backendai_device_utilization` series of `device_id` for `metric`
    /// (`device_metric_name`) and `value_type` (`current`, `capacity` or `pct`).
    pub fn set_device_metric(&self, metric: &str, device_id: &str, value_type: &str, value: f64) {
        let labels = DeviceLabels {
            device_metric_name: label(metric),
            agent_id: self.agent_id.clone(),
            device_id: label(device_id),
            value_type: label(value_type),
        };
        self.device_utilization.get_or_create(&labels).set(value);
    }

    /// Counts a triggered container lifecycle synchronization.
    pub fn sync_triggered(&self) {
        self.sync_trigger.get_or_create(&self.agent_labels).inc();
    }

    /// Counts a successful container lifecycle synchronization that synchronized `n`
    /// kernels: the success counter grows by `n` (and exists even when `n` is 0).
    pub fn sync_succeeded(&self, n: u64) {
        self.sync_success.get_or_create(&self.agent_labels).inc_by(n);
    }

    /// Counts a failed container lifecycle synchronization with `exception`.
    pub fn sync_failed(&self, exception: &str) {
        let labels = AgentFailureLabels { agent_id: self.agent_id.clone(), exception: label(exception) };
        self.sync_failure.get_or_create(&labels).inc();
    }

    fn stat_labels(&self, scope: StatScope) -> StatLabels {
        StatLabels { agent_id: self.agent_id.clone(), stat_scope: scope }
    }

    /// Counts a triggered statistics collection task of `scope`.
    pub fn stat_triggered(&self, scope: StatScope) {
        self.stat_trigger.get_or_create(&self.stat_labels(scope)).inc();
    }

    /// Counts a successful statistics collection task of `scope`.
    pub fn stat_succeeded(&self, scope: StatScope) {
        self.stat_success.get_or_create(&self.stat_labels(scope)).inc();
    }

    /// Counts a failed statistics collection task of `scope` with `exception`.
    pub fn stat_failed(&self, scope: StatScope, exception: &str) {
        let labels =
            StatFailureLabels { agent_id: self.agent_id.clone(), stat_scope: scope, exception: label(exception) };
        self.stat_failure.get_or_create(&labels).inc();
    }

    /// Records the time of the last heartbeat (unix seconds).
    pub fn heartbeat(&self, unix_seconds: f64) {
        self.heartbeat.get_or_create(&self.agent_labels).set(unix_seconds);
    }

    /// Sets the number of running kernels.
    pub fn set_kernel_count(&self, n: i64) {
        self.kernel_count.get_or_create(&self.agent_labels).set(n);
    }

    /// Sets the node's CPU usage (percent), memory usage (bytes) and GPU usage (percent).
    pub fn set_usage(&self, cpu_pct: f64, mem_bytes: f64, gpu_pct: f64) {
        self.cpu_usage.get_or_create(&self.agent_labels).set(cpu_pct);
        self.mem_usage.get_or_create(&self.agent_labels).set(mem_bytes);
        self.gpu_usage.get_or_create(&self.agent_labels).set(gpu_pct);
    }

    /// The OpenMetrics text exposition of every metric, ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing into a String does not fail and no label set here fails to encode;
            // keep whatever was written rather than failing the scrape.
            tracing::error!(%error, "encoding the agent metrics failed");
        }
        out
    }
}

async fn metrics_handler(axum::extract::State(metrics): axum::extract::State<Arc<AgentMetrics>>) -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], metrics.encode())
}

/// Serves `GET /metrics` (the text of [`AgentMetrics::encode`], content type
/// [`OPENMETRICS_CONTENT_TYPE`]) on the already bound `listener` until `shutdown`
/// resolves; any other path answers 404.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<AgentMetrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(metrics);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving metrics");
    }
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use bai_test_support::openmetrics::parse;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn kernel(id: &str) -> KernelMetricLabels {
        KernelMetricLabels {
            kernel_id: id.to_owned(),
            session_id: format!("sess-{id}"),
            user_id: "user-1".to_owned(),
            project_id: "proj-1".to_owned(),
        }
    }

    fn populated() -> AgentMetrics {
        let m = AgentMetrics::new("i-agent1");
        m.observe_rpc("create_kernels", Duration::from_millis(5), None);
        m.observe_rpc("create_kernels", Duration::from_millis(700), Some("DockerError"));
        m.observe_rpc("ping", Duration::from_micros(100), None);
        m.set_container_metric(&kernel("k1"), "cpu_util", "current", 12.5);
        m.set_container_metric(&kernel("k1"), "cpu_util", "capacity", 200.0);
        m.set_container_metric(&kernel("k1"), "mem", "pct", 33.0);
        m.set_container_metric(&kernel("k2"), "mem", "current", 1024.0);
        m.set_device_metric("cuda_util", "gpu0", "pct", 80.0);
        m.sync_triggered();
        m.sync_triggered();
        m.sync_succeeded(3);
        m.sync_failed("TimeoutError");
        m.stat_triggered(StatScope::Node);
        m.stat_triggered(StatScope::Container);
        m.stat_triggered(StatScope::Process);
        m.stat_succeeded(StatScope::Node);
        m.stat_failed(StatScope::Container, "OSError");
        m.heartbeat(1_700_000_000.5);
        m.set_kernel_count(2);
        m.set_usage(42.0, 8.0 * 1024.0 * 1024.0 * 1024.0, 55.5);
        m
    }

    #[test]
    fn every_family_has_its_names_types_and_labels() {
        let exposition = parse(&populated().encode());

        let expected_types = [
            ("backendai_rpc_requests", "counter"),
            ("backendai_rpc_failure_requests", "counter"),
            ("backendai_rpc_request_duration_seconds", "histogram"),
            ("backendai_container_utilization", "gauge"),
            ("backendai_device_utilization", "gauge"),
            ("backendai_sync_container_lifecycle_trigger_count", "counter"),
            ("backendai_sync_container_lifecycle_success_count", "counter"),
            ("backendai_sync_container_lifecycle_failure_count", "counter"),
            ("backendai_stat_task_trigger_count", "counter"),
            ("backendai_stat_task_success_count", "counter"),
            ("backendai_stat_task_failure_count", "counter"),
            ("backendai_agent_heartbeat", "gauge"),
            ("backendai_agent_cpu_usage", "gauge"),
            ("backendai_agent_mem_usage", "gauge"),
            ("backendai_agent_gpu_usage", "gauge"),
            ("backendai_kernel_count", "gauge"),
        ];
        let expected: BTreeMap<String, String> =
            expected_types.iter().map(|(n, t)| ((*n).to_owned(), (*t).to_owned())).collect();
        assert_eq!(exposition.types, expected);

        // Every sample name is its family's name plus the suffix of its type.
        for sample in &exposition.samples {
            let family = expected_types.iter().find(|(n, t)| match *t {
                "counter" => sample.name == format!("{n}_total"),
                "histogram" => ["_bucket", "_sum", "_count"].iter().any(|s| sample.name == format!("{n}{s}")),
                _ => sample.name == *n,
            });
            assert!(family.is_some(), "unexpected sample {}", sample.name);
        }

        let agent = ("agent_id", "i-agent1");

        // RPC.
        let rpc = exposition.named("backendai_rpc_requests_total");
        assert_eq!(rpc.len(), 2);
        let create = rpc.iter().find(|s| s.labels == labels(&[("method", "create_kernels")])).expect("create_kernels");
        assert_eq!(create.value, 2.0);
        let failure = exposition.one("backendai_rpc_failure_requests_total");
        assert_eq!(failure.labels, labels(&[("method", "create_kernels"), ("exception", "DockerError")]));
        assert_eq!(failure.value, 1.0);
        let counts = exposition.named("backendai_rpc_request_duration_seconds_count");
        assert_eq!(counts.len(), 2);
        for sample in exposition.samples.iter().filter(|s| s.name.starts_with("backendai_rpc_request_duration_seconds"))
        {
            let keys: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
            if sample.name.ends_with("_bucket") {
                assert_eq!(keys, ["le", "method"]);
            } else {
                assert_eq!(keys, ["method"]);
            }
        }
        let sum = exposition
            .named("backendai_rpc_request_duration_seconds_sum")
            .into_iter()
            .find(|s| s.labels["method"] == "create_kernels")
            .expect("sum");
        assert!((sum.value - 0.705).abs() < 1e-9, "{}", sum.value);

        // Container utilization.
        let container = exposition.named("backendai_container_utilization");
        assert_eq!(container.len(), 4);
        let k1_cpu = container
            .iter()
            .find(|s| s.labels["kernel_id"] == "k1" && s.labels["value_type"] == "capacity")
            .expect("k1 capacity");
        assert_eq!(
            k1_cpu.labels,
            labels(&[
                ("container_metric_name", "cpu_util"),
                agent,
                ("kernel_id", "k1"),
                ("session_id", "sess-k1"),
                ("user_id", "user-1"),
                ("project_id", "proj-1"),
                ("value_type", "capacity"),
            ])
        );
        assert_eq!(k1_cpu.value, 200.0);

        // Device utilization.
        let device = exposition.one("backendai_device_utilization");
        assert_eq!(
            device.labels,
            labels(&[("device_metric_name", "cuda_util"), agent, ("device_id", "gpu0"), ("value_type", "pct"),])
        );
        assert_eq!(device.value, 80.0);

        // Lifecycle sync.
        let trigger = exposition.one("backendai_sync_container_lifecycle_trigger_count_total");
        assert_eq!((trigger.labels.clone(), trigger.value), (labels(&[agent]), 2.0));
        let success = exposition.one("backendai_sync_container_lifecycle_success_count_total");
        assert_eq!((success.labels.clone(), success.value), (labels(&[agent]), 3.0));
        let failure = exposition.one("backendai_sync_container_lifecycle_failure_count_total");
        assert_eq!((failure.labels.clone(), failure.value), (labels(&[agent, ("exception", "TimeoutError")]), 1.0));

        // Stat tasks.
        let scopes: BTreeMap<String, f64> = exposition
            .named("backendai_stat_task_trigger_count_total")
            .iter()
            .map(|s| {
                assert_eq!(s.labels.len(), 2);
                assert_eq!(s.labels["agent_id"], "i-agent1");
                (s.labels["stat_scope"].clone(), s.value)
            })
            .collect();
        assert_eq!(
            scopes,
            [("container", 1.0), ("node", 1.0), ("process", 1.0)].iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
        );
        let success = exposition.one("backendai_stat_task_success_count_total");
        assert_eq!(success.labels, labels(&[agent, ("stat_scope", "node")]));
        let failure = exposition.one("backendai_stat_task_failure_count_total");
        assert_eq!(failure.labels, labels(&[agent, ("stat_scope", "container"), ("exception", "OSError")]));

        // Per-agent gauges.
        for (name, value) in [
            ("backendai_agent_heartbeat", 1_700_000_000.5),
            ("backendai_agent_cpu_usage", 42.0),
            ("backendai_agent_mem_usage", 8.0 * 1024.0 * 1024.0 * 1024.0),
            ("backendai_agent_gpu_usage", 55.5),
            ("backendai_kernel_count", 2.0),
        ] {
            let sample = exposition.one(name);
            assert_eq!(sample.labels, labels(&[agent]), "{name}");
            assert_eq!(sample.value, value, "{name}");
        }
    }

    #[test]
    fn histogram_buckets_are_the_specified_ones() {
        let m = AgentMetrics::new("a");
        m.observe_rpc("m", Duration::from_millis(50), None);
        m.observe_rpc("m", Duration::from_secs(100), None);
        let exposition = parse(&m.encode());
        let buckets = exposition.named("backendai_rpc_request_duration_seconds_bucket");
        let les: Vec<f64> = buckets
            .iter()
            .map(|s| match s.labels["le"].as_str() {
                "+Inf" => f64::INFINITY,
                le => le.parse().expect("le"),
            })
            .collect();
        let mut expected = RPC_DURATION_BUCKETS.to_vec();
        expected.push(f64::INFINITY);
        assert_eq!(les, expected);
        assert_eq!(expected, [0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, f64::INFINITY]);
        // Cumulative counts: 0.05 s lands in le=0.1, 100 s only in +Inf.
        let counts: Vec<f64> = buckets.iter().map(|s| s.value).collect();
        assert_eq!(counts, [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0]);
        assert_eq!(exposition.one("backendai_rpc_request_duration_seconds_count").value, 2.0);
    }

    #[test]
    fn forget_kernel_removes_its_series_only() {
        let m = populated();
        m.forget_kernel("k1");
        m.forget_kernel("never-seen");
        let exposition = parse(&m.encode());
        let container = exposition.named("backendai_container_utilization");
        assert_eq!(container.len(), 1);
        assert_eq!(container[0].labels["kernel_id"], "k2");

        // The kernel can come back, and forgetting the last kernel empties the family
        // (prometheus-client then leaves the family out of the exposition).
        m.set_container_metric(&kernel("k1"), "cpu_util", "current", 1.0);
        assert_eq!(parse(&m.encode()).named("backendai_container_utilization").len(), 2);
        m.forget_kernel("k1");
        m.forget_kernel("k2");
        let exposition = parse(&m.encode());
        assert!(exposition.named("backendai_container_utilization").is_empty());
    }

    #[test]
    fn per_agent_gauges_start_at_zero() {
        let exposition = parse(&AgentMetrics::new("fresh").encode());
        for name in [
            "backendai_agent_heartbeat",
            "backendai_agent_cpu_usage",
            "backendai_agent_mem_usage",
            "backendai_agent_gpu_usage",
            "backendai_kernel_count",
        ] {
            let sample = exposition.one(name);
            assert_eq!(sample.labels, labels(&[("agent_id", "fresh")]));
            assert_eq!(sample.value, 0.0);
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let m = AgentMetrics::new("a\"b");
        let exception = "ValueError: bad \"x\"\nat C:\\path";
        m.observe_rpc("m", Duration::ZERO, Some(exception));
        m.sync_failed(exception);
        let exposition = parse(&m.encode());
        let failure = exposition.one("backendai_rpc_failure_requests_total");
        assert_eq!(failure.labels["exception"], exception);
        let failure = exposition.one("backendai_sync_container_lifecycle_failure_count_total");
        assert_eq!(failure.labels["exception"], exception);
        assert_eq!(failure.labels["agent_id"], "a\"b");
    }

    async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        String::from_utf8(response).expect("utf-8 response")
    }

    #[tokio::test]
    async fn serves_metrics_and_404_elsewhere() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Arc::new(populated());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, metrics.clone(), async {
            let _ = stopped.await;
        }));

        let response = http_get(addr, "/metrics").await;
        let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.lines().any(|l| l.eq_ignore_ascii_case(&format!("content-type: {OPENMETRICS_CONTENT_TYPE}"))),
            "{head}"
        );
        assert!(body.contains("backendai_rpc_requests_total{method=\"ping\"} 1\n"), "{body}");
        assert!(body.ends_with("# EOF\n"));
        assert_eq!(parse(body).types.len(), 16);

        let response = http_get(addr, "/nope").await;
        assert!(response.starts_with("HTTP/1.1 404 Not Found\r\n"), "{response}");
        let response = http_get(addr, "/").await;
        assert!(response.starts_with("HTTP/1.1 404 Not Found\r\n"), "{response}");

        stop.send(()).expect("server still running");
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server stops on shutdown")
            .expect("server task")
            .expect("server result");
    }
}
