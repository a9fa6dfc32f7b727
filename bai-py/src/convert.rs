//! Python values to JSON and back, for the scheduler's serde types.
//!
//! Scheduler input (snapshots, sessions) arrives as plain dicts, dataclasses, or any mix of
//! them; it is turned into a `serde_json::Value` and deserialised into bai-scheduler's own types,
//! so the field names, defaults and validation are the Rust crate's, in one place. Wherever the
//! Rust type holds a [`bai_core::ResourceSlot`] (fields named `*_slots`, usage amounts), a mapping is
//! read like the `bai.ResourceSlot` constructor reads it, so `{"mem": "16g"}` works there too.

use std::fmt::{self, Write as _};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple, PyType};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::errors;
use crate::slots::{slot_from_py, PyBinarySize, PyResourceSlot};

/// One step of a path into the input: a key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A mapping key or attribute name.
    Key(String),
    /// A list index.
    Index(usize),
}

/// Where a value sits in the input, for error messages: `pending[3].kernels[0].requested_slots`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Path(pub(crate) Vec<Seg>);

impl Path {
    /// A path starting at `key`.
    pub(crate) fn key(key: &str) -> Self {
        Self(vec![Seg::Key(key.to_string())])
    }

    /// This path followed by `more` (a serde path such as `kernels[0].id`).
    pub(crate) fn join(&self, more: &str) -> String {
        let head = self.to_string();
        match (head.is_empty(), more.is_empty() || more == ".") {
            (_, true) => head,
            (true, false) => more.to_string(),
            (false, false) if more.starts_with('[') => format!("{head}{more}"),
            (false, false) => format!("{head}.{more}"),
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for seg in &self.0 {
            match seg {
                Seg::Key(k) if out.is_empty() => out.push_str(k),
                Seg::Key(k) => {
                    let _ = write!(out, ".{k}");
                }
                Seg::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
            }
        }
        f.write_str(&out)
    }
}

/// Fields of the snapshot types that hold a `ResourceSlot`.
const SLOT_FIELDS: [&str; 5] = [
    "available_slots",
    "occupied_slots",
    "requested_slots",
    "total_resource_slots",
    "max_pending_session_resource_slots",
];

/// Whether the value at `path` (from the snapshot's root) is a `ResourceSlot` in the Rust types.
fn is_slot_position(path: &[Seg]) -> bool {
    let key = |i: usize| match path.get(i) {
        Some(Seg::Key(k)) => Some(k.as_str()),
        _ => None,
    };
    if let Some(Seg::Key(last)) = path.last() {
        if SLOT_FIELDS.contains(&last.as_str()) {
            return true;
        }
    }
    // usage.{users,groups,domains}.<name> and usage.keypairs.<access key>.occupied
    match path.len() {
        3 => key(0) == Some("usage") && matches!(key(1), Some("users" | "groups" | "domains")),
        4 => key(0) == Some("usage") && key(1) == Some("keypairs") && key(3) == Some("occupied"),
        _ => false,
    }
}

static DECIMAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static DATETIME: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static DATE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static TIMEDELTA: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static UUID: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static ENUM: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static DATACLASS_FIELDS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Whether `obj` is a `decimal.Decimal`.
pub(crate) fn is_decimal(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    obj.is_instance(DECIMAL.import(obj.py(), "decimal", "Decimal")?)
}

/// Whether `obj` is a `datetime.timedelta`.
pub(crate) fn is_timedelta(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    obj.is_instance(TIMEDELTA.import(obj.py(), "datetime", "timedelta")?)
}

/// A `datetime.datetime` as RFC 3339 text; a naive one is taken as UTC. `None` for other types.
pub(crate) fn datetime_text(obj: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let py = obj.py();
    if obj.is_instance(DATETIME.import(py, "datetime", "datetime")?)? {
        let text: String = obj.call_method0("isoformat")?.extract()?;
        let naive = obj.getattr("tzinfo")?.is_none();
        return Ok(Some(if naive { format!("{text}+00:00") } else { text }));
    }
    if obj.is_instance(DATE.import(py, "datetime", "date")?)? {
        let text: String = obj.call_method0("isoformat")?.extract()?;
        return Ok(Some(format!("{text}T00:00:00+00:00")));
    }
    Ok(None)
}

/// Converts scheduler input to JSON; `path` is where `obj` sits (for slot fields and errors).
pub(crate) fn to_json(obj: &Bound<'_, PyAny>, path: &mut Path) -> PyResult<Value> {
    let py = obj.py();
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if is_slot_position(&path.0) {
        let slot = slot_from_py(obj).map_err(|e| errors::snapshot(&path.to_string(), e.value(py).to_string()))?;
        return serde_json::to_value(&slot).map_err(|e| errors::snapshot(&path.to_string(), e.to_string()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.to_string()));
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(n) = obj.extract::<i64>() {
            return Ok(Value::from(n));
        }
        if let Ok(n) = obj.extract::<u64>() {
            return Ok(Value::from(n));
        }
        return Err(errors::snapshot(&path.to_string(), format!("integer {obj} is out of range")));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        return mapping_to_json(dict.iter(), path);
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for (i, item) in obj.try_iter()?.enumerate() {
            path.0.push(Seg::Index(i));
            let value = to_json(&item?, path);
            path.0.pop();
            out.push(value?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let value = f.value();
        return serde_json::Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| errors::snapshot(&path.to_string(), format!("{value} is not a finite number")));
    }
    if let Ok(slot) = obj.cast::<PyResourceSlot>() {
        return serde_json::to_value(&slot.get().0).map_err(|e| errors::snapshot(&path.to_string(), e.to_string()));
    }
    if let Ok(size) = obj.cast::<PyBinarySize>() {
        return Ok(Value::from(size.get().0.bytes()));
    }
    if is_decimal(obj)? {
        return Ok(Value::String(obj.str()?.to_cow()?.to_string()));
    }
    if let Some(text) = datetime_text(obj)? {
        return Ok(Value::String(text));
    }
    if obj.is_instance(UUID.import(py, "uuid", "UUID")?)? {
        return Ok(Value::String(obj.str()?.to_cow()?.to_string()));
    }
    if obj.is_instance(ENUM.import(py, "enum", "Enum")?)? {
        return to_json(&obj.getattr("value")?, path);
    }
    if obj.hasattr("__dataclass_fields__")? && !obj.is_instance_of::<PyType>() {
        let fields = DATACLASS_FIELDS.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py.import("dataclasses")?.getattr("fields")?.unbind())
        })?;
        let mut items = Vec::new();
        for field in fields.bind(py).call1((obj,))?.try_iter()? {
            let name = field?.getattr("name")?;
            let value = obj.getattr(name.cast::<PyString>()?)?;
            items.push((name, value));
        }
        return mapping_to_json(items.into_iter(), path);
    }
    if obj.is_instance_of::<PySet>() || obj.is_instance_of::<PyFrozenSet>() {
        let mut out = Vec::new();
        for (i, item) in obj.try_iter()?.enumerate() {
            path.0.push(Seg::Index(i));
            let value = to_json(&item?, path);
            path.0.pop();
            out.push(value?);
        }
        return Ok(Value::Array(out));
    }
    if obj.hasattr("items")? && obj.hasattr("__getitem__")? {
        let mut items = Vec::new();
        for pair in obj.call_method0("items")?.try_iter()? {
            let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
            items.push((k, v));
        }
        return mapping_to_json(items.into_iter(), path);
    }
    let type_name = obj.get_type().name()?.to_string();
    Err(errors::snapshot(
        &path.to_string(),
        format!("unsupported value of type {type_name}: expected a dict, a dataclass, a list, a str, a number, a Decimal, a datetime, a UUID, an Enum or a bai.ResourceSlot"),
    ))
}

/// A mapping's items as a JSON object; entries whose value is `None` are left out, so the Rust
/// type's default applies to them.
fn mapping_to_json<'py>(
    items: impl Iterator<Item = (Bound<'py, PyAny>, Bound<'py, PyAny>)>,
    path: &mut Path,
) -> PyResult<Value> {
    let mut out = Map::new();
    for (key, value) in items {
        if value.is_none() {
            continue;
        }
        let key = key_text(&key, path)?;
        path.0.push(Seg::Key(key.clone()));
        let converted = to_json(&value, path);
        path.0.pop();
        out.insert(key, converted?);
    }
    Ok(Value::Object(out))
}

fn key_text(key: &Bound<'_, PyAny>, path: &Path) -> PyResult<String> {
    if let Ok(s) = key.cast::<PyString>() {
        return Ok(s.to_cow()?.to_string());
    }
    let py = key.py();
    if key.is_instance(UUID.import(py, "uuid", "UUID")?)? {
        return Ok(key.str()?.to_cow()?.to_string());
    }
    if key.is_instance(ENUM.import(py, "enum", "Enum")?)? {
        return key_text(&key.getattr("value")?, path);
    }
    Err(errors::snapshot(&path.to_string(), format!("keys must be strings, got {}", key.repr()?)))
}

/// Deserialises JSON into a scheduler type; an error names the path (under `prefix`) and the
/// reason, e.g. `pending[2].kernels[0]: missing field \`requested_slots\``.
pub(crate) fn from_json<T: DeserializeOwned>(value: Value, prefix: &Path) -> PyResult<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = prefix.join(&e.path().to_string());
        errors::snapshot(&path, e.into_inner().to_string())
    })
}

/// A JSON value as plain Python objects (dict, list, str, int, float, bool, None).
pub(crate) fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}
