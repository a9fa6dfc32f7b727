//! A complete manager in one directory, in this process: SQLite, the in-process event bus and
//! an embedded agent that runs kernels as local processes (image `host`), loaded with the
//! example users. Nothing outside the directory is touched, every port is picked by the OS,
//! and the kernels are killed when the [`LocalManager`] is shut down or dropped.
//!
//! It is the real manager (the same code as `bai-manager start-server --all-in-one`), so SDKs,
//! bindings and tests can talk to it over HTTP exactly as to a deployed one.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bai_manager::server::StartError> {
//! let dir = tempfile::tempdir().unwrap();
//! let local = bai_manager::local::LocalManager::start(dir.path()).await?;
//! println!("endpoint {} (admin key {})", local.endpoint(), bai_manager::local::EXAMPLE_ADMIN.0);
//! local.shutdown().await;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use bai_agent::config::{AgentConfig, ContainerBackend, EventBackend as AgentEvents, ScratchType};
use bai_agent_runtime::runtime::process::ProcessRuntime;

use crate::config::{EventBackend, ManagerConfig};
use crate::server::{self, RunningManager, StartError, StartOptions};

/// The example fixture (`fixtures/example-users.json`): domain `default`, project `default`,
/// a superadmin and a regular user.
pub const EXAMPLE_FIXTURE: &str = include_str!("../fixtures/example-users.json");
/// The example superadmin's keypair: (access key, secret key).
pub const EXAMPLE_ADMIN: (&str, &str) = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
/// The example regular user's keypair: (access key, secret key).
pub const EXAMPLE_USER: (&str, &str) = ("AKIANABBDUSEREXAMPLE", "C8qnIo29EZvXkPK_MXcuAakYTy4NYrxwmCEyNPlf");
/// The storage-token secret of local managers (their folders live in `<dir>/vfolders`).
pub const STORAGE_SECRET: &str = "local-storage-secret";

/// The configurations [`LocalManager::start`] uses for `dir`; adjust them and call
/// [`LocalManager::start_with`] for anything else.
pub fn configs(dir: &Path) -> (ManagerConfig, AgentConfig) {
    let mut config = ManagerConfig::default();
    config.manager.api_listen = "127.0.0.1:0".parse().expect("address");
    config.manager.metrics_listen = "127.0.0.1:0".parse().expect("address");
    config.manager.schedule_interval = 0.2;
    config.db.url = format!("sqlite://{}?mode=rwc", dir.join("manager.db").display());
    config.events.backend = EventBackend::Memory;
    config.storage.root = dir.join("vfolders");
    config.storage.token_secret = Some(STORAGE_SECRET.to_string());
    let mut agent = AgentConfig::default();
    agent.agent.id = format!("i-local-{}", std::process::id());
    agent.agent.rpc_listen = "127.0.0.1:0".parse().expect("address");
    agent.agent.metrics_listen = "127.0.0.1:0".parse().expect("address");
    agent.agent.heartbeat_interval = 0.2;
    agent.events.backend = AgentEvents::Memory;
    agent.container.backend = ContainerBackend::Process;
    agent.container.process_root = dir.join("process");
    agent.container.scratch_root = dir.join("scratch");
    agent.container.scratch_type = ScratchType::Hostdir;
    agent.resource.reserved_cpu = rust_decimal::Decimal::ZERO;
    agent.resource.reserved_mem = "256m".parse().expect("size");
    (config, agent)
}

/// A running local manager; derefs to the [`RunningManager`].
#[derive(Debug)]
pub struct LocalManager {
    inner: Option<RunningManager>,
    process_root: PathBuf,
}

impl LocalManager {
    /// Starts a local manager keeping everything under `dir`, and waits (up to 10 s) until its
    /// agent has registered, so sessions can be scheduled right away.
    pub async fn start(dir: &Path) -> Result<Self, StartError> {
        let (config, agent) = configs(dir);
        Self::start_with(config, agent).await
    }

    /// [`start`](Self::start) with adjusted configurations (see [`configs`]). The agent must
    /// use the process backend for the kernel clean-up to apply.
    pub async fn start_with(config: ManagerConfig, agent: AgentConfig) -> Result<Self, StartError> {
        let process_root = agent.container.process_root.clone();
        let options = StartOptions { embedded_agent: Some(agent), fixture: Some(EXAMPLE_FIXTURE.to_string()) };
        let running = server::start(config, options).await?;
        let local = Self { inner: Some(running), process_root };
        let db = local.manager.db().clone();
        for _ in 0..100 {
            let alive = crate::db::repo::list_agents(&db, None, Some(bai_core::AgentStatus::Alive)).await;
            if alive.is_ok_and(|a| !a.is_empty()) {
                return Ok(local);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(StartError::AgentNotRegistered)
    }

    /// The API endpoint, e.g. `http://127.0.0.1:40123` (what `BACKEND_ENDPOINT` should say;
    /// `https://…` when the configuration enables TLS).
    pub fn endpoint(&self) -> String {
        RunningManager::endpoint(self)
    }

    /// Stops the manager and its agent, then kills the kernels' processes.
    pub async fn shutdown(mut self) {
        if let Some(running) = self.inner.take() {
            running.shutdown().await;
        }
        ProcessRuntime::kill_all(&self.process_root);
    }
}

impl std::ops::Deref for LocalManager {
    type Target = RunningManager;
    fn deref(&self) -> &RunningManager {
        self.inner.as_ref().expect("a LocalManager is running until shut down")
    }
}

impl std::ops::DerefMut for LocalManager {
    fn deref_mut(&mut self) -> &mut RunningManager {
        self.inner.as_mut().expect("a LocalManager is running until shut down")
    }
}

impl Drop for LocalManager {
    fn drop(&mut self) {
        ProcessRuntime::kill_all(&self.process_root);
    }
}
