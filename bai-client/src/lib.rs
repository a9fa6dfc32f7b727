//! `bai-client`: a typed Rust client for the Backend.AI manager API, and the `bai` command line.
//!
//! It speaks the same protocol as the official Python client (HMAC-signed REST, GraphQL,
//! server-sent events, WebSockets and the storage side channel), so it works against a bai
//! manager and against an original one.
//!
//! - [`Config`]: the official client's `BACKEND_*` variables and a TOML file.
//! - [`Client`]: signing (through `bai-core`), endpoint rotation, retries with backoff on
//!   `429`/`503`, and the calls: sessions ([`Client::create_session`],
//!   [`Client::list_sessions`], [`Client::session_info`], [`Client::destroy_session`],
//!   [`Client::restart_session`], [`Client::session_logs`], [`Client::session_events`] as a
//!   `Stream`, [`Client::execute`] as a `Stream` of console items, uploads and downloads),
//!   folders ([`Client::create_vfolder`], [`Client::vfolder_upload`], sharing with
//!   [`Client::share_vfolder`] and [`Client::invite_to_vfolder`], …), administration
//!   ([`Client::list_agents`], [`Client::create_keypair`], [`Client::create_user`], …),
//!   presets, raw [`Client::graphql`], and the apps inside sessions ([`Client::apps`],
//!   [`Client::forward_app`] for a local port, [`Client::app_link`] for a browser).
//! - [`Error`]: one enum; API failures keep the server's problem details
//!   ([`Error::problem`]) and [`Error::hint`] says what to do about common ones.
//!
//! ```no_run
//! use bai_client::{Client, Config, SessionSpec};
//!
//! # async fn demo() -> bai_client::Result<()> {
//! let client = Client::new(Config::new("http://127.0.0.1:8081", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")?)?;
//! let session = client.create_session(&SessionSpec::new("python:3.11").resource("cpu", "1")).await?;
//! let output = client.run_code(&session.session_id.to_string(), "print(6 * 7)").await?;
//! assert_eq!(output.stdout, "42\n");
//! client.destroy_session(&session.session_id.to_string(), false).await?;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod apps;
mod client;
pub mod config;
pub mod error;
pub mod events;
pub mod exec;
mod json_string;
mod multipart;
pub mod session;
mod tls;
pub mod vfolder;

pub use admin::{
    Agent, Domain, Group, Image, KeyPair, NewUser, Preset, PresetCheck, ResourcePolicy, ScalingGroup, User,
};
pub use apps::{AppInfo, AppLink, AppOptions};
pub use client::{Client, ServerVersion, USER_AGENT};
pub use config::Config;
pub use error::{Error, GraphQlError, Problem, Result};
pub use events::{EventScope, EventStream, SessionEvent};
pub use exec::{ExecItem, ExecOutput, ExecRequest, Execution};
pub use session::{
    FileEntry, KernelInfo, Page, SessionCreated, SessionInfo, SessionSpec, SessionSummary, SessionType, StatusFilter,
};
pub use vfolder::{Invitation, NewVFolder, VFolder, VFolderHosts};
