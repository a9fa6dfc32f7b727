//! The agent watcher (`bai-agent watcher`, default port 6009): a small supervisor that runs the
//! agent as a child process, restarts it after a crash with exponential backoff, and lets the
//! manager or an operator start, stop and restart it over an authenticated HTTP API.
//!
//! API (every request needs `authorization: Bearer <token>`; anything else is 401):
//! - `GET /status` → `{"state": "running"|"stopped"|"backoff", "pid", "restarts", "last_exit", "since"}`
//! - `POST /start`, `POST /stop` (SIGTERM, then SIGKILL after the grace period),
//!   `POST /restart` → the status afterwards.
//!
//! Stopping through the API is final until a start: the watcher does not restart an agent it
//! was asked to stop. Killing the watcher leaves the agent running (it is its own process
//! group), like a SIGTERM of the agent leaves its kernels running.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// The watcher's settings.
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    /// The agent program (normally this very executable).
    pub program: std::path::PathBuf,
    /// Its arguments (e.g. `--config /etc/bai/agent.toml`).
    pub args: Vec<String>,
    /// The shared token the API requires.
    pub token: String,
    /// The first restart delay; it doubles after each crash up to `max_backoff`.
    pub backoff: Duration,
    /// The longest restart delay.
    pub max_backoff: Duration,
    /// An agent that ran this long before crashing restarts after `backoff` again.
    pub stable_after: Duration,
    /// How long a stop waits for SIGTERM before SIGKILL.
    pub stop_grace: Duration,
}

impl WatcherConfig {
    /// Settings for `program args` with `token` and the default timings.
    pub fn new(program: std::path::PathBuf, args: Vec<String>, token: String) -> Self {
        Self {
            program,
            args,
            token,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            stop_grace: Duration::from_secs(30),
        }
    }
}

/// What the watcher reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    /// `running`, `stopped` or `backoff` (waiting to restart after a crash).
    pub state: &'static str,
    /// The agent's process id while it runs.
    pub pid: Option<u32>,
    /// Restarts after crashes since the watcher started.
    pub restarts: u32,
    /// How the last run ended (`exit 1`, `signal 9`).
    pub last_exit: Option<String>,
    /// When the current state began, unix seconds.
    pub since: f64,
}

struct Inner {
    child: Option<Child>,
    wanted: bool,
    restarts: u32,
    last_exit: Option<String>,
    since: f64,
    backoff_until: Option<Instant>,
}

/// The supervisor. Share it as `Arc<Watcher>`.
pub struct Watcher {
    config: WatcherConfig,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").field("program", &self.config.program).finish_non_exhaustive()
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => "unknown".into(),
    }
}

impl Watcher {
    /// A watcher that has not started the agent yet (see [`Watcher::start`] and [`Watcher::supervise`]).
    pub fn new(config: WatcherConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            inner: Mutex::new(Inner {
                child: None,
                wanted: false,
                restarts: 0,
                last_exit: None,
                since: now(),
                backoff_until: None,
            }),
        })
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let mut command = Command::new(&self.config.program);
        command.args(&self.config.args).stdin(Stdio::null()).process_group(0).kill_on_drop(false);
        command.spawn()
    }

    /// Starts the agent (no-op while it runs).
    pub async fn start(&self) -> std::io::Result<Status> {
        let mut inner = self.inner.lock().await;
        inner.wanted = true;
        inner.backoff_until = None;
        if inner.child.is_none() {
            inner.child = Some(self.spawn()?);
            inner.since = now();
        }
        Ok(Self::snapshot(&inner))
    }

    /// Stops the agent: SIGTERM, then SIGKILL after the grace period. It stays stopped.
    pub async fn stop(&self) -> Status {
        let mut inner = self.inner.lock().await;
        inner.wanted = false;
        inner.backoff_until = None;
        if let Some(mut child) = inner.child.take() {
            if let Some(pid) = child.id() {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
            }
            let status = match tokio::time::timeout(self.config.stop_grace, child.wait()).await {
                Ok(status) => status.ok(),
                Err(_) => {
                    let _ = child.kill().await;
                    child.wait().await.ok()
                }
            };
            inner.last_exit = status.map(describe);
            inner.since = now();
        }
        Self::snapshot(&inner)
    }

    /// The current status.
    pub async fn status(&self) -> Status {
        Self::snapshot(&*self.inner.lock().await)
    }

    fn snapshot(inner: &Inner) -> Status {
        let state = match (&inner.child, inner.backoff_until) {
            (Some(_), _) => "running",
            (None, Some(_)) => "backoff",
            (None, None) => "stopped",
        };
        Status {
            state,
            pid: inner.child.as_ref().and_then(Child::id),
            restarts: inner.restarts,
            last_exit: inner.last_exit.clone(),
            since: inner.since,
        }
    }

    /// Watches the agent forever: a crash (any exit the watcher did not ask for) restarts it
    /// after the backoff, which doubles per consecutive crash and resets after a stable run.
    pub async fn supervise(self: Arc<Self>) {
        let mut delay = self.config.backoff;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut inner = self.inner.lock().await;
            if let Some(until) = inner.backoff_until {
                if Instant::now() >= until && inner.wanted {
                    match self.spawn() {
                        Ok(child) => {
                            inner.child = Some(child);
                            inner.restarts += 1;
                            inner.backoff_until = None;
                            inner.since = now();
                            tracing::warn!(restarts = inner.restarts, "agent restarted");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot start the agent");
                            inner.backoff_until = Some(Instant::now() + delay);
                            delay = (delay * 2).min(self.config.max_backoff);
                        }
                    }
                }
                continue;
            }
            let Some(child) = inner.child.as_mut() else { continue };
            let Ok(Some(status)) = child.try_wait() else { continue };
            let ran = now() - inner.since;
            inner.child = None;
            inner.last_exit = Some(describe(status));
            inner.since = now();
            if !inner.wanted {
                continue;
            }
            if Duration::from_secs_f64(ran.max(0.0)) >= self.config.stable_after {
                delay = self.config.backoff;
            }
            tracing::warn!(exit = %describe(status), retry_in = ?delay, "the agent ended; restarting");
            inner.backoff_until = Some(Instant::now() + delay);
            delay = (delay * 2).min(self.config.max_backoff);
        }
    }
}

fn authorized(token: &str, headers: &HeaderMap) -> bool {
    let check = match bai_agent_runtime::rpc::TokenCheck::new(token) {
        Ok(c) => c,
        Err(_) => return false,
    };
    headers.get("authorization").is_some_and(|v| check.accepts(v.as_bytes()))
}

async fn guard<F, Fut>(watcher: Arc<Watcher>, headers: HeaderMap, action: F) -> Response
where
    F: FnOnce(Arc<Watcher>) -> Fut,
    Fut: std::future::Future<Output = Result<Status, String>>,
{
    if !authorized(&watcher.config.token, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "missing or wrong `authorization: Bearer <token>`"})),
        )
            .into_response();
    }
    match action(watcher).await {
        Ok(status) => Json(status).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({"error": e}))).into_response(),
    }
}

/// The watcher's HTTP API.
pub fn router(watcher: Arc<Watcher>) -> Router {
    Router::new()
        .route(
            "/status",
            get(|State(w): State<Arc<Watcher>>, h: HeaderMap| guard(w, h, |w| async move { Ok(w.status().await) })),
        )
        .route(
            "/start",
            post(|State(w): State<Arc<Watcher>>, h: HeaderMap| {
                guard(w, h, |w| async move { w.start().await.map_err(|e| e.to_string()) })
            }),
        )
        .route(
            "/stop",
            post(|State(w): State<Arc<Watcher>>, h: HeaderMap| guard(w, h, |w| async move { Ok(w.stop().await) })),
        )
        .route(
            "/restart",
            post(|State(w): State<Arc<Watcher>>, h: HeaderMap| {
                guard(w, h, |w| async move {
                    w.stop().await;
                    w.start().await.map_err(|e| e.to_string())
                })
            }),
        )
        .with_state(watcher)
}

/// Runs a watcher: starts the agent, supervises it and serves the API on `listener` until
/// `shutdown` resolves (the agent keeps running).
pub async fn run(
    config: WatcherConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    bai_agent_runtime::rpc::TokenCheck::new(&config.token)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let watcher = Watcher::new(config);
    watcher.start().await?;
    let supervisor = tokio::spawn(watcher.clone().supervise());
    let result = axum::serve(listener, router(watcher)).with_graceful_shutdown(shutdown).await;
    supervisor.abort();
    result
}
