//! Status machines of sessions, kernels and agents, with the original's states and transitions.

use std::fmt;

use crate::error::{Error, Result};

macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        // case-insensitive; `-` is read as `_`
        wire_names!($name, $kind, |s| s.to_ascii_uppercase().replace('-', "_"), [$($variant => $text),+]);
    };
}

status_enum!(
    /// The status of a compute session.
    SessionStatus, "session status" {
        /// Queued, waiting for the scheduler.
        Pending = "PENDING",
        /// Placed on agents by the scheduler.
        Scheduled = "SCHEDULED",
        /// Agents are checking preconditions (images) before creating kernels.
        Preparing = "PREPARING",
        /// Agents are pulling images.
        Pulling = "PULLING",
        /// Every kernel is ready to be created.
        Prepared = "PREPARED",
        /// Kernels are being created.
        Creating = "CREATING",
        /// Every kernel is running.
        Running = "RUNNING",
        /// The session is restarting its kernels.
        Restarting = "RESTARTING",
        /// Running with some kernels unhealthy.
        RunningDegraded = "RUNNING_DEGRADED",
        /// Kernels are being destroyed.
        Terminating = "TERMINATING",
        /// Gone (terminal).
        Terminated = "TERMINATED",
        /// Something failed; the session must be terminated.
        Error = "ERROR",
        /// Cancelled before it ran (terminal).
        Cancelled = "CANCELLED",
    }
);

status_enum!(
    /// The status of one kernel (container) of a session.
    KernelStatus, "kernel status" {
        /// Queued with its session.
        Pending = "PENDING",
        /// Placed on an agent.
        Scheduled = "SCHEDULED",
        /// The agent is checking preconditions.
        Preparing = "PREPARING",
        /// The image is being built.
        Building = "BUILDING",
        /// The image is being pulled.
        Pulling = "PULLING",
        /// Ready to be created.
        Prepared = "PREPARED",
        /// The container is being created.
        Creating = "CREATING",
        /// The container runs.
        Running = "RUNNING",
        /// The container is restarting.
        Restarting = "RESTARTING",
        /// The container's resources are being changed.
        Resizing = "RESIZING",
        /// The container is suspended.
        Suspended = "SUSPENDED",
        /// The container is being destroyed.
        Terminating = "TERMINATING",
        /// Gone (terminal).
        Terminated = "TERMINATED",
        /// Something failed.
        Error = "ERROR",
        /// Cancelled before it ran (terminal).
        Cancelled = "CANCELLED",
    }
);

status_enum!(
    /// The status of an agent (compute node), as the manager sees it.
    AgentStatus, "agent status" {
        /// Sending heartbeats.
        Alive = "ALIVE",
        /// Silent for longer than the heartbeat timeout.
        Lost = "LOST",
        /// Restarting on purpose.
        Restarting = "RESTARTING",
        /// Shut down.
        Terminated = "TERMINATED",
    }
);

/// The original stores agent statuses as integers: ALIVE=0, LOST=1, RESTARTING=2, TERMINATED=3.
impl AgentStatus {
    /// The integer code of the original's database column.
    pub fn code(self) -> i16 {
        match self {
            Self::Alive => 0,
            Self::Lost => 1,
            Self::Restarting => 2,
            Self::Terminated => 3,
        }
    }

    /// The status for an integer code.
    pub fn from_code(code: i16) -> Result<Self> {
        match code {
            0 => Ok(Self::Alive),
            1 => Ok(Self::Lost),
            2 => Ok(Self::Restarting),
            3 => Ok(Self::Terminated),
            _ => Err(Error::UnknownVariant {
                kind: "agent status code",
                input: code.to_string(),
                expected: "0, 1, 2, 3".into(),
            }),
        }
    }

    /// The status an `agent_terminated` event with this reason leads to:
    /// `agent-lost` → LOST, `agent-restart` → RESTARTING, anything else → TERMINATED.
    pub fn after_termination(reason: &str) -> Self {
        match reason {
            "agent-lost" => Self::Lost,
            "agent-restart" => Self::Restarting,
            _ => Self::Terminated,
        }
    }

    /// Whether the agent can receive new kernels.
    pub fn is_schedulable(self) -> bool {
        self == Self::Alive
    }

    /// Agent statuses change by events, not by a transition table: any change is allowed
    /// except to the same status (which is not a transition). A heartbeat revives a LOST or
    /// TERMINATED agent to ALIVE.
    pub fn can_transition_to(self, to: Self) -> bool {
        self != to
    }

    /// Checks and returns the new status.
    pub fn transition(self, to: Self) -> Result<Self> {
        check(self.can_transition_to(to), "agent status", self, to)
    }
}

fn check<T: fmt::Display>(ok: bool, kind: &'static str, from: T, to: T) -> Result<T> {
    if ok {
        Ok(to)
    } else {
        Err(Error::IllegalTransition { kind, from: from.to_string(), to: to.to_string() })
    }
}

impl SessionStatus {
    /// Whether the original's session status map allows `self → to`.
    pub fn can_transition_to(self, to: Self) -> bool {
        use SessionStatus::*;
        match self {
            Pending => matches!(to, Scheduled | Error | Cancelled),
            Scheduled => matches!(to, Preparing | Pulling | Prepared | Error | Cancelled),
            Preparing => matches!(to, Pulling | Prepared | Error | Cancelled),
            Pulling => matches!(to, Prepared | Error | Cancelled),
            Prepared => matches!(to, Preparing | Error | Cancelled),
            Creating => matches!(to, Running | Error | Cancelled),
            Running => matches!(to, Restarting | RunningDegraded | Terminating | Terminated | Error),
            Restarting => matches!(to, Running | RunningDegraded | Terminating | Terminated | Error),
            RunningDegraded => matches!(to, Running | Terminating | Terminated | Error),
            Terminating => matches!(to, Terminated | Error),
            Error => matches!(to, Terminating | Terminated),
            Terminated | Cancelled => false,
        }
    }

    /// `Ok(to)` when the map allows `self → to`, else [`Error::IllegalTransition`].
    ///
    /// ```
    /// use bai_core::SessionStatus::*;
    /// assert_eq!(Pending.transition(Scheduled)?, Scheduled);
    /// assert!(Terminated.transition(Running).is_err());
    /// # Ok::<(), bai_core::Error>(())
    /// ```
    pub fn transition(self, to: Self) -> Result<Self> {
        check(self.can_transition_to(to), "session status", self, to)
    }

    /// TERMINATED and CANCELLED: nothing follows.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Terminated | Self::Cancelled)
    }

    /// Between dispatch and RUNNING: the agents have been sent the creation (PREPARING,
    /// PULLING, PREPARED, CREATING).
    pub const BEING_CREATED: [SessionStatus; 4] = [Self::Preparing, Self::Pulling, Self::Prepared, Self::Creating];

    /// Whether the session is one of [`SessionStatus::BEING_CREATED`].
    pub fn is_being_created(self) -> bool {
        Self::BEING_CREATED.contains(&self)
    }

    /// Dead sessions: CANCELLED, TERMINATED, ERROR.
    pub fn is_dead(self) -> bool {
        matches!(self, Self::Cancelled | Self::Terminated | Self::Error)
    }

    /// Whether the session holds agent resources: every status except PENDING, TERMINATED and
    /// CANCELLED.
    pub fn occupies_agent_resources(self) -> bool {
        !matches!(self, Self::Pending | Self::Terminated | Self::Cancelled)
    }

    /// Whether the session counts against its owner's limits: as
    /// [`SessionStatus::occupies_agent_resources`], minus TERMINATING.
    pub fn occupies_user_resources(self) -> bool {
        self.occupies_agent_resources() && self != Self::Terminating
    }

    /// Statuses in which the manager waits for kernel events: PREPARING, PULLING, CREATING,
    /// TERMINATING.
    pub fn awaits_kernels(self) -> bool {
        matches!(self, Self::Preparing | Self::Pulling | Self::Creating | Self::Terminating)
    }
}

impl KernelStatus {
    /// Whether the original's kernel status map allows `self → to`.
    pub fn can_transition_to(self, to: Self) -> bool {
        use KernelStatus::*;
        match self {
            Pending => matches!(to, Scheduled | Cancelled | Error),
            Scheduled => matches!(to, Preparing | Pulling | Prepared | Cancelled | Error),
            Preparing => matches!(to, Pulling | Prepared | Cancelled | Error),
            Pulling => matches!(to, Prepared | Cancelled | Error),
            Prepared => matches!(to, Creating | Cancelled | Error),
            Creating => matches!(to, Running | Terminating | Terminated | Cancelled | Error),
            Running => matches!(to, Restarting | Resizing | Terminating | Terminated | Error),
            Building | Restarting | Resizing | Suspended => {
                to != self && !matches!(to, Pending | Scheduled | Terminated)
            }
            Terminating => matches!(to, Terminated | Error),
            Error => matches!(to, Terminating | Terminated),
            Terminated | Cancelled => false,
        }
    }

    /// `Ok(to)` when the map allows `self → to`, else [`Error::IllegalTransition`].
    pub fn transition(self, to: Self) -> Result<Self> {
        check(self.can_transition_to(to), "kernel status", self, to)
    }

    /// TERMINATED and CANCELLED: nothing follows.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Terminated | Self::Cancelled)
    }

    /// Whether the kernel holds agent resources: every status except PENDING, TERMINATED and
    /// CANCELLED.
    pub fn occupies_agent_resources(self) -> bool {
        !matches!(self, Self::Pending | Self::Terminated | Self::Cancelled)
    }

    /// The session status a single-kernel session takes from its kernel:
    /// BUILDING → PREPARING, RESIZING → RUNNING, SUSPENDED → ERROR, otherwise the same name.
    pub fn to_session_status(self) -> SessionStatus {
        use KernelStatus as K;
        use SessionStatus as S;
        match self {
            K::Pending => S::Pending,
            K::Scheduled => S::Scheduled,
            K::Preparing | K::Building => S::Preparing,
            K::Pulling => S::Pulling,
            K::Prepared => S::Prepared,
            K::Creating => S::Creating,
            K::Running | K::Resizing => S::Running,
            K::Restarting => S::Restarting,
            K::Suspended | K::Error => S::Error,
            K::Terminating => S::Terminating,
            K::Terminated => S::Terminated,
            K::Cancelled => S::Cancelled,
        }
    }
}

fn creation_rank(status: SessionStatus) -> Option<u8> {
    status.creation_progress()
}

impl SessionStatus {
    /// How far a session (or kernel) has come on its way to RUNNING: SCHEDULED 1, PREPARING 2,
    /// PULLING 3, PREPARED 4, CREATING 5, RUNNING 6; `None` for the other statuses.
    pub fn creation_progress(self) -> Option<u8> {
        use SessionStatus as S;
        Some(match self {
            S::Scheduled => 1,
            S::Preparing => 2,
            S::Pulling => 3,
            S::Prepared => 4,
            S::Creating => 5,
            S::Running => 6,
            _ => return None,
        })
    }
}

/// Derives a session's status from its kernels' statuses, as the original does.
///
/// One kernel: its [mapped](KernelStatus::to_session_status) status. Several kernels: any ERROR
/// makes the session ERROR; a kernel still BUILDING, RESTARTING, RESIZING or SUSPENDED is an
/// error (the session status is not derivable while it lasts); otherwise the first kernel's
/// status is the candidate and the others may pull it back: while kernels are on their way
/// (SCHEDULED, PREPARING, PULLING, PREPARED, CREATING, RUNNING, each at its own agent's pace)
/// the session shows the least advanced one, except that PULLING shows over SCHEDULED and
/// PREPARING (a CREATING kernel makes a RUNNING session CREATING, a PREPARING one makes it
/// PREPARING, …); a CANCELLED kernel cancels a session not yet running. A mix with no
/// defined outcome (a PENDING kernel beside a RUNNING one, a TERMINATED one beside a RUNNING
/// one) gives ERROR.
///
/// ```
/// use bai_core::{derive_session_status, KernelStatus as K, SessionStatus as S};
/// assert_eq!(derive_session_status(&[K::Running, K::Creating])?, S::Creating);
/// assert_eq!(derive_session_status(&[K::Running, K::Preparing, K::Prepared])?, S::Preparing);
/// assert_eq!(derive_session_status(&[K::Running, K::Error])?, S::Error);
/// # Ok::<(), bai_core::Error>(())
/// ```
pub fn derive_session_status(kernels: &[KernelStatus]) -> Result<SessionStatus> {
    use KernelStatus as K;
    use SessionStatus as S;
    let Some(first) = kernels.first() else {
        return Err(Error::UnderivableStatus { reason: "a session has at least one kernel".into() });
    };
    if kernels.len() == 1 {
        return Ok(first.to_session_status());
    }
    if kernels.contains(&K::Error) {
        return Ok(S::Error);
    }
    if let Some(k) = kernels.iter().find(|k| matches!(k, K::Building | K::Restarting | K::Resizing | K::Suspended)) {
        return Err(Error::UnderivableStatus { reason: format!("a kernel of a multi-kernel session is {k}") });
    }
    let mut candidate = first.to_session_status();
    for kernel in &kernels[1..] {
        let k = kernel.to_session_status();
        candidate = match (candidate, k) {
            (c, k) if c == k => c,
            (S::Terminated, S::Terminating) => S::Terminating,
            (S::Pending | S::Scheduled | S::Preparing | S::Pulling | S::Prepared | S::Creating, S::Cancelled) => {
                S::Cancelled
            }
            (S::Cancelled, S::Pending | S::Scheduled | S::Preparing | S::Pulling | S::Prepared) => S::Cancelled,
            (S::Terminating, S::Terminated) => candidate,
            // Kernels on different agents start at their own pace: the session is as far as
            // its slowest kernel, except that an image pull shows over scheduling and preparing.
            (c, k) => match (creation_rank(c), creation_rank(k)) {
                (Some(_), Some(_))
                    if [c, k].contains(&S::Pulling) && [c, k].iter().all(|s| creation_rank(*s) <= Some(3)) =>
                {
                    S::Pulling
                }
                (Some(rc), Some(rk)) => {
                    if rk < rc {
                        k
                    } else {
                        c
                    }
                }
                _ => return Ok(S::Error),
            },
        };
    }
    Ok(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use KernelStatus as K;
    use SessionStatus as S;

    #[test]
    fn names_round_trip() {
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<S>().unwrap(), *s);
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
        for k in K::ALL {
            assert_eq!(k.as_str().parse::<K>().unwrap(), *k);
        }
        assert_eq!("running-degraded".parse::<S>().unwrap(), S::RunningDegraded);
        let err = "SLEEPING".parse::<S>().unwrap_err().to_string();
        assert!(err.starts_with("invalid session status \"SLEEPING\": expected one of PENDING,"), "{err}");
        for a in AgentStatus::ALL {
            assert_eq!(AgentStatus::from_code(a.code()).unwrap(), *a);
        }
        assert!(AgentStatus::from_code(7).is_err());
    }

    #[test]
    fn session_map_matches_the_reference() {
        assert!(S::Pending.can_transition_to(S::Scheduled));
        assert!(!S::Prepared.can_transition_to(S::Creating), "PREPARED has no CREATING edge");
        assert!(S::Error.can_transition_to(S::Terminated));
        assert!(!S::Running.can_transition_to(S::Pending));
        let err = S::Terminated.transition(S::Running).unwrap_err();
        assert_eq!(err.to_string(), "illegal session status transition from TERMINATED to RUNNING");
        assert!(K::Prepared.can_transition_to(K::Creating));
        assert!(K::Restarting.can_transition_to(K::Running));
        assert!(!K::Restarting.can_transition_to(K::Terminated));
        assert!(!K::Suspended.can_transition_to(K::Suspended));
        assert_eq!(AgentStatus::after_termination("agent-lost"), AgentStatus::Lost);
        assert_eq!(AgentStatus::after_termination("shutdown"), AgentStatus::Terminated);
    }

    #[test]
    fn status_groups() {
        assert!(!S::Pending.occupies_agent_resources());
        assert!(S::Terminating.occupies_agent_resources() && !S::Terminating.occupies_user_resources());
        assert!(S::Error.is_dead() && !S::Error.is_terminal());
        assert!(S::Creating.awaits_kernels() && !S::Running.awaits_kernels());
        assert!(S::Prepared.is_being_created() && !S::Scheduled.is_being_created() && !S::Running.is_being_created());
    }

    #[test]
    fn derives_session_status_from_kernels() {
        let cases: &[(&[K], Option<S>)] = &[
            (&[K::Building], Some(S::Preparing)),
            (&[K::Suspended], Some(S::Error)),
            (&[K::Running, K::Running], Some(S::Running)),
            (&[K::Prepared, K::Pulling], Some(S::Pulling)),
            (&[K::Prepared, K::Preparing], Some(S::Preparing)),
            (&[K::Running, K::Creating], Some(S::Creating)),
            (&[K::Creating, K::Running], Some(S::Creating)),
            (&[K::Terminated, K::Terminating], Some(S::Terminating)),
            (&[K::Scheduled, K::Pulling], Some(S::Pulling)),
            // Kernels on different agents at their own pace: the slowest one shows.
            (&[K::Scheduled, K::Preparing], Some(S::Scheduled)),
            (&[K::Running, K::Preparing, K::Creating], Some(S::Preparing)),
            (&[K::Pulling, K::Running], Some(S::Pulling)),
            (&[K::Creating, K::Prepared, K::Running], Some(S::Prepared)),
            (&[K::Preparing, K::Pulling, K::Creating], Some(S::Pulling)),
            (&[K::Pending, K::Cancelled], Some(S::Cancelled)),
            (&[K::Cancelled, K::Pending], Some(S::Cancelled)),
            (&[K::Running, K::Error], Some(S::Error)),
            (&[K::Running, K::Pending], Some(S::Error)),
            (&[K::Running, K::Terminated], Some(S::Error)),
            (&[K::Running, K::Restarting], None),
            (&[], None),
        ];
        for (kernels, expected) in cases {
            let got = derive_session_status(kernels).ok();
            assert_eq!(got, *expected, "{kernels:?}");
        }
    }

    fn session_status() -> impl Strategy<Value = S> {
        prop::sample::select(S::ALL.to_vec())
    }
    fn kernel_status() -> impl Strategy<Value = K> {
        prop::sample::select(K::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn no_illegal_session_transition_is_accepted(path in prop::collection::vec(session_status(), 1..20)) {
            let mut current = S::Pending;
            for to in path {
                match current.transition(to) {
                    Ok(next) => {
                        prop_assert!(current.can_transition_to(to));
                        prop_assert!(!current.is_terminal());
                        current = next;
                    }
                    Err(Error::IllegalTransition { .. }) => prop_assert!(!current.can_transition_to(to)),
                    Err(other) => prop_assert!(false, "unexpected error {}", other),
                }
            }
        }

        #[test]
        fn no_illegal_kernel_transition_is_accepted(from in kernel_status(), to in kernel_status()) {
            let result = from.transition(to);
            prop_assert_eq!(result.is_ok(), from.can_transition_to(to));
            if from.is_terminal() || from == to {
                prop_assert!(result.is_err());
            }
        }

        #[test]
        fn derivation_never_panics_and_respects_errors(kernels in prop::collection::vec(kernel_status(), 1..6)) {
            let derived = derive_session_status(&kernels);
            if kernels.len() > 1 && kernels.contains(&K::Error) {
                prop_assert_eq!(derived.clone().unwrap(), S::Error);
            }
            if kernels.iter().all(|k| *k == kernels[0]) {
                if let Ok(s) = derived {
                    prop_assert_eq!(s, kernels[0].to_session_status());
                }
            }
        }
    }
}
