//! The one error type of bai-core.

use std::fmt;

/// Everything that can go wrong in bai-core: parsing user input, arithmetic that would overflow,
/// an illegal status transition, or a malformed signed request.
///
/// Every variant names the offending input and says what was expected, so the message can be
/// shown to a user as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A binary size such as `"4g"` could not be parsed.
    #[error("invalid size {input:?}: {reason}")]
    InvalidSize {
        /// The text as given.
        input: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A resource slot value could not be understood.
    #[error("invalid value for slot {slot:?}: {reason}")]
    InvalidSlotValue {
        /// The slot name, e.g. `mem`.
        slot: String,
        /// What was wrong with the value.
        reason: String,
    },
    /// A request named a slot that is not known to the cluster.
    #[error("unknown resource slot {slot:?}{hint}")]
    UnknownSlot {
        /// The slot name as requested.
        slot: String,
        /// An optional hint (empty or starting with `"; "`).
        hint: Hint,
    },
    /// A resource slot name is malformed.
    #[error("invalid slot name {name:?}: {reason}")]
    InvalidSlotName {
        /// The name as given.
        name: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Decimal arithmetic on slots would overflow.
    #[error("arithmetic overflow on slot {slot:?}")]
    Overflow {
        /// The slot whose value overflowed.
        slot: String,
    },
    /// An identifier (session, kernel, agent, access key) is malformed.
    #[error("invalid {kind} {input:?}: {reason}")]
    InvalidId {
        /// Which kind of id, e.g. `"session id"`.
        kind: &'static str,
        /// The text as given.
        input: String,
        /// What was wrong with it.
        reason: String,
    },
    /// An image reference such as `cr.example.com/stable/python:3.11` is malformed.
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidImageRef {
        /// The text as given.
        input: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A field of a session or kernel specification is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidSpec {
        /// The field path, e.g. `mounts[0].target`.
        field: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A value of an enumeration (status, session type, …) is not one of its names.
    #[error("invalid {kind} {input:?}: expected one of {expected}")]
    UnknownVariant {
        /// Which enumeration.
        kind: &'static str,
        /// The text as given.
        input: String,
        /// The accepted names, comma-separated.
        expected: String,
    },
    /// A status change that the status machine does not allow.
    #[error("illegal {kind} transition from {from} to {to}")]
    IllegalTransition {
        /// `"session status"`, `"kernel status"` or `"agent status"`.
        kind: &'static str,
        /// The current status.
        from: String,
        /// The requested status.
        to: String,
    },
    /// Kernel statuses that cannot be combined into one session status.
    #[error("cannot derive a session status from kernel statuses: {reason}")]
    UnderivableStatus {
        /// Which kernel statuses were given and why they do not combine.
        reason: String,
    },
    /// An event's name or arguments do not match the event catalogue.
    #[error("invalid event {name:?}: {reason}")]
    InvalidEvent {
        /// The event name as given.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// A request's authentication parameters (header, date) are malformed or out of range.
    #[error("invalid authentication parameters: {reason}")]
    InvalidAuthParams {
        /// What was wrong.
        reason: String,
    },
}

/// A short hint appended to an error message; empty when there is nothing to add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hint(pub Option<String>);

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(h) => write!(f, "; {h}"),
            None => Ok(()),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
