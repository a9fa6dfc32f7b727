//! The scheduler's error type: only configuration can be wrong; blocked sessions are data.

/// A configuration the scheduler cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration field is invalid.
    #[error("invalid scheduler configuration {field}: {reason}")]
    InvalidConfig {
        /// The field, e.g. `num_retries_to_skip`.
        field: String,
        /// What was wrong.
        reason: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
