//! The scheduler from Python: snapshots, configuration, `plan`, `explain`, `simulate` and
//! typed results, over [`bai_scheduler`]. The GIL is released while the scheduler runs.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use bai_core::{Decimal, SessionId, SessionType};
use bai_scheduler::{
    explain_reason, Arrival, BandMode, BlockReason, Blocked, Cancellation, Config, GroupConfig, KernelPlacement,
    KeyReport, PendingSession, Placement, Plan, PredicateFailure, SimulationOptions, SimulationReport, SlotShortage,
    Snapshot,
};
use chrono::{DateTime, TimeDelta, Utc};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyInt, PyString};
use serde_json::Value;

use crate::convert::{self, datetime_text, is_decimal, is_timedelta, Path, Seg};
use crate::errors::{self, Kind};
use crate::slots::PyResourceSlot;

/// Registers the scheduler's classes and functions on the native module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySnapshot>()?;
    m.add_class::<PyConfig>()?;
    m.add_class::<PyPlan>()?;
    m.add_class::<PyPlacement>()?;
    m.add_class::<PyKernelPlacement>()?;
    m.add_class::<PyBlocked>()?;
    m.add_class::<PyBlockReason>()?;
    m.add_class::<PyPredicateFailure>()?;
    m.add_class::<PySlotShortage>()?;
    m.add_class::<PyCancellation>()?;
    m.add_class::<PySimulationReport>()?;
    m.add_class::<PyKeyReport>()?;
    m.add_function(wrap_pyfunction!(plan, m)?)?;
    m.add_function(wrap_pyfunction!(explain, m)?)?;
    m.add_function(wrap_pyfunction!(simulate, m)?)?;
    Ok(())
}

/// A string as Python's `repr` writes it (single quotes unless the text has one).
fn q(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('\n', "\\n");
    if text.contains('\'') && !text.contains('"') {
        format!("\"{escaped}\"")
    } else {
        format!("'{}'", escaped.replace('\'', "\\'"))
    }
}

/// A list of strings as Python's `repr` writes it.
fn q_list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "))
}

fn invalid_value(message: String) -> PyErr {
    errors::raise(Kind::InvalidValue, message, &[])
}

fn invalid_config(field: &str, reason: String) -> PyErr {
    errors::scheduler(bai_scheduler::Error::InvalidConfig { field: field.to_string(), reason })
}

/// A session id from a `str` or a `uuid.UUID`.
fn session_id(obj: &Bound<'_, PyAny>) -> PyResult<SessionId> {
    let text = obj.str()?.to_cow()?.to_string();
    SessionId::from_str(&text).map_err(errors::core)
}

/// A time from a `datetime` (naive = UTC) or RFC 3339 text; `None` is now.
fn time_arg(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<DateTime<Utc>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else { return Ok(Utc::now()) };
    let text = match datetime_text(obj)? {
        Some(text) => text,
        None => match obj.cast::<PyString>() {
            Ok(s) => s.to_cow()?.to_string(),
            Err(_) => {
                let type_name = obj.get_type().name()?.to_string();
                return Err(invalid_value(format!(
                    "{what}: expected a datetime or an ISO 8601 string, got {type_name}"
                )));
            }
        },
    };
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| invalid_value(format!("{what}: {text:?} is not an RFC 3339 time ({e})")))
}

/// A duration from a `timedelta` or a number of seconds.
fn duration_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<TimeDelta> {
    let seconds: f64 = if is_timedelta(obj)? {
        obj.call_method0("total_seconds")?.extract()?
    } else if (obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyFloat>() || is_decimal(obj)?)
        && !obj.is_instance_of::<pyo3::types::PyBool>()
    {
        obj.extract::<f64>().or_else(|_| obj.call_method0("__float__")?.extract())?
    } else {
        let type_name = obj.get_type().name()?.to_string();
        return Err(invalid_value(format!("{what}: expected a timedelta or a number of seconds, got {type_name}")));
    };
    if !seconds.is_finite() || !(0.0..=1e12).contains(&seconds) {
        return Err(invalid_value(format!("{what}: {seconds} s is not a duration from 0 to 10^12 seconds")));
    }
    TimeDelta::try_milliseconds((seconds * 1000.0).round() as i64)
        .ok_or_else(|| invalid_value(format!("{what}: {seconds} s is out of range")))
}

// ---------------------------------------------------------------------------------------------
// Snapshot
// ---------------------------------------------------------------------------------------------

/// The scheduler's input, converted once and reusable across plans.
#[pyclass(name = "Snapshot", module = "bai.scheduler", frozen)]
pub struct PySnapshot {
    inner: Arc<Snapshot>,
}

impl PySnapshot {
    fn convert(data: Option<&Bound<'_, PyAny>>, fields: Option<&Bound<'_, PyDict>>) -> PyResult<Snapshot> {
        let mut root = match data {
            None => serde_json::Map::new(),
            Some(obj) => match convert::to_json(obj, &mut Path::default())? {
                Value::Object(map) => map,
                _ => {
                    let type_name = obj.get_type().name()?.to_string();
                    return Err(errors::snapshot(
                        "",
                        format!("expected a dict or a dataclass with agents and pending, got {type_name}"),
                    ));
                }
            },
        };
        if let Some(fields) = fields {
            for (key, value) in fields.iter() {
                if value.is_none() {
                    continue;
                }
                let key: String = key.extract()?;
                let converted = convert::to_json(&value, &mut Path::key(&key))?;
                root.insert(key, converted);
            }
        }
        // a snapshot of agents alone is common (simulations): no pending sessions
        root.entry("pending").or_insert_with(|| Value::Array(Vec::new()));
        let converted: Snapshot = convert::from_json(Value::Object(root), &Path::default())?;
        // Deserialising from a `Value` moves its strings into the snapshot, scattered among the
        // freed nodes of the JSON tree; a clone lays the snapshot out compactly, which makes
        // the scheduler's passes over it markedly faster (1.4x on the 100,000-session benchmark).
        Ok(converted.clone())
    }
}

/// A snapshot argument: a `Snapshot`, or anything its constructor accepts.
fn snapshot_arg(obj: &Bound<'_, PyAny>) -> PyResult<Arc<Snapshot>> {
    match obj.cast::<PySnapshot>() {
        Ok(s) => Ok(Arc::clone(&s.get().inner)),
        Err(_) => PySnapshot::convert(Some(obj), None).map(Arc::new),
    }
}

#[pymethods]
impl PySnapshot {
    #[new]
    #[pyo3(signature = (data = None, /, **fields))]
    fn new(data: Option<&Bound<'_, PyAny>>, fields: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        if let (Some(obj), None) = (data, fields) {
            if let Ok(s) = obj.cast::<PySnapshot>() {
                return Ok(Self { inner: Arc::clone(&s.get().inner) });
            }
        }
        Self::convert(data, fields).map(|s| Self { inner: Arc::new(s) })
    }

    /// Parses the JSON form (the one the Rust crate and the manager use).
    #[staticmethod]
    fn from_json(py: Python<'_>, text: String) -> PyResult<Self> {
        let parsed = py.detach(move || {
            let mut de = serde_json::Deserializer::from_str(&text);
            serde_path_to_error::deserialize::<_, Snapshot>(&mut de)
                .map_err(|e| (e.path().to_string(), e.into_inner().to_string()))
        });
        match parsed {
            Ok(s) => Ok(Self { inner: Arc::new(s) }),
            Err((path, reason)) => Err(errors::snapshot(if path == "." { "" } else { &path }, reason)),
        }
    }

    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&*self.inner).map_err(|e| errors::snapshot("", e.to_string()))
    }

    /// The snapshot as plain Python data (what `Snapshot(...)` accepts back).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value = serde_json::to_value(&*self.inner).map_err(|e| errors::snapshot("", e.to_string()))?;
        convert::to_py(py, &value)
    }

    #[getter]
    fn agent_count(&self) -> usize {
        self.inner.agents.len()
    }

    #[getter]
    fn pending_count(&self) -> usize {
        self.inner.pending.len()
    }

    fn __repr__(&self) -> String {
        format!("Snapshot(agents={}, pending={})", self.inner.agents.len(), self.inner.pending.len())
    }
}

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/// The scheduler's configuration: a default queue policy and agent selector, per-group overrides.
#[pyclass(name = "Config", module = "bai.scheduler", frozen)]
pub struct PyConfig {
    inner: Arc<Config>,
}

const GROUP_KEYS: [&str; 5] = ["queue", "selector", "queue_options", "pending_timeout", "allowed_session_types"];
const CONFIG_KEYS: [&str; 8] = [
    "queue",
    "selector",
    "queue_options",
    "pending_timeout",
    "allowed_session_types",
    "groups",
    "resource_priority",
    "all_bands",
];

fn check_keys(dict: &Bound<'_, PyDict>, allowed: &[&str], field: &str) -> PyResult<()> {
    for key in dict.keys() {
        let key: String = key.extract().map_err(|_| invalid_config(field, "keys must be strings".into()))?;
        if !allowed.contains(&key.as_str()) {
            return Err(invalid_config(
                &if field.is_empty() { key.clone() } else { format!("{field}.{key}") },
                format!("unknown option {key:?}: expected one of {}", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

fn group_config(
    field: &str,
    queue: &str,
    selector: &str,
    queue_options: Option<&Bound<'_, PyAny>>,
    pending_timeout: Option<&Bound<'_, PyAny>>,
    allowed_session_types: Option<&Bound<'_, PyAny>>,
) -> PyResult<GroupConfig> {
    let prefix = |name: &str| if field.is_empty() { name.to_string() } else { format!("{field}.{name}") };
    let options = match queue_options.filter(|o| !o.is_none()) {
        None => serde_json::json!({}),
        Some(o) => convert::to_json(o, &mut Path::key(&prefix("queue_options")))?,
    };
    let mut group = GroupConfig::from_names(queue, &options, selector).map_err(|e| match e {
        bai_scheduler::Error::InvalidConfig { field: f, reason } => invalid_config(&prefix(&f), reason),
        other => errors::scheduler(other),
    })?;
    if let Some(t) = pending_timeout.filter(|o| !o.is_none()) {
        group.pending_timeout = Some(duration_arg(t, &prefix("pending_timeout"))?);
    }
    if let Some(types) = allowed_session_types.filter(|o| !o.is_none()) {
        let mut out = Vec::new();
        for item in types.try_iter()? {
            let item = item?;
            let text = if let Ok(s) = item.cast::<PyString>() {
                s.to_cow()?.to_string()
            } else {
                item.getattr("value").and_then(|v| v.extract::<String>()).map_err(|_| {
                    invalid_config(&prefix("allowed_session_types"), format!("expected session type names, got {item}"))
                })?
            };
            out.push(
                SessionType::from_str(&text)
                    .map_err(|e| invalid_config(&prefix("allowed_session_types"), e.to_string()))?,
            );
        }
        group.allowed_session_types = Some(out);
    }
    Ok(group)
}

fn group_from_dict(name: &str, options: &Bound<'_, PyAny>) -> PyResult<GroupConfig> {
    let field = format!("groups.{name}");
    let dict = options.cast::<PyDict>().map_err(|_| invalid_config(&field, "expected a dict of options".into()))?;
    check_keys(dict, &GROUP_KEYS, &field)?;
    let text = |key: &str, default: &str| -> PyResult<String> {
        match dict.get_item(key)?.filter(|v| !v.is_none()) {
            None => Ok(default.to_string()),
            Some(v) => {
                v.extract::<String>().map_err(|_| invalid_config(&format!("{field}.{key}"), "expected a str".into()))
            }
        }
    };
    group_config(
        &field,
        &text("queue", "fifo")?,
        &text("selector", "dispersed")?,
        dict.get_item("queue_options")?.as_ref(),
        dict.get_item("pending_timeout")?.as_ref(),
        dict.get_item("allowed_session_types")?.as_ref(),
    )
}

/// A config argument: a `Config`, a dict of its constructor's keyword arguments, or `None`.
fn config_arg(py: Python<'_>, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Arc<Config>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else { return Ok(Arc::new(Config::default())) };
    if let Ok(c) = obj.cast::<PyConfig>() {
        return Ok(Arc::clone(&c.get().inner));
    }
    let Ok(dict) = obj.cast::<PyDict>() else {
        let type_name = obj.get_type().name()?.to_string();
        return Err(invalid_config("config", format!("expected a bai.scheduler.Config or a dict, got {type_name}")));
    };
    check_keys(dict, &CONFIG_KEYS, "")?;
    let config = py.get_type::<PyConfig>().call((), Some(dict))?;
    Ok(Arc::clone(&config.cast::<PyConfig>()?.get().inner))
}

#[pymethods]
impl PyConfig {
    #[new]
    #[pyo3(signature = (*, queue = "fifo", selector = "dispersed", queue_options = None, pending_timeout = None,
        allowed_session_types = None, groups = None, resource_priority = None, all_bands = false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        queue: &str,
        selector: &str,
        queue_options: Option<&Bound<'_, PyAny>>,
        pending_timeout: Option<&Bound<'_, PyAny>>,
        allowed_session_types: Option<&Bound<'_, PyAny>>,
        groups: Option<&Bound<'_, PyDict>>,
        resource_priority: Option<Vec<String>>,
        all_bands: bool,
    ) -> PyResult<Self> {
        let mut config = Config {
            default: group_config("", queue, selector, queue_options, pending_timeout, allowed_session_types)?,
            ..Config::default()
        };
        if let Some(groups) = groups {
            for (name, options) in groups.iter() {
                let name: String =
                    name.extract().map_err(|_| invalid_config("groups", "keys must be strings".into()))?;
                let group = group_from_dict(&name, &options)?;
                config.groups.insert(name, group);
            }
        }
        if let Some(priority) = resource_priority {
            config.resource_priority = priority;
        }
        config.bands = if all_bands { BandMode::AllBands } else { BandMode::HighestOnly };
        Ok(Self { inner: Arc::new(config) })
    }

    /// The default queue policy's name.
    #[getter]
    fn queue(&self) -> String {
        self.inner.default.queue.name().to_string()
    }

    /// The default agent selector's name.
    #[getter]
    fn selector(&self) -> String {
        self.inner.default.selector.name().to_string()
    }

    #[getter]
    fn all_bands(&self) -> bool {
        self.inner.bands == BandMode::AllBands
    }

    #[getter]
    fn resource_priority(&self) -> Vec<String> {
        self.inner.resource_priority.clone()
    }

    /// The names of the scaling groups with their own options.
    #[getter]
    fn groups(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.groups.keys().cloned().collect();
        names.sort();
        names
    }

    fn __repr__(&self) -> String {
        format!(
            "Config(queue={}, selector={}, groups={}, all_bands={})",
            q(&self.queue()),
            q(&self.selector()),
            q_list(&self.groups()),
            if self.all_bands() { "True" } else { "False" }
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

fn slot_obj(py: Python<'_>, slot: &bai_core::ResourceSlot) -> PyResult<Py<PyResourceSlot>> {
    Py::new(py, PyResourceSlot(slot.clone()))
}

/// One kernel put on an agent.
#[pyclass(name = "KernelPlacement", module = "bai.scheduler", frozen, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyKernelPlacement(KernelPlacement);

#[pymethods]
impl PyKernelPlacement {
    #[getter]
    fn kernel_id(&self) -> String {
        self.0.kernel_id.to_string()
    }
    #[getter]
    fn agent_id(&self) -> String {
        self.0.agent_id.to_string()
    }
    #[getter]
    fn slots(&self, py: Python<'_>) -> PyResult<Py<PyResourceSlot>> {
        slot_obj(py, &self.0.slots)
    }
    fn __repr__(&self) -> String {
        format!(
            "KernelPlacement(kernel_id='{}', agent_id='{}', slots={})",
            self.0.kernel_id, self.0.agent_id, self.0.slots
        )
    }
}

/// A session placed: every kernel has an agent.
#[pyclass(name = "Placement", module = "bai.scheduler", frozen, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyPlacement(Placement);

#[pymethods]
impl PyPlacement {
    #[getter]
    fn session_id(&self) -> String {
        self.0.session_id.to_string()
    }
    #[getter]
    fn scaling_group(&self) -> String {
        self.0.scaling_group.clone()
    }
    #[getter]
    fn kernels(&self) -> Vec<PyKernelPlacement> {
        self.0.kernels.iter().cloned().map(PyKernelPlacement).collect()
    }
    /// The agents of its kernels, in kernel order, each once.
    #[getter]
    fn agent_ids(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for k in &self.0.kernels {
            if !out.iter().any(|a| a == k.agent_id.as_str()) {
                out.push(k.agent_id.to_string());
            }
        }
        out
    }
    fn explain(&self) -> String {
        self.0.explain()
    }
    fn __repr__(&self) -> String {
        format!("Placement(session_id='{}', agent_ids={})", self.0.session_id, q_list(&self.agent_ids()))
    }
}

/// A predicate that failed, by the original's name.
#[pyclass(name = "PredicateFailure", module = "bai.scheduler", frozen, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyPredicateFailure(PredicateFailure);

#[pymethods]
impl PyPredicateFailure {
    #[getter]
    fn name(&self) -> String {
        self.0.name.clone()
    }
    #[getter]
    fn msg(&self) -> String {
        self.0.msg.clone()
    }
    #[getter]
    fn excess(&self, py: Python<'_>) -> PyResult<Option<Py<PyResourceSlot>>> {
        self.0.excess.as_ref().map(|s| slot_obj(py, s)).transpose()
    }
    fn __repr__(&self) -> String {
        format!("PredicateFailure(name={}, msg={})", q(&self.0.name), q(&self.0.msg))
    }
}

/// A slot that no considered agent has enough of.
#[pyclass(name = "SlotShortage", module = "bai.scheduler", frozen, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct PySlotShortage(SlotShortage);

#[pymethods]
impl PySlotShortage {
    #[getter]
    fn slot(&self) -> String {
        self.0.slot.clone()
    }
    #[getter]
    fn requested(&self) -> Decimal {
        self.0.requested
    }
    #[getter]
    fn largest_free(&self) -> Decimal {
        self.0.largest_free
    }
    fn __repr__(&self) -> String {
        format!(
            "SlotShortage(slot={}, requested={}, largest_free={})",
            q(&self.0.slot),
            self.0.requested.normalize(),
            self.0.largest_free.normalize()
        )
    }
}

/// Why a session was not placed, with the numbers behind it.
#[pyclass(name = "BlockReason", module = "bai.scheduler", frozen, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyBlockReason(BlockReason);

impl PyBlockReason {
    fn json(&self) -> PyResult<serde_json::Map<String, Value>> {
        match serde_json::to_value(&self.0) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Ok(serde_json::Map::new()),
            Err(e) => Err(invalid_value(e.to_string())),
        }
    }
}

#[pymethods]
impl PyBlockReason {
    /// `lower_priority`, `session_type_not_allowed`, `invalid_request`, `predicates_failed`,
    /// `no_agents`, `designated_agent_unavailable`, `no_resources` or `selector_declined`.
    #[getter]
    fn kind(&self) -> PyResult<String> {
        Ok(self.json()?.get("kind").and_then(Value::as_str).unwrap_or_default().to_string())
    }
    /// One sentence for a user.
    #[getter]
    fn message(&self) -> String {
        explain_reason(&self.0)
    }
    /// The original's `status_info`, e.g. `no-available-instances`.
    #[getter]
    fn status_info(&self) -> &'static str {
        self.0.status_info()
    }
    /// Whether this pass counts as a failed try (`retries += 1`).
    #[getter]
    fn counts_as_retry(&self) -> bool {
        self.0.counts_as_retry()
    }
    /// Every field of the reason as plain data (without `kind`).
    #[getter]
    fn details<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut map = self.json()?;
        map.remove("kind");
        convert::to_py(py, &Value::Object(map))
    }
    /// For `predicates_failed`: the failed predicates; empty otherwise.
    #[getter]
    fn failed_predicates(&self) -> Vec<PyPredicateFailure> {
        match &self.0 {
            BlockReason::PredicatesFailed { failed, .. } => failed.iter().cloned().map(PyPredicateFailure).collect(),
            _ => Vec::new(),
        }
    }
    /// For `predicates_failed`: the names of the predicates that passed; empty otherwise.
    #[getter]
    fn passed_predicates(&self) -> Vec<String> {
        match &self.0 {
            BlockReason::PredicatesFailed { passed, .. } => passed.clone(),
            _ => Vec::new(),
        }
    }
    /// For `no_resources`: slots no considered agent has enough of; empty otherwise.
    #[getter]
    fn shortages(&self) -> Vec<PySlotShortage> {
        match &self.0 {
            BlockReason::NoResources { shortages, .. } => shortages.iter().cloned().map(PySlotShortage).collect(),
            _ => Vec::new(),
        }
    }
    /// For `no_resources`: what was requested from one agent.
    #[getter]
    fn requested(&self, py: Python<'_>) -> PyResult<Option<Py<PyResourceSlot>>> {
        match &self.0 {
            BlockReason::NoResources { requested, .. } => slot_obj(py, requested).map(Some),
            _ => Ok(None),
        }
    }
    /// For `no_resources`: how many agents were considered.
    #[getter]
    fn agents_considered(&self) -> Option<usize> {
        match &self.0 {
            BlockReason::NoResources { agents_considered, .. } => Some(*agents_considered),
            _ => None,
        }
    }
    fn __repr__(&self) -> PyResult<String> {
        Ok(format!("BlockReason(kind={}, message={})", q(&self.kind()?), q(&self.message())))
    }
}

/// A session left waiting, and why.
#[pyclass(name = "Blocked", module = "bai.scheduler", frozen, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyBlocked(Blocked);

#[pymethods]
impl PyBlocked {
    #[getter]
    fn session_id(&self) -> String {
        self.0.session_id.to_string()
    }
    #[getter]
    fn scaling_group(&self) -> String {
        self.0.scaling_group.clone()
    }
    #[getter]
    fn reason(&self) -> PyBlockReason {
        PyBlockReason(self.0.reason.clone())
    }
    fn explain(&self) -> String {
        explain_reason(&self.0.reason)
    }
    fn __repr__(&self) -> PyResult<String> {
        Ok(format!("Blocked(session_id='{}', reason={})", self.0.session_id, self.reason().__repr__()?))
    }
}

/// A session to cancel.
#[pyclass(name = "Cancellation", module = "bai.scheduler", frozen, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyCancellation(Cancellation);

#[pymethods]
impl PyCancellation {
    #[getter]
    fn session_id(&self) -> String {
        self.0.session_id.to_string()
    }
    #[getter]
    fn reason(&self) -> String {
        self.0.reason.clone()
    }
    fn explain(&self) -> String {
        self.0.explain()
    }
    fn __repr__(&self) -> String {
        format!("Cancellation(session_id='{}', reason={})", self.0.session_id, q(&self.0.reason))
    }
}

#[derive(Debug, Clone, Copy)]
enum Loc {
    Placed(usize),
    Blocked(usize),
    Cancelled(usize),
}

/// The result of one scheduling pass.
#[pyclass(name = "Plan", module = "bai.scheduler", frozen)]
pub struct PyPlan {
    inner: Arc<Plan>,
    index: OnceLock<HashMap<SessionId, Loc>>,
}

impl PyPlan {
    fn new(plan: Plan) -> Self {
        Self { inner: Arc::new(plan), index: OnceLock::new() }
    }

    fn locate(&self, session: &Bound<'_, PyAny>) -> PyResult<Option<Loc>> {
        let id = session_id(session)?;
        let index = self.index.get_or_init(|| {
            let plan = &self.inner;
            let mut map = HashMap::with_capacity(plan.placements.len() + plan.blocked.len() + plan.cancellations.len());
            map.extend(plan.placements.iter().enumerate().map(|(i, p)| (p.session_id, Loc::Placed(i))));
            map.extend(plan.blocked.iter().enumerate().map(|(i, b)| (b.session_id, Loc::Blocked(i))));
            map.extend(plan.cancellations.iter().enumerate().map(|(i, c)| (c.session_id, Loc::Cancelled(i))));
            map
        });
        Ok(index.get(&id).copied())
    }
}

#[pymethods]
impl PyPlan {
    /// Sessions placed, in the order they were placed.
    #[getter]
    fn placements(&self) -> Vec<PyPlacement> {
        self.inner.placements.iter().cloned().map(PyPlacement).collect()
    }
    /// Every pending session neither placed nor cancelled, with its reason.
    #[getter]
    fn blocked(&self) -> Vec<PyBlocked> {
        self.inner.blocked.iter().cloned().map(PyBlocked).collect()
    }
    /// Sessions to cancel.
    #[getter]
    fn cancellations(&self) -> Vec<PyCancellation> {
        self.inner.cancellations.iter().cloned().map(PyCancellation).collect()
    }
    /// Round-robin positions to keep for the next plan (`scaling_group`, `architecture`, `next_index`).
    #[getter]
    fn roundrobin_next<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value = serde_json::to_value(&self.inner.roundrobin_next).map_err(|e| invalid_value(e.to_string()))?;
        convert::to_py(py, &value)
    }
    #[getter]
    fn placement_count(&self) -> usize {
        self.inner.placements.len()
    }
    #[getter]
    fn blocked_count(&self) -> usize {
        self.inner.blocked.len()
    }
    #[getter]
    fn cancellation_count(&self) -> usize {
        self.inner.cancellations.len()
    }
    /// `{session id: [agent id of each kernel, in kernel order]}` for every placed session.
    #[getter]
    fn assignments<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for p in &self.inner.placements {
            let agents: Vec<&str> = p.kernels.iter().map(|k| k.agent_id.as_str()).collect();
            dict.set_item(p.session_id.to_string(), agents)?;
        }
        Ok(dict)
    }
    /// The placement of a session, if it was placed.
    fn placement(&self, session_id: &Bound<'_, PyAny>) -> PyResult<Option<PyPlacement>> {
        Ok(match self.locate(session_id)? {
            Some(Loc::Placed(i)) => Some(PyPlacement(self.inner.placements[i].clone())),
            _ => None,
        })
    }
    /// Why a session waits, if it does.
    fn reason(&self, session_id: &Bound<'_, PyAny>) -> PyResult<Option<PyBlockReason>> {
        Ok(match self.locate(session_id)? {
            Some(Loc::Blocked(i)) => Some(PyBlockReason(self.inner.blocked[i].reason.clone())),
            _ => None,
        })
    }
    /// One sentence about a session: where it goes, why it waits or why it is cancelled.
    fn explain(&self, session_id: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
        Ok(match self.locate(session_id)? {
            Some(Loc::Placed(i)) => Some(self.inner.placements[i].explain()),
            Some(Loc::Blocked(i)) => Some(explain_reason(&self.inner.blocked[i].reason)),
            Some(Loc::Cancelled(i)) => Some(self.inner.cancellations[i].explain()),
            None => None,
        })
    }
    /// `{session id: sentence}` for every session of the plan.
    fn explanations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (id, text) in self.inner.explanations() {
            dict.set_item(id.to_string(), text)?;
        }
        Ok(dict)
    }
    /// The JSON form (the one the manager stores).
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&*self.inner).map_err(|e| invalid_value(e.to_string()))
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value = serde_json::to_value(&*self.inner).map_err(|e| invalid_value(e.to_string()))?;
        convert::to_py(py, &value)
    }
    fn __repr__(&self) -> String {
        format!(
            "Plan(placements={}, blocked={}, cancellations={})",
            self.inner.placements.len(),
            self.inner.blocked.len(),
            self.inner.cancellations.len()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// plan, explain
// ---------------------------------------------------------------------------------------------

/// Plans one scheduling pass; the GIL is released while the scheduler runs.
#[pyfunction]
#[pyo3(signature = (snapshot, config = None, now = None))]
fn plan(
    py: Python<'_>,
    snapshot: &Bound<'_, PyAny>,
    config: Option<&Bound<'_, PyAny>>,
    now: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyPlan> {
    let snapshot = snapshot_arg(snapshot)?;
    let config = config_arg(py, config)?;
    let now = time_arg(now, "now")?;
    let result = py.detach(move || bai_scheduler::plan(&snapshot, &config, now));
    Ok(PyPlan::new(result))
}

/// Plans and returns `{session id: sentence}` for every pending session.
#[pyfunction]
#[pyo3(signature = (snapshot, config = None, now = None))]
fn explain<'py>(
    py: Python<'py>,
    snapshot: &Bound<'py, PyAny>,
    config: Option<&Bound<'py, PyAny>>,
    now: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    plan(py, snapshot, config, now)?.explanations(py)
}

// ---------------------------------------------------------------------------------------------
// simulate
// ---------------------------------------------------------------------------------------------

/// What one access key experienced in a simulation.
#[pyclass(name = "KeyReport", module = "bai.scheduler", frozen, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct PyKeyReport(KeyReport);

#[pymethods]
impl PyKeyReport {
    #[getter]
    fn submitted(&self) -> usize {
        self.0.submitted
    }
    #[getter]
    fn started(&self) -> usize {
        self.0.started
    }
    #[getter]
    fn cancelled(&self) -> usize {
        self.0.cancelled
    }
    #[getter]
    fn mean_wait_secs(&self) -> f64 {
        self.0.mean_wait_secs
    }
    #[getter]
    fn max_wait_secs(&self) -> f64 {
        self.0.max_wait_secs
    }
    #[getter]
    fn usage_share(&self) -> f64 {
        self.0.usage_share
    }
    fn __repr__(&self) -> String {
        format!(
            "KeyReport(submitted={}, started={}, cancelled={}, mean_wait_secs={}, max_wait_secs={}, usage_share={})",
            self.0.submitted,
            self.0.started,
            self.0.cancelled,
            self.0.mean_wait_secs,
            self.0.max_wait_secs,
            self.0.usage_share
        )
    }
}

/// The outcome of a simulation.
#[pyclass(name = "SimulationReport", module = "bai.scheduler", frozen, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct PySimulationReport(SimulationReport);

#[pymethods]
impl PySimulationReport {
    #[getter]
    fn passes(&self) -> usize {
        self.0.passes
    }
    #[getter]
    fn makespan_secs(&self) -> f64 {
        self.0.makespan_secs
    }
    /// Per slot, the time-averaged fraction of the cluster's capacity in use (0–1).
    #[getter]
    fn utilisation(&self) -> HashMap<String, f64> {
        self.0.utilisation.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
    /// Per access key.
    #[getter]
    fn keys(&self) -> HashMap<String, PyKeyReport> {
        self.0.keys.iter().map(|(k, v)| (k.to_string(), PyKeyReport(v.clone()))).collect()
    }
    /// Jain's fairness index over the keys' usage shares.
    #[getter]
    fn fairness(&self) -> f64 {
        self.0.fairness
    }
    #[getter]
    fn still_waiting(&self) -> usize {
        self.0.still_waiting
    }
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.0).map_err(|e| invalid_value(e.to_string()))
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value = serde_json::to_value(&self.0).map_err(|e| invalid_value(e.to_string()))?;
        convert::to_py(py, &value)
    }
    fn __repr__(&self) -> String {
        format!(
            "SimulationReport(passes={}, makespan_secs={}, fairness={:.3}, still_waiting={}, keys={})",
            self.0.passes,
            self.0.makespan_secs,
            self.0.fairness,
            self.0.still_waiting,
            self.0.keys.len()
        )
    }
}

/// A field of a dict, a dataclass or any object with attributes; `None` when absent or `None`.
fn field<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    let value = match obj.cast::<PyDict>() {
        Ok(dict) => dict.get_item(name)?,
        Err(_) if obj.hasattr(name)? => Some(obj.getattr(name)?),
        Err(_) => None,
    };
    Ok(value.filter(|v| !v.is_none()))
}

fn arrival(obj: &Bound<'_, PyAny>, index: usize) -> PyResult<Arrival> {
    let path = Path(vec![Seg::Key("arrivals".into()), Seg::Index(index)]);
    let at_path = format!("{path}.at");
    let required = |name: &str| -> PyResult<Bound<'_, PyAny>> {
        field(obj, name)?.ok_or_else(|| errors::snapshot(&format!("{path}.{name}"), "missing field"))
    };
    let at = time_arg(Some(&required("at")?), &at_path)?;
    let duration = duration_arg(&required("duration")?, &format!("{path}.duration"))?;
    let mut session_path = path.clone();
    session_path.0.push(Seg::Key("session".into()));
    let mut session = convert::to_json(&required("session")?, &mut session_path.clone())?;
    if let Value::Object(map) = &mut session {
        // the simulator sets created_at to the arrival time; let the caller leave it out
        map.entry("created_at").or_insert_with(|| Value::String(at.to_rfc3339()));
    }
    let session: PendingSession = convert::from_json(session, &session_path)?;
    Ok(Arrival { at, duration, session })
}

/// Steps the scheduler over simulated time; the GIL is released while it runs.
#[pyfunction]
#[pyo3(signature = (snapshot, arrivals = None, config = None, *, interval = None, horizon = None))]
fn simulate(
    py: Python<'_>,
    snapshot: &Bound<'_, PyAny>,
    arrivals: Option<&Bound<'_, PyAny>>,
    config: Option<&Bound<'_, PyAny>>,
    interval: Option<&Bound<'_, PyAny>>,
    horizon: Option<&Bound<'_, PyAny>>,
) -> PyResult<PySimulationReport> {
    let snapshot = snapshot_arg(snapshot)?;
    let config = config_arg(py, config)?;
    let mut options = SimulationOptions::default();
    if let Some(i) = interval.filter(|o| !o.is_none()) {
        options.interval = duration_arg(i, "interval")?;
        if options.interval <= TimeDelta::zero() {
            return Err(invalid_value("interval: must be more than zero".into()));
        }
    }
    if let Some(h) = horizon.filter(|o| !o.is_none()) {
        options.horizon = duration_arg(h, "horizon")?;
    }
    let mut list = Vec::new();
    if let Some(arrivals) = arrivals.filter(|o| !o.is_none()) {
        for (i, item) in arrivals.try_iter()?.enumerate() {
            list.push(arrival(&item?, i)?);
        }
    }
    let report = py.detach(move || bai_scheduler::simulate(&snapshot, &config, &list, &options));
    Ok(PySimulationReport(report))
}
