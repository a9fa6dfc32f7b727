//! The one error type of bai-agent-runtime.

/// What can go wrong on a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The container engine refused or failed a call.
    #[error("container engine error during {operation}: {message}")]
    Engine {
        /// What was being done, e.g. `create container`.
        operation: &'static str,
        /// The engine's message.
        message: String,
    },
    /// The engine cannot be reached at all.
    #[error("cannot reach the container engine at {address}: {message}")]
    Unreachable {
        /// Where it was looked for.
        address: String,
        /// Why it failed.
        message: String,
    },
    /// No such container, exec or image.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// `container`, `image`, `exec`, `kernel`.
        kind: &'static str,
        /// The id or name.
        id: String,
    },
    /// The node does not have the resources asked for.
    #[error("insufficient {resource}: requested {requested}, available {available}")]
    Insufficient {
        /// The resource, e.g. `cpu` or `host ports`.
        resource: String,
        /// What was asked for.
        requested: String,
        /// What is left.
        available: String,
    },
    /// A request or configuration value is invalid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, e.g. `mounts[0].source`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A filesystem or process operation failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The path involved.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel runner inside a container misbehaved (protocol error, early exit).
    #[error("kernel runner: {0}")]
    Runner(String),
    /// An operation took longer than allowed.
    #[error("{operation} timed out after {seconds} s")]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The limit.
        seconds: u64,
    },
    /// A core type could not be parsed or computed.
    #[error(transparent)]
    Core(#[from] bai_core::Error),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(operation: &'static str, path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io { operation, path: path.as_ref().display().to_string(), source }
    }

    /// An [`Error::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
