//! The agent's error type and how each kind becomes a gRPC status.

use bai_agent_runtime::Error as RuntimeError;

/// What can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A configuration value is missing or invalid.
    #[error("configuration: {field}: {reason}")]
    Config {
        /// The key or flag.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A request argument is invalid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, e.g. `kernels[0].resource_slots`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The node-side runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A server could not be started.
    #[error("{what}: {reason}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

impl AgentError {
    /// An [`AgentError::Invalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), reason: reason.into() }
    }

    /// The class name reported in metrics (`exception` label).
    pub fn class(&self) -> &'static str {
        match self {
            Self::Config { .. } => "ConfigError",
            Self::Invalid { .. } => "InvalidArgument",
            Self::Serve { .. } => "ServeError",
            Self::Runtime(e) => match e {
                RuntimeError::NotFound { .. } => "NotFound",
                RuntimeError::Insufficient { .. } => "InsufficientResource",
                RuntimeError::Invalid { .. } => "InvalidArgument",
                RuntimeError::Timeout { .. } => "Timeout",
                RuntimeError::Unreachable { .. } => "EngineUnreachable",
                RuntimeError::Runner(_) => "RunnerError",
                RuntimeError::Io { .. } => "IOError",
                RuntimeError::Core(_) => "InvalidArgument",
                _ => "EngineError",
            },
        }
    }
}

impl From<AgentError> for tonic::Status {
    fn from(e: AgentError) -> Self {
        let message = e.to_string();
        match &e {
            AgentError::Invalid { .. } | AgentError::Config { .. } => Self::invalid_argument(message),
            AgentError::Serve { .. } => Self::internal(message),
            AgentError::Runtime(r) => match r {
                RuntimeError::NotFound { .. } => Self::not_found(message),
                RuntimeError::Insufficient { .. } => Self::resource_exhausted(message),
                RuntimeError::Invalid { .. } | RuntimeError::Core(_) => Self::invalid_argument(message),
                RuntimeError::Timeout { .. } => Self::deadline_exceeded(message),
                RuntimeError::Unreachable { .. } => Self::unavailable(message),
                _ => Self::internal(message),
            },
        }
    }
}

/// `Result` with [`AgentError`].
pub type Result<T, E = AgentError> = std::result::Result<T, E>;
