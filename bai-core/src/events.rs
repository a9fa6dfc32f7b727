//! Typed cluster events with the original's names and argument order.
//!
//! An event travels as a name and a positional argument list, e.g.
//! `{"name": "kernel_terminated", "args": ["<kernel id>", "<session id>", "user-requested", 0]}`.
//! [`Event`] gives each one a typed variant; [`Event::name`] and [`Event::args`] produce the wire
//! form and [`Event::from_parts`] reads it back, rejecting unknown names and wrong arguments.
//! Transports (Redis streams, the in-process bus) live in the daemons, not here.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ids::{AgentId, KernelId, SessionId};

fn next_arg<T: DeserializeOwned>(args: &mut std::vec::IntoIter<Value>, event: &str, field: &str) -> Result<T> {
    let value = args.next().ok_or_else(|| Error::InvalidEvent {
        name: event.to_string(),
        reason: format!("missing argument `{field}`"),
    })?;
    serde_json::from_value(value)
        .map_err(|e| Error::InvalidEvent { name: event.to_string(), reason: format!("argument `{field}`: {e}") })
}

macro_rules! events {
    ($( $(#[$doc:meta])* $variant:ident = $wire:literal { $($field:ident : $ty:ty),* $(,)? } ),+ $(,)?) => {
        /// A cluster event. Field order is the original's argument order.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum Event {
            $( $(#[$doc])* $variant { $( #[allow(missing_docs)] $field: $ty ),* } ),+
        }

        impl Event {
            /// Every event name this version knows.
            pub const NAMES: &'static [&'static str] = &[$($wire),+];

            /// The original's event name, e.g. `session_enqueued`.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Event::$variant { .. } => $wire ),+
                }
            }

            /// The positional arguments as a JSON array.
            pub fn args(&self) -> Value {
                match self {
                    $( Event::$variant { $($field),* } => Value::Array(vec![
                        $( serde_json::to_value($field).unwrap_or(Value::Null) ),*
                    ]) ),+
                }
            }

            /// Reads an event from its name and positional arguments (a JSON array; `null` for
            /// an event without arguments). Extra arguments beyond those this version knows are
            /// ignored, as newer peers may append some.
            pub fn from_parts(name: &str, args: Value) -> Result<Self> {
                let args = match args {
                    Value::Array(items) => items,
                    Value::Null => Vec::new(),
                    other => return Err(Error::InvalidEvent {
                        name: name.to_string(),
                        reason: format!("arguments must be an array, got {other}"),
                    }),
                };
                #[allow(unused_mut, unused_variables)]
                let mut it = args.into_iter();
                match name {
                    $( $wire => Ok(Event::$variant { $( $field: next_arg(&mut it, name, stringify!($field))? ),* }), )+
                    _ => Err(Error::InvalidEvent {
                        name: name.to_string(),
                        reason: "unknown event name".into(),
                    }),
                }
            }
        }
    };
}

events! {
    /// Asks the scheduler to run a pass.
    DoSchedule = "do_schedule" {},
    /// Asks the manager to check preconditions (images) of scheduled sessions.
    DoCheckPrecond = "do_check_precond" {},
    /// Asks the manager to start prepared sessions.
    DoStartSession = "do_start_session" {},
    /// Asks the manager to scale model services.
    DoScale = "do_scale" {},
    /// Asks the manager to run idle checks.
    DoIdleCheck = "do_idle_check" {},
    /// Asks the manager to recompute session statuses from kernel statuses.
    DoUpdateSessionStatus = "do_update_session_status" {},
    /// Asks the manager to terminate a session.
    DoTerminateSession = "do_terminate_session" { session_id: SessionId, reason: String },
    /// An agent started (or was revived).
    AgentStarted = "agent_started" { reason: String },
    /// An agent stopped: `agent-lost`, `agent-restart` or another reason.
    AgentTerminated = "agent_terminated" { reason: String },
    /// An agent's periodic heartbeat with its current information.
    AgentHeartbeat = "agent_heartbeat" { agent_info: Value },
    /// An agent reports an error.
    AgentError = "agent_error" { message: String, traceback: Option<String>, user: Option<Value>, context_env: Value, severity: String },
    /// An agent removed images.
    AgentImagesRemove = "agent_images_remove" { image_canonicals: Vec<String> },
    /// Asks the manager to recompute an agent's occupied resources.
    DoAgentResourceCheck = "do_agent_resource_check" { agent_id: AgentId },
    /// An agent started pulling an image.
    ImagePullStarted = "image_pull_started" { image: String, agent_id: AgentId, timestamp: f64 },
    /// An agent finished pulling an image.
    ImagePullFinished = "image_pull_finished" { image: String, agent_id: AgentId, timestamp: f64, msg: Option<String> },
    /// An agent failed to pull an image.
    ImagePullFailed = "image_pull_failed" { image: String, agent_id: AgentId, msg: String },
    /// A kernel is being prepared.
    KernelPreparing = "kernel_preparing" { kernel_id: KernelId, session_id: SessionId, reason: String, creation_info: Value },
    /// A kernel's image is being pulled.
    KernelPulling = "kernel_pulling" { kernel_id: KernelId, session_id: SessionId, reason: String, creation_info: Value },
    /// A kernel's container is being created.
    KernelCreating = "kernel_creating" { kernel_id: KernelId, session_id: SessionId, reason: String, creation_info: Value },
    /// A kernel's container started; `creation_info` carries its ports and resources.
    KernelStarted = "kernel_started" { kernel_id: KernelId, session_id: SessionId, reason: String, creation_info: Value },
    /// A kernel was cancelled before it started.
    KernelCancelled = "kernel_cancelled" { kernel_id: KernelId, session_id: SessionId, reason: String, creation_info: Value },
    /// A kernel is being destroyed.
    KernelTerminating = "kernel_terminating" { kernel_id: KernelId, session_id: SessionId, reason: String, exit_code: i32 },
    /// A kernel is gone; `exit_code` is -1 when unknown.
    KernelTerminated = "kernel_terminated" { kernel_id: KernelId, session_id: SessionId, reason: String, exit_code: i32 },
    /// A session was queued.
    SessionEnqueued = "session_enqueued" { session_id: SessionId, creation_id: String, reason: String },
    /// The scheduler placed a session.
    SessionScheduled = "session_scheduled" { session_id: SessionId, creation_id: String, reason: String },
    /// The manager checks a session's preconditions.
    SessionCheckingPrecondition = "session_checking_precondition" { session_id: SessionId, creation_id: String, reason: String },
    /// A session's kernels are being prepared.
    SessionPreparing = "session_preparing" { session_id: SessionId, creation_id: String, reason: String },
    /// A session was cancelled.
    SessionCancelled = "session_cancelled" { session_id: SessionId, creation_id: String, reason: String },
    /// Every kernel of a session runs.
    SessionStarted = "session_started" { session_id: SessionId, creation_id: String, reason: String },
    /// A session is being terminated.
    SessionTerminating = "session_terminating" { session_id: SessionId, reason: String },
    /// A session is gone.
    SessionTerminated = "session_terminated" { session_id: SessionId, reason: String },
    /// A batch session ended successfully.
    SessionSuccess = "session_success" { session_id: SessionId, reason: String, exit_code: i32 },
    /// A batch session failed.
    SessionFailure = "session_failure" { session_id: SessionId, reason: String, exit_code: i32 },
    /// A batch execution started.
    ExecutionStarted = "execution_started" { session_id: SessionId },
    /// A batch execution finished.
    ExecutionFinished = "execution_finished" { session_id: SessionId },
    /// A batch execution timed out.
    ExecutionTimeout = "execution_timeout" { session_id: SessionId },
    /// A batch execution was cancelled.
    ExecutionCancelled = "execution_cancelled" { session_id: SessionId },
    /// Asks the agent to sync a kernel's logs.
    DoSyncKernelLogs = "do_sync_kernel_logs" { kernel_id: KernelId, container_id: String },
    /// A background task made progress.
    BgtaskUpdated = "bgtask_updated" { task_id: Uuid, current: f64, total: f64, message: Option<String> },
    /// A background task finished.
    BgtaskDone = "bgtask_done" { task_id: Uuid, message: Option<String> },
    /// A background task was cancelled.
    BgtaskCancelled = "bgtask_cancelled" { task_id: Uuid, message: Option<String> },
    /// A background task failed.
    BgtaskFailed = "bgtask_failed" { task_id: Uuid, message: Option<String> },
}

impl Event {
    /// The session this event is about, if any.
    pub fn session_id(&self) -> Option<SessionId> {
        use Event::*;
        match self {
            DoTerminateSession { session_id, .. }
            | KernelPreparing { session_id, .. }
            | KernelPulling { session_id, .. }
            | KernelCreating { session_id, .. }
            | KernelStarted { session_id, .. }
            | KernelCancelled { session_id, .. }
            | KernelTerminating { session_id, .. }
            | KernelTerminated { session_id, .. }
            | SessionEnqueued { session_id, .. }
            | SessionScheduled { session_id, .. }
            | SessionCheckingPrecondition { session_id, .. }
            | SessionPreparing { session_id, .. }
            | SessionCancelled { session_id, .. }
            | SessionStarted { session_id, .. }
            | SessionTerminating { session_id, .. }
            | SessionTerminated { session_id, .. }
            | SessionSuccess { session_id, .. }
            | SessionFailure { session_id, .. }
            | ExecutionStarted { session_id }
            | ExecutionFinished { session_id }
            | ExecutionTimeout { session_id }
            | ExecutionCancelled { session_id } => Some(*session_id),
            _ => None,
        }
    }
}

/// `{"name": ..., "args": [...]}`.
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            name: &'a str,
            args: Value,
        }
        Wire { name: self.name(), args: self.args() }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            name: String,
            #[serde(default)]
            args: Value,
        }
        let wire = Wire::deserialize(deserializer)?;
        Event::from_parts(&wire.name, wire.args).map_err(serde::de::Error::custom)
    }
}

/// Why a kernel was created, destroyed or changed (`KernelLifecycleEventReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum KernelLifecycleReason {
    AgentTermination,
    AlreadyTerminated,
    AnomalyDetected,
    NewContainerStarted,
    ResumingAgentOperation,
    SelfTerminated,
    TerminatedUnknownContainer,
    NotFoundInManager,
    ContainerNotFound,
    FailedToCreate,
    FailedToStart,
    BootstrapTimeout,
    Restarting,
    RestartTimeout,
    ExecTimeout,
    HangTimeout,
    IdleTimeout,
    IdleSessionLifetime,
    IdleUtilization,
    PendingTimeout,
    TaskFailed,
    TaskTimeout,
    TaskCancelled,
    TaskFinished,
    ForceTerminated,
    UserRequested,
    KilledByEvent,
    ServiceScaledDown,
    Unknown,
}

impl KernelLifecycleReason {
    /// Every reason.
    pub const ALL: &'static [Self] = &[
        Self::AgentTermination,
        Self::AlreadyTerminated,
        Self::AnomalyDetected,
        Self::NewContainerStarted,
        Self::ResumingAgentOperation,
        Self::SelfTerminated,
        Self::TerminatedUnknownContainer,
        Self::NotFoundInManager,
        Self::ContainerNotFound,
        Self::FailedToCreate,
        Self::FailedToStart,
        Self::BootstrapTimeout,
        Self::Restarting,
        Self::RestartTimeout,
        Self::ExecTimeout,
        Self::HangTimeout,
        Self::IdleTimeout,
        Self::IdleSessionLifetime,
        Self::IdleUtilization,
        Self::PendingTimeout,
        Self::TaskFailed,
        Self::TaskTimeout,
        Self::TaskCancelled,
        Self::TaskFinished,
        Self::ForceTerminated,
        Self::UserRequested,
        Self::KilledByEvent,
        Self::ServiceScaledDown,
        Self::Unknown,
    ];

    /// The wire string, e.g. `user-requested`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AgentTermination => "agent-termination",
            Self::AlreadyTerminated => "already-terminated",
            Self::AnomalyDetected => "anomaly-detected",
            Self::NewContainerStarted => "new-container-started",
            Self::ResumingAgentOperation => "resuming-agent-operation",
            Self::SelfTerminated => "self-terminated",
            Self::TerminatedUnknownContainer => "terminated-unknown-container",
            Self::NotFoundInManager => "not-found-in-manager",
            Self::ContainerNotFound => "container-not-found",
            Self::FailedToCreate => "failed-to-create",
            Self::FailedToStart => "failed-to-start",
            Self::BootstrapTimeout => "bootstrap-timeout",
            Self::Restarting => "restarting",
            Self::RestartTimeout => "restart-timeout",
            Self::ExecTimeout => "exec-timeout",
            Self::HangTimeout => "hang-timeout",
            Self::IdleTimeout => "idle-timeout",
            Self::IdleSessionLifetime => "idle-session-lifetime",
            Self::IdleUtilization => "idle-utilization",
            Self::PendingTimeout => "pending-timeout",
            Self::TaskFailed => "task-failed",
            Self::TaskTimeout => "task-timeout",
            Self::TaskCancelled => "task-cancelled",
            Self::TaskFinished => "task-finished",
            Self::ForceTerminated => "force-terminated",
            Self::UserRequested => "user-requested",
            Self::KilledByEvent => "killed-by-event",
            Self::ServiceScaledDown => "service-scaled-down",
            Self::Unknown => "unknown",
        }
    }

    /// Reads a wire string; an unrecognised one becomes [`KernelLifecycleReason::Unknown`], as
    /// peers may send reasons newer than this version.
    pub fn from_wire(s: &str) -> Self {
        Self::ALL.iter().copied().find(|r| r.as_str() == s).unwrap_or(Self::Unknown)
    }
}

impl std::fmt::Display for KernelLifecycleReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_form_uses_original_names_and_order() {
        let kid: KernelId = "11111111-1111-4111-8111-111111111111".parse().unwrap();
        let sid: SessionId = "22222222-2222-4222-8222-222222222222".parse().unwrap();
        let ev =
            Event::KernelTerminated { kernel_id: kid, session_id: sid, reason: "user-requested".into(), exit_code: 0 };
        let text = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            text,
            json!({"name": "kernel_terminated", "args": [kid.to_string(), sid.to_string(), "user-requested", 0]})
        );
        assert_eq!(serde_json::from_value::<Event>(text).unwrap(), ev);
        assert_eq!(ev.session_id(), Some(sid));

        let none = serde_json::to_value(Event::DoSchedule {}).unwrap();
        assert_eq!(none, json!({"name": "do_schedule", "args": []}));
        assert_eq!(serde_json::from_value::<Event>(json!({"name": "do_schedule"})).unwrap(), Event::DoSchedule {});
    }

    #[test]
    fn every_name_is_unique_and_readable() {
        let mut names = Event::NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Event::NAMES.len());
        for name in Event::NAMES {
            // reading with no arguments either works (argument-less events) or names what is missing
            match Event::from_parts(name, Value::Null) {
                Ok(ev) => assert_eq!(ev.name(), *name),
                Err(e) => assert!(e.to_string().contains("missing argument"), "{e}"),
            }
        }
    }

    #[test]
    fn bad_events_are_errors() {
        let err = Event::from_parts("no_such_event", json!([])).unwrap_err().to_string();
        assert_eq!(err, "invalid event \"no_such_event\": unknown event name");
        let err = Event::from_parts("session_terminated", json!(["not-a-uuid", "x"])).unwrap_err().to_string();
        assert!(err.contains("argument `session_id`"), "{err}");
        let err = Event::from_parts("agent_started", json!({"reason": "x"})).unwrap_err().to_string();
        assert!(err.contains("must be an array"), "{err}");
        // extra trailing arguments from newer peers are tolerated
        let ev = Event::from_parts("agent_started", json!(["revived", "extra"])).unwrap();
        assert_eq!(ev, Event::AgentStarted { reason: "revived".into() });
    }

    #[test]
    fn lifecycle_reasons_round_trip() {
        for r in KernelLifecycleReason::ALL {
            assert_eq!(KernelLifecycleReason::from_wire(r.as_str()), *r);
        }
        assert_eq!(KernelLifecycleReason::from_wire("brand-new-reason"), KernelLifecycleReason::Unknown);
    }
}
