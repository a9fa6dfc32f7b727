//! Helpers shared by the integration tests of the workspace (a dev-dependency only; never
//! published).
//!
//! Tests that need a real service read its address from a `BAI_TEST_*` variable that
//! `scripts/test` sets. [`service_env`] decides what happens when it is missing: the test
//! skips with a printed reason, unless `BAI_REQUIRE_SERVICES=1` (set by `scripts/test`), in
//! which case it fails.
//!
//! [`openmetrics`] parses `/metrics` scrapes; [`otlp`] collects the spans a daemon exports;
//! [`log_lines::LogLines`] keeps what a log layer writes; [`AgentContainers`] removes an agent's
//! kernel containers when a Docker test ends; [`fake_agent`] simulates agents for scale tests and
//! benchmarks.

pub mod fake_agent;
pub mod log_lines;
pub mod openmetrics;
pub mod otlp;

/// The value of `var`; `None` (with the reason on stderr) when it is unset and services are
/// optional.
///
/// # Panics
/// When `var` is unset and `BAI_REQUIRE_SERVICES=1`: the test must not pass by skipping.
pub fn service_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ if std::env::var("BAI_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("{var} is not set, but BAI_REQUIRE_SERVICES=1 requires this service (scripts/test sets it)")
        }
        _ => {
            eprintln!("skipping: {var} is not set (scripts/test starts the service and sets it)");
            None
        }
    }
}

/// Removes every container an agent owns (label `ai.backend.owner=<agent>`) on the Docker
/// engine at `docker` when dropped, so a Docker test leaves nothing behind, passed or failed.
/// Uses the `docker` CLI; errors are ignored (there may be nothing to remove).
#[derive(Debug)]
pub struct AgentContainers {
    /// The engine, e.g. `unix:///var/run/docker.sock`.
    pub docker: String,
    /// The agent id.
    pub agent: String,
}

impl Drop for AgentContainers {
    fn drop(&mut self) {
        let host = ["-H", &self.docker];
        let filter = format!("label=ai.backend.owner={}", self.agent);
        let Ok(out) = std::process::Command::new("docker").args(host).args(["ps", "-aq", "--filter", &filter]).output()
        else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker").args(host).args(["rm", "-f"]).args(&ids).output();
        }
    }
}
