//! Rust errors as Python exceptions.
//!
//! The exception classes live in the pure-Python module `bai.errors` (so they can inherit from
//! both `bai.BaiError` and a built-in such as `ValueError`, and pickle like any Python class).
//! The native code looks them up by name when it raises, and sets the structured fields of the
//! Rust error (`input`, `reason`, `slot`, `path`, …) as attributes of the exception.

use pyo3::prelude::*;
use pyo3::types::PyType;

/// The exception classes of `bai.errors` the native module raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `InvalidSlotError(BaiError, ValueError)`: a slot name or amount that cannot be used.
    InvalidSlot,
    /// `InvalidSizeError(BaiError, ValueError)`: a byte size that does not parse.
    InvalidSize,
    /// `ArithmeticOverflowError(BaiError, OverflowError)`: arithmetic out of range.
    Overflow,
    /// `InvalidSnapshotError(BaiError, ValueError)`: scheduler input that does not convert.
    InvalidSnapshot,
    /// `InvalidConfigError(BaiError, ValueError)`: a scheduler option that cannot be used.
    InvalidConfig,
    /// `InvalidValueError(BaiError, ValueError)`: any other bad value (ids, names, times).
    InvalidValue,
}

impl Kind {
    fn class_name(self) -> &'static str {
        match self {
            Self::InvalidSlot => "InvalidSlotError",
            Self::InvalidSize => "InvalidSizeError",
            Self::Overflow => "ArithmeticOverflowError",
            Self::InvalidSnapshot => "InvalidSnapshotError",
            Self::InvalidConfig => "InvalidConfigError",
            Self::InvalidValue => "InvalidValueError",
        }
    }
}

/// A `bai.errors.<kind>` exception with `message`, and `attrs` set on it as attributes.
pub(crate) fn raise(kind: Kind, message: impl Into<String>, attrs: &[(&str, &str)]) -> PyErr {
    let message = message.into();
    Python::attach(|py| build(py, kind, &message, attrs).unwrap_or_else(|lookup_failure| lookup_failure))
}

fn build(py: Python<'_>, kind: Kind, message: &str, attrs: &[(&str, &str)]) -> PyResult<PyErr> {
    let class = py.import("bai.errors")?.getattr(kind.class_name())?.cast_into::<PyType>()?;
    let exception = class.call1((message,))?;
    for (name, value) in attrs {
        exception.setattr(*name, *value)?;
    }
    Ok(PyErr::from_value(exception))
}

/// A bai-core error as the matching `bai.errors` exception.
pub(crate) fn core(err: bai_core::Error) -> PyErr {
    use bai_core::Error as E;
    let message = err.to_string();
    match &err {
        E::InvalidSize { input, reason } => raise(Kind::InvalidSize, message, &[("input", input), ("reason", reason)]),
        E::InvalidSlotValue { slot, reason } => {
            raise(Kind::InvalidSlot, message, &[("slot", slot), ("reason", reason)])
        }
        E::UnknownSlot { slot, hint } => {
            let reason = match &hint.0 {
                Some(h) => format!("unknown slot; {h}"),
                None => "unknown slot".to_string(),
            };
            raise(Kind::InvalidSlot, message, &[("slot", slot), ("reason", &reason)])
        }
        E::InvalidSlotName { name, reason } => raise(Kind::InvalidSlot, message, &[("slot", name), ("reason", reason)]),
        E::Overflow { slot } => raise(Kind::Overflow, message, &[("slot", slot)]),
        _ => raise(Kind::InvalidValue, message, &[]),
    }
}

/// A bai-scheduler error (a configuration the scheduler cannot use).
pub(crate) fn scheduler(err: bai_scheduler::Error) -> PyErr {
    let message = err.to_string();
    match &err {
        bai_scheduler::Error::InvalidConfig { field, reason } => {
            raise(Kind::InvalidConfig, message, &[("field", field), ("reason", reason)])
        }
        _ => raise(Kind::InvalidConfig, message, &[]),
    }
}

/// Bad scheduler input at `path` (e.g. `pending[3].kernels[0].id`).
pub(crate) fn snapshot(path: &str, reason: impl Into<String>) -> PyErr {
    let reason = reason.into();
    let message = if path.is_empty() { reason.clone() } else { format!("{path}: {reason}") };
    raise(Kind::InvalidSnapshot, message, &[("path", path), ("reason", &reason)])
}

/// A `bai.errors.<class_name>` exception with `message` and arbitrary Python `attrs`.
fn raise_any(
    class_name: &str,
    message: &str,
    attrs: impl FnOnce(Python<'_>) -> PyResult<Vec<(&'static str, Py<PyAny>)>>,
) -> PyErr {
    Python::attach(|py| {
        let built = (|| -> PyResult<PyErr> {
            let class = py.import("bai.errors")?.getattr(class_name)?.cast_into::<PyType>()?;
            let exception = class.call1((message,))?;
            for (name, value) in attrs(py)? {
                exception.setattr(name, value)?;
            }
            Ok(PyErr::from_value(exception))
        })();
        built.unwrap_or_else(|lookup_failure| lookup_failure)
    })
}

/// A bai-client error as the matching `bai.errors` exception (`ApiError`, `NotFoundError`,
/// `AuthError`, `GraphQLError`, `UnreachableError`, `ConfigError`, `InvalidInputError`,
/// `RejectedError`, `ProtocolError`, `LocalFileError`), its message the Rust error's Display,
/// with the error's fields and `hint` as attributes.
pub(crate) fn client(err: bai_client::Error) -> PyErr {
    use bai_client::Error as E;
    let message = err.to_string();
    let hint = err.hint();
    let text = |py: Python<'_>, s: &str| -> Py<PyAny> { pyo3::types::PyString::new(py, s).into_any().unbind() };
    let opt = |py: Python<'_>, s: Option<&str>| -> Py<PyAny> {
        s.map_or_else(|| py.None(), |s| pyo3::types::PyString::new(py, s).into_any().unbind())
    };
    let class = match &err {
        E::Api { status: 404, .. } => "NotFoundError",
        E::Api { status: 401, .. } => "AuthError",
        E::Api { .. } => "ApiError",
        E::GraphQl { .. } => "GraphQLError",
        E::Unreachable { .. } => "UnreachableError",
        E::Config { .. } => "ConfigError",
        E::InvalidInput { .. } => "InvalidInputError",
        E::Rejected { .. } => "RejectedError",
        E::Protocol { .. } => "ProtocolError",
        E::Io { .. } => "LocalFileError",
        _ => "ClientError",
    };
    raise_any(class, &message, |py| {
        let mut attrs = vec![("hint", opt(py, hint.as_deref()))];
        match &err {
            E::Api { status, method, path, problem } => {
                attrs.push(("status", status.into_pyobject(py)?.into_any().unbind()));
                attrs.push(("method", text(py, method)));
                attrs.push(("path", text(py, path)));
                attrs.push(("problem", crate::convert::to_py(py, &problem.raw)?.unbind()));
                attrs.push(("problem_type", text(py, &problem.type_)));
                attrs.push(("title", text(py, &problem.title)));
            }
            E::GraphQl { errors } => {
                let list = pyo3::types::PyList::empty(py);
                for e in errors {
                    let d = pyo3::types::PyDict::new(py);
                    d.set_item("message", &e.message)?;
                    d.set_item("path", &e.path)?;
                    list.append(d)?;
                }
                attrs.push(("errors", list.into_any().unbind()));
            }
            E::Unreachable { url, reason } => {
                attrs.push(("url", text(py, url)));
                attrs.push(("reason", text(py, reason)));
            }
            E::Config { field, reason } | E::InvalidInput { field, reason } => {
                attrs.push(("field", text(py, field)));
                attrs.push(("reason", text(py, reason)));
            }
            E::Rejected { operation, msg } => {
                attrs.push(("operation", text(py, operation)));
                attrs.push(("reason", text(py, msg)));
            }
            E::Protocol { what, reason } => {
                attrs.push(("what", text(py, what)));
                attrs.push(("reason", text(py, reason)));
            }
            // not OSError's errno/strerror/filename: they would replace the message in str()
            E::Io { path, source } => {
                attrs.push(("path", text(py, path)));
                attrs.push(("reason", text(py, &source.to_string())));
            }
            _ => {}
        }
        Ok(attrs)
    })
}
