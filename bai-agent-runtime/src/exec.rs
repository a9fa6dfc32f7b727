//! Code execution inside kernels: batch commands, and query mode through a small runner.
//!
//! **Batch mode** ([`run_batch`]) needs nothing in the image but `sh`: an optional build
//! command, then the command itself, each as `sh -c` through [`ContainerRuntime::exec`], with
//! their output collected (at most [`OUTPUT_CAP`] bytes per stream) and a time limit.
//!
//! **Query mode** ([`KernelRunner`]) runs the Python kernel runner
//! (`bai-agent-runtime/runner/bai_runner.py`, embedded here as [`RUNNER_SOURCE`]) in the
//! container with an attached exec and speaks a framed protocol with it over the exec's stdin
//! and stdout: every frame is a 4-byte big-endian length and a UTF-8 JSON object. Requests carry
//! an `op` (`code`, `input`, `interrupt`, `status`, `exit`), replies a `type` (`ready`,
//! `stdout`, `stderr`, `media`, `html`, `waiting-input`, `finished`, `status`, `error`); console
//! records carry the `run_id` they belong to. The runner keeps one namespace for the kernel's
//! life and runs one piece of code at a time.
//!
//! [`KernelRunner::execute`] has the original agent's semantics (`get_next_result`): it gathers
//! the run's records until the run finishes or waits for input, or until `flush_timeout` passes
//! (`continued`, the rest kept for the next [`Mode::Continue`]); consecutive stdout (or stderr)
//! records are merged; a new run waits until the runner has finished the current one. The
//! result serialises in the original's API v2 shape:
//!
//! ```
//! use bai_agent_runtime::exec::{ConsoleItem, ExecResult, RunStatus};
//!
//! let result = ExecResult {
//!     run_id: "0123abcd".into(),
//!     status: RunStatus::Finished,
//!     exit_code: Some(0),
//!     console: vec![ConsoleItem::Stdout("42\n".into())],
//!     options: None,
//! };
//! assert_eq!(
//!     serde_json::to_string(&result).unwrap(),
//!     r#"{"runId":"0123abcd","status":"finished","exitCode":0,"console":[["stdout","42\n"]],"options":null}"#,
//! );
//! ```

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::runtime::{ContainerRuntime, ExecSession, ExecSpec, Output, OutputStream};

/// The kernel runner's source, copied into containers by [`KernelRunner::start`].
pub const RUNNER_SOURCE: &str = include_str!("../runner/bai_runner.py");

/// Where [`KernelRunner::start`] puts the runner inside the container by default.
pub const RUNNER_PATH: &str = "/opt/kernel/bai_runner.py";

/// The most output kept per stream (stdout, stderr): of a batch job, and of a query run waiting
/// to be collected (what [`KernelRunner::execute`] returns frees room). 10 MiB, as in the
/// original; anything beyond it is dropped.
pub const OUTPUT_CAP: usize = 10 * 1024 * 1024;

/// The largest protocol frame accepted from the runner.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// The most records kept for one run that nobody collects (after merging); console records
/// beyond it are dropped, control records never are.
const RUN_QUEUE_CAP: usize = 4096;

/// How many finished runs whose results nobody collected are kept.
const UNCOLLECTED_RUNS_KEPT: usize = 64;

/// How much of the runner's own stderr is kept for error messages.
const DIAGNOSTICS_KEPT: usize = 4096;

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

/// One console record of a run.
///
/// It serialises as the original's `[type, data]` pair: `["stdout", "text"]`,
/// `["media", ["image/png", "<base64>"]]`, `["html", "<b>x</b>"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleItem {
    /// Text written to stdout.
    Stdout(String),
    /// Text written to stderr.
    Stderr(String),
    /// Media shown by the code, e.g. an image.
    Media {
        /// The MIME type, e.g. `image/png`.
        mime: String,
        /// The content: text, or base64 for binary types.
        data: String,
    },
    /// An HTML fragment shown by the code.
    Html(String),
}

impl ConsoleItem {
    /// The record's type as the original names it (`stdout`, `stderr`, `media`, `html`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stdout(_) => "stdout",
            Self::Stderr(_) => "stderr",
            Self::Media { .. } => "media",
            Self::Html(_) => "html",
        }
    }
}

impl Serialize for ConsoleItem {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Stdout(text) | Self::Stderr(text) | Self::Html(text) => (self.kind(), text).serialize(serializer),
            Self::Media { mime, data } => (self.kind(), (mime, data)).serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for ConsoleItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let (kind, data) = <(String, serde_json::Value)>::deserialize(deserializer)?;
        let text = |data: serde_json::Value| match data {
            serde_json::Value::String(text) => Ok(text),
            other => Err(D::Error::custom(format!("console {kind} data must be a string, not {other}"))),
        };
        match kind.as_str() {
            "stdout" => Ok(Self::Stdout(text(data)?)),
            "stderr" => Ok(Self::Stderr(text(data)?)),
            "html" => Ok(Self::Html(text(data)?)),
            "media" => {
                let (mime, data) = <(String, String)>::deserialize(data).map_err(D::Error::custom)?;
                Ok(Self::Media { mime, data })
            }
            other => Err(D::Error::custom(format!(
                "unknown console record type {other:?}: expected stdout, stderr, media or html"
            ))),
        }
    }
}

/// Appends `item`, merging it into the last record when both are stdout (or both stderr).
fn push_console(console: &mut Vec<ConsoleItem>, item: ConsoleItem) {
    match (console.last_mut(), item) {
        (Some(ConsoleItem::Stdout(last)), ConsoleItem::Stdout(text))
        | (Some(ConsoleItem::Stderr(last)), ConsoleItem::Stderr(text)) => last.push_str(&text),
        (_, item) => console.push(item),
    }
}

/// How a call to [`KernelRunner::execute`] or [`run_batch`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// The run ended; the exit code is set.
    Finished,
    /// The flush timeout passed while the run went on; continue it for more.
    Continued,
    /// The code waits for input; answer with [`Mode::Input`].
    WaitingInput,
    /// The run took longer than allowed and was abandoned.
    ExecTimeout,
}

impl RunStatus {
    /// The status as the API spells it, e.g. `waiting-input`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::Continued => "continued",
            Self::WaitingInput => "waiting-input",
            Self::ExecTimeout => "exec-timeout",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`KernelRunner::execute`] returns: the original's API v2 result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecResult {
    /// The run this result belongs to (generated when the caller gave none).
    pub run_id: String,
    /// How the call ended.
    pub status: RunStatus,
    /// The run's exit code, once it has [`RunStatus::Finished`]: 0, 1 after an uncaught
    /// exception, or the code of `SystemExit`.
    pub exit_code: Option<i64>,
    /// The console records gathered by this call, consecutive stdout (stderr) merged.
    pub console: Vec<ConsoleItem>,
    /// With [`RunStatus::WaitingInput`]: how to ask, e.g. `{"is_password": false}`.
    pub options: Option<serde_json::Value>,
}

/// What [`run_batch`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResult {
    /// The build command's exit code, when there was one and it ran to the end.
    pub build_exit_code: Option<i64>,
    /// The job's exit code: the command's, or the build's when the build failed (the command
    /// then does not run); `None` after a timeout.
    pub exit_code: Option<i64>,
    /// The output of both steps, consecutive stdout (stderr) merged.
    pub console: Vec<ConsoleItem>,
    /// [`RunStatus::Finished`] or [`RunStatus::ExecTimeout`].
    pub status: RunStatus,
}

/// What [`KernelRunner::execute`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Starts a run of the given code (waiting for the current run to finish first).
    Query,
    /// Gathers more of a run's records.
    Continue,
    /// Answers a run's `waiting-input` with the given text, then gathers its records.
    Input,
}

impl std::str::FromStr for Mode {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "query" => Ok(Self::Query),
            "continue" => Ok(Self::Continue),
            "input" => Ok(Self::Input),
            other => Err(Error::invalid("mode", format!("{other:?} is not one of query, continue, input"))),
        }
    }
}

/// A fresh run id: 32 hex digits, from the clock, a counter and the process's random hash
/// keys (unique within an agent, unpredictable enough for an id).
pub fn new_run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let half = |salt: u8| RandomState::new().hash_one((salt, nanos, count, std::process::id()));
    format!("{:016x}{:016x}", half(1), half(2))
}

// ---------------------------------------------------------------------------------------------
// Output collection
// ---------------------------------------------------------------------------------------------

/// Decodes UTF-8 that arrives in arbitrary chunks: a character split between chunks is kept
/// for the next one, invalid bytes become U+FFFD.
#[derive(Debug, Default)]
struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    fn decode(&mut self, chunk: &[u8]) -> String {
        self.pending.extend_from_slice(chunk);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        let kept = loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(text);
                    break Vec::new();
                }
                Err(err) => {
                    let (valid, after) = rest.split_at(err.valid_up_to());
                    out.push_str(&String::from_utf8_lossy(valid));
                    match err.error_len() {
                        // An incomplete character at the end: wait for the rest of it.
                        None => break after.to_vec(),
                        Some(len) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[len..];
                        }
                    }
                }
            }
        };
        self.pending = kept;
        out
    }

    /// The text of an incomplete character left at the end, if any.
    fn finish(&mut self) -> String {
        let pending = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&pending).into_owned()
    }
}

/// One output stream of a batch job: its decoder and how many bytes it has kept.
#[derive(Debug, Default)]
struct StreamState {
    decoder: Utf8Decoder,
    kept: usize,
}

/// Collects a batch job's stdout and stderr into console records, at most `cap` bytes each.
#[derive(Debug)]
struct ConsoleCollector {
    console: Vec<ConsoleItem>,
    stdout: StreamState,
    stderr: StreamState,
    cap: usize,
}

impl ConsoleCollector {
    fn new(cap: usize) -> Self {
        Self { console: Vec::new(), stdout: StreamState::default(), stderr: StreamState::default(), cap }
    }

    fn push(&mut self, output: &Output) {
        let (state, bytes, stdout) = match output {
            Output::Stdout(bytes) => (&mut self.stdout, bytes, true),
            Output::Stderr(bytes) => (&mut self.stderr, bytes, false),
        };
        let room = self.cap.saturating_sub(state.kept);
        let bytes = &bytes[..bytes.len().min(room)];
        if bytes.is_empty() {
            return;
        }
        state.kept += bytes.len();
        let text = state.decoder.decode(bytes);
        if !text.is_empty() {
            push_console(&mut self.console, if stdout { ConsoleItem::Stdout(text) } else { ConsoleItem::Stderr(text) });
        }
    }

    fn finish(mut self) -> Vec<ConsoleItem> {
        for stdout in [true, false] {
            let state = if stdout { &mut self.stdout } else { &mut self.stderr };
            let text = state.decoder.finish();
            if !text.is_empty() {
                push_console(
                    &mut self.console,
                    if stdout { ConsoleItem::Stdout(text) } else { ConsoleItem::Stderr(text) },
                );
            }
        }
        self.console
    }
}

// ---------------------------------------------------------------------------------------------
// Batch mode
// ---------------------------------------------------------------------------------------------

/// How one batch step ended.
enum StepEnd {
    Exited(i64),
    TimedOut,
}

/// Runs `f`, giving up at `deadline` (`None` when there is no deadline).
async fn until<F: std::future::Future>(deadline: Option<Instant>, f: F) -> Option<F::Output> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, f).await.ok(),
        None => Some(f.await),
    }
}

/// The exit code of an exec whose output has ended. The engine may need a moment to notice
/// that the process is gone, so this asks a few times.
async fn finished_exit_code(runtime: &dyn ContainerRuntime, exec_id: &str) -> Result<i64> {
    for _ in 0..100 {
        if let Some(code) = runtime.exec_exit_code(exec_id).await? {
            return Ok(code);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Error::Runner(format!("exec {exec_id} closed its output but reports no exit code after 5 s")))
}

async fn run_step(
    runtime: &dyn ContainerRuntime,
    container_id: &str,
    command: &str,
    deadline: Option<Instant>,
    collector: &mut ConsoleCollector,
) -> Result<StepEnd> {
    let spec = ExecSpec { cmd: vec!["sh".into(), "-c".into(), command.into()], ..ExecSpec::default() };
    let Some(session) = until(deadline, runtime.exec(container_id, &spec)).await else {
        return Ok(StepEnd::TimedOut);
    };
    let mut session = session?;
    loop {
        match until(deadline, session.output.next()).await {
            None => return Ok(StepEnd::TimedOut),
            Some(None) => break,
            Some(Some(output)) => collector.push(&output?),
        }
    }
    match until(deadline, finished_exit_code(runtime, &session.id)).await {
        None => Ok(StepEnd::TimedOut),
        Some(code) => Ok(StepEnd::Exited(code?)),
    }
}

/// Runs a batch job in a running container: `build` (if given and not empty; `*` runs `make`
/// when the working directory has a Makefile), then, if the build exited 0, `exec`, each as
/// `sh -c` in the container's working directory. At most [`OUTPUT_CAP`] bytes of each stream
/// are kept.
///
/// When `timeout` passes the result has [`RunStatus::ExecTimeout`] and no exit code. The
/// command is not killed (the engine has no call for that): as in the original, the caller
/// destroys the kernel after an exec timeout. An empty `exec` does nothing and exits 0.
///
/// Cancel safety: dropping the future stops the collection; commands already started keep
/// running in the container.
pub async fn run_batch(
    runtime: &dyn ContainerRuntime,
    container_id: &str,
    build: Option<&str>,
    exec: &str,
    timeout: Option<Duration>,
) -> Result<BatchResult> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut collector = ConsoleCollector::new(OUTPUT_CAP);
    let mut build_exit_code = None;
    let mut exit_code = Some(0);
    let mut status = RunStatus::Finished;
    let build = build.map(str::trim).filter(|b| !b.is_empty());
    let build = build.map(|b| if b == "*" { "if [ -f Makefile ]; then make; fi" } else { b });
    let steps = build.into_iter().map(|b| (b, true)).chain(Some((exec.trim(), false)).filter(|(e, _)| !e.is_empty()));
    for (command, is_build) in steps {
        match run_step(runtime, container_id, command, deadline, &mut collector).await? {
            StepEnd::TimedOut => {
                exit_code = None;
                status = RunStatus::ExecTimeout;
                break;
            }
            StepEnd::Exited(code) => {
                exit_code = Some(code);
                if is_build {
                    build_exit_code = Some(code);
                    if code != 0 {
                        break;
                    }
                }
            }
        }
    }
    Ok(BatchResult { build_exit_code, exit_code, console: collector.finish(), status })
}

// ---------------------------------------------------------------------------------------------
// The protocol
// ---------------------------------------------------------------------------------------------

/// A request to the runner.
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum Request<'a> {
    Code { run_id: &'a str, code: &'a str },
    Input { run_id: &'a str, data: &'a str },
    Interrupt,
    Status,
    Exit,
}

/// A message from the runner.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Event {
    Ready {
        started_at: f64,
    },
    Stdout {
        run_id: Option<String>,
        data: String,
    },
    Stderr {
        run_id: Option<String>,
        data: String,
    },
    Media {
        run_id: Option<String>,
        data: MediaData,
    },
    Html {
        run_id: Option<String>,
        data: String,
    },
    WaitingInput {
        run_id: Option<String>,
        #[serde(default)]
        options: Option<serde_json::Value>,
    },
    Finished {
        run_id: Option<String>,
        #[serde(rename = "exitCode")]
        exit_code: Option<i64>,
    },
    Status {
        started_at: f64,
    },
    Error {
        message: String,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct MediaData {
    #[serde(rename = "type")]
    mime: String,
    data: serde_json::Value,
}

/// A frame: the payload's length as 4 big-endian bytes, then the payload.
fn encode_frame(payload: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len()).ok().filter(|&len| len as usize <= MAX_FRAME).ok_or_else(|| {
        Error::invalid("runner request", format!("{} bytes exceed the {MAX_FRAME}-byte frame limit", payload.len()))
    })?;
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    Ok(frame)
}

fn encode_request(request: &Request<'_>) -> Result<Vec<u8>> {
    let payload = serde_json::to_vec(request).map_err(|e| Error::Runner(format!("cannot encode a request: {e}")))?;
    encode_frame(&payload)
}

/// Splits a byte stream into frames.
#[derive(Debug)]
struct FrameDecoder {
    buffer: BytesMut,
    max: usize,
}

impl FrameDecoder {
    fn new(max: usize) -> Self {
        Self { buffer: BytesMut::new(), max }
    }

    fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The next complete frame's payload, `None` until one is complete.
    fn next_frame(&mut self) -> Result<Option<BytesMut>> {
        let Some(header) = self.buffer.get(..4) else { return Ok(None) };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > self.max {
            return Err(Error::Runner(format!("the runner sent a frame of {len} bytes; the limit is {}", self.max)));
        }
        if self.buffer.len() < 4 + len {
            return Ok(None);
        }
        self.buffer.advance(4);
        Ok(Some(self.buffer.split_to(len)))
    }

    /// Bytes of an unfinished frame.
    fn buffered(&self) -> usize {
        self.buffer.len()
    }
}

// ---------------------------------------------------------------------------------------------
// Query mode: the runner
// ---------------------------------------------------------------------------------------------

/// How [`KernelRunner::start_with`] starts the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerConfig {
    /// The Python interpreter inside the container (`python3`).
    pub python: String,
    /// Where to put the runner ([`RUNNER_PATH`]). A relative path is taken from the working
    /// directory (which then defaults to `/home/work`): the process runtime, which only reaches
    /// `/home/work`, runs the runner from there.
    pub runner_path: String,
    /// The user to run as (`uid[:gid]` or a name); the container's default when `None`.
    pub user: Option<String>,
    /// The working directory; the container's when `None`.
    pub working_dir: Option<String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// How long to wait for the runner's `ready` (30 s).
    pub ready_timeout: Duration,
    /// How long a run may take before [`KernelRunner::execute`] reports
    /// [`RunStatus::ExecTimeout`] (and interrupts it); `None` (the default, as for the
    /// original's Docker kernels) for no limit.
    pub exec_timeout: Option<Duration>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            python: "python3".into(),
            runner_path: RUNNER_PATH.into(),
            user: None,
            working_dir: None,
            env: BTreeMap::new(),
            ready_timeout: Duration::from_secs(30),
            exec_timeout: None,
        }
    }
}

/// What the runner reports about itself.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RunnerStatus {
    /// When it started, in seconds since the Unix epoch.
    pub started_at: f64,
}

/// A record queued for a run.
#[derive(Debug)]
enum Record {
    Console(ConsoleItem),
    WaitingInput(Option<serde_json::Value>),
    Finished(i64),
}

/// The records of one run not yet collected.
#[derive(Debug)]
struct RunQueue {
    records: VecDeque<Record>,
    stdout_bytes: usize,
    stderr_bytes: usize,
    started: Instant,
}

impl RunQueue {
    fn new() -> Self {
        Self { records: VecDeque::new(), stdout_bytes: 0, stderr_bytes: 0, started: Instant::now() }
    }

    /// Queues a console record, merged into the last one when both are stdout (or stderr).
    /// Output past the cap, and records past [`RUN_QUEUE_CAP`], are dropped.
    fn push_console(&mut self, item: ConsoleItem) {
        let merge = matches!(
            (self.records.back(), &item),
            (Some(Record::Console(ConsoleItem::Stdout(_))), ConsoleItem::Stdout(_))
                | (Some(Record::Console(ConsoleItem::Stderr(_))), ConsoleItem::Stderr(_))
        );
        if !merge && self.records.len() >= RUN_QUEUE_CAP {
            return;
        }
        let item = match item {
            ConsoleItem::Stdout(text) => match cap_text(text, &mut self.stdout_bytes) {
                Some(text) => ConsoleItem::Stdout(text),
                None => return,
            },
            ConsoleItem::Stderr(text) => match cap_text(text, &mut self.stderr_bytes) {
                Some(text) => ConsoleItem::Stderr(text),
                None => return,
            },
            other => other,
        };
        match (self.records.back_mut(), item) {
            (Some(Record::Console(ConsoleItem::Stdout(last))), ConsoleItem::Stdout(text))
            | (Some(Record::Console(ConsoleItem::Stderr(last))), ConsoleItem::Stderr(text)) => last.push_str(&text),
            (_, item) => self.records.push_back(Record::Console(item)),
        }
    }

    /// The next record; collected output no longer counts against the cap.
    fn pop(&mut self) -> Option<Record> {
        let record = self.records.pop_front()?;
        match &record {
            Record::Console(ConsoleItem::Stdout(text)) => self.stdout_bytes -= text.len().min(self.stdout_bytes),
            Record::Console(ConsoleItem::Stderr(text)) => self.stderr_bytes -= text.len().min(self.stderr_bytes),
            _ => {}
        }
        Some(record)
    }
}

/// Cuts `text` so that `*used` stays within [`OUTPUT_CAP`] (at a character boundary).
fn cap_text(mut text: String, used: &mut usize) -> Option<String> {
    let room = OUTPUT_CAP.saturating_sub(*used);
    if text.len() > room {
        let mut end = room;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    *used += text.len();
    (!text.is_empty()).then_some(text)
}

/// What the reader task and the callers share.
#[derive(Debug, Default)]
struct State {
    /// Queues of runs started and not yet collected to the end.
    runs: HashMap<String, RunQueue>,
    /// The run the runner executes (sent, not finished).
    current: Option<String>,
    /// Finished runs whose `finished` nobody collected yet, oldest first.
    uncollected: VecDeque<String>,
    /// Callers of `status()`, in the order of their requests.
    status_waiters: VecDeque<oneshot::Sender<f64>>,
    /// Why the runner is gone, once it is.
    ended: Option<String>,
    /// The tail of the runner's own stderr.
    diagnostics: String,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Woken (all waiters) on every change of `state`.
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-changed in a way that
        // matters more than losing the runner, so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn end(&self, reason: String) {
        let mut state = self.lock();
        if state.ended.is_none() {
            let diagnostics = state.diagnostics.trim();
            let reason = if diagnostics.is_empty() { reason } else { format!("{reason}; its stderr: {diagnostics}") };
            tracing::debug!(%reason, "kernel runner ended");
            state.ended = Some(reason);
        }
        state.current = None;
        state.status_waiters.clear();
        drop(state);
        self.changed.notify_waiters();
    }

    fn handle(&self, event: Event, ready: &mut Option<oneshot::Sender<f64>>) {
        let mut state = self.lock();
        let console = |state: &mut State, run_id: Option<String>, item: ConsoleItem| {
            // Output outside of any run, or of a run given up on, is dropped.
            if let Some(queue) = run_id.and_then(|id| state.runs.get_mut(&id)) {
                queue.push_console(item);
            }
        };
        match event {
            Event::Ready { started_at } => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(started_at);
                }
            }
            Event::Stdout { run_id, data } => console(&mut state, run_id, ConsoleItem::Stdout(data)),
            Event::Stderr { run_id, data } => console(&mut state, run_id, ConsoleItem::Stderr(data)),
            Event::Html { run_id, data } => console(&mut state, run_id, ConsoleItem::Html(data)),
            Event::Media { run_id, data } => {
                let content = match data.data {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                };
                console(&mut state, run_id, ConsoleItem::Media { mime: data.mime, data: content });
            }
            Event::WaitingInput { run_id, options } => {
                if let Some(queue) = run_id.and_then(|id| state.runs.get_mut(&id)) {
                    queue.records.push_back(Record::WaitingInput(options));
                }
            }
            Event::Finished { run_id, exit_code } => {
                let Some(run_id) = run_id else { return };
                if state.current.as_deref() == Some(run_id.as_str()) {
                    state.current = None;
                }
                if let Some(queue) = state.runs.get_mut(&run_id) {
                    queue.records.push_back(Record::Finished(exit_code.unwrap_or(1)));
                    state.uncollected.push_back(run_id);
                    while state.uncollected.len() > UNCOLLECTED_RUNS_KEPT {
                        if let Some(old) = state.uncollected.pop_front() {
                            state.runs.remove(&old);
                        }
                    }
                }
            }
            Event::Status { started_at } => {
                if let Some(waiter) = state.status_waiters.pop_front() {
                    let _ = waiter.send(started_at);
                }
            }
            Event::Error { message } => tracing::warn!(%message, "the kernel runner rejected a request"),
            Event::Unknown => tracing::debug!("ignoring a kernel runner message of an unknown type"),
        }
        drop(state);
        self.changed.notify_waiters();
    }

    fn note_diagnostics(&self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        tracing::debug!(stderr = %text.trim_end(), "kernel runner");
        let mut state = self.lock();
        state.diagnostics.push_str(&text);
        if state.diagnostics.len() > DIAGNOSTICS_KEPT {
            let mut cut = state.diagnostics.len() - DIAGNOSTICS_KEPT;
            while !state.diagnostics.is_char_boundary(cut) {
                cut += 1;
            }
            state.diagnostics.drain(..cut);
        }
    }
}

/// Reads the runner's output until it ends, feeding `shared`.
async fn read_loop(
    shared: Arc<Shared>,
    mut output: OutputStream,
    mut ready: Option<oneshot::Sender<f64>>,
    probe: Option<(Arc<dyn ContainerRuntime>, String)>,
) {
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    let reason = 'read: loop {
        match output.next().await {
            None => break 'read "the runner's output ended".to_string(),
            Some(Err(err)) => break 'read format!("reading the runner's output failed: {err}"),
            Some(Ok(Output::Stderr(bytes))) => shared.note_diagnostics(&bytes),
            Some(Ok(Output::Stdout(bytes))) => {
                decoder.push(&bytes);
                loop {
                    match decoder.next_frame() {
                        Ok(Some(frame)) => match serde_json::from_slice::<Event>(&frame) {
                            Ok(event) => shared.handle(event, &mut ready),
                            Err(err) => tracing::warn!(%err, "ignoring a malformed kernel runner message"),
                        },
                        Ok(None) => break,
                        Err(err) => break 'read err.to_string(),
                    }
                }
            }
        }
    };
    let mut reason = reason;
    if decoder.buffered() > 0 {
        reason.push_str(&format!(" ({} bytes of an unfinished frame left)", decoder.buffered()));
    }
    if let Some((runtime, exec_id)) = probe {
        if let Ok(Ok(Some(code))) = tokio::time::timeout(Duration::from_secs(2), runtime.exec_exit_code(&exec_id)).await
        {
            reason.push_str(&format!(" (it exited with code {code})"));
        }
    }
    shared.end(reason);
}

/// Writes request frames to the runner's stdin in order; closing the channel closes stdin.
async fn write_loop(
    shared: Arc<Shared>,
    mut stdin: Pin<Box<dyn AsyncWrite + Send>>,
    mut frames: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    while let Some(frame) = frames.recv().await {
        let written = async {
            stdin.write_all(&frame).await?;
            stdin.flush().await
        };
        if let Err(err) = written.await {
            shared.end(format!("writing to the runner failed: {err}"));
            return;
        }
    }
    let _ = stdin.shutdown().await;
}

/// A tar archive holding the runner at `path` (relative to where it is unpacked, e.g.
/// `opt/kernel/bai_runner.py`).
pub fn runner_archive(path: &str) -> Result<Vec<u8>> {
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|part| part == "..") {
        return Err(Error::invalid("runner_path", format!("{path:?} must be a relative path without `..`")));
    }
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(RUNNER_SOURCE.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default());
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_data(&mut header, path, RUNNER_SOURCE.as_bytes()).map_err(|e| Error::io("pack", path, e))?;
    builder.into_inner().map_err(|e| Error::io("pack", path, e))
}

/// The kernel runner of one container, in query mode.
///
/// A background task reads the runner's frames into per-run queues; requests go out through
/// another, so no call can leave half a frame behind when its future is dropped. Dropping the
/// `KernelRunner` stops both tasks and closes the runner's stdin, which ends it.
#[derive(Debug)]
pub struct KernelRunner {
    shared: Arc<Shared>,
    requests: Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>,
    reader: Mutex<Option<JoinHandle<()>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    exec_id: String,
    started_at: f64,
    exec_timeout: Option<Duration>,
}

impl Drop for KernelRunner {
    fn drop(&mut self) {
        for task in [&self.reader, &self.writer] {
            if let Some(task) = task.lock().unwrap_or_else(|p| p.into_inner()).take() {
                task.abort();
            }
        }
    }
}

impl KernelRunner {
    /// Copies the runner into a running container and starts it with the default
    /// [`RunnerConfig`].
    pub async fn start(runtime: Arc<dyn ContainerRuntime>, container_id: &str) -> Result<Self> {
        Self::start_with(runtime, container_id, RunnerConfig::default()).await
    }

    /// Copies the runner into a running container (at [`RunnerConfig::runner_path`]), starts it as an
    /// attached exec (`python3 -u /opt/kernel/bai_runner.py`) and waits for it to be ready.
    pub async fn start_with(
        runtime: Arc<dyn ContainerRuntime>,
        container_id: &str,
        config: RunnerConfig,
    ) -> Result<Self> {
        let mut working_dir = config.working_dir.clone();
        match config.runner_path.strip_prefix('/') {
            Some(path) => runtime.copy_in(container_id, "/", runner_archive(path)?).await?,
            None => {
                let dir = working_dir.get_or_insert_with(|| "/home/work".into());
                runtime.copy_in(container_id, dir, runner_archive(&config.runner_path)?).await?
            }
        }
        let spec = ExecSpec {
            cmd: vec![config.python.clone(), "-u".into(), config.runner_path.clone()],
            env: config.env.clone(),
            working_dir,
            user: config.user.clone(),
            stdin: true,
        };
        let session = runtime.exec(container_id, &spec).await?;
        let probe = Some((runtime, session.id.clone()));
        Self::attach_inner(session, &config, probe).await
    }

    /// Talks to a runner already started with an attached stdin (e.g. by another backend, or
    /// a test), and waits for it to be ready.
    pub async fn attach(session: ExecSession, config: &RunnerConfig) -> Result<Self> {
        Self::attach_inner(session, config, None).await
    }

    async fn attach_inner(
        session: ExecSession,
        config: &RunnerConfig,
        probe: Option<(Arc<dyn ContainerRuntime>, String)>,
    ) -> Result<Self> {
        let ExecSession { id, stdin, output } = session;
        let stdin = stdin.ok_or_else(|| Error::invalid("session.stdin", "the runner needs an attached stdin"))?;
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = oneshot::channel();
        let (requests, frames) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(shared.clone(), output, Some(ready_tx), probe));
        let writer = tokio::spawn(write_loop(shared.clone(), stdin, frames));
        let mut runner = Self {
            shared,
            requests: Mutex::new(Some(requests)),
            reader: Mutex::new(Some(reader)),
            writer: Mutex::new(Some(writer)),
            exec_id: id,
            started_at: 0.0,
            exec_timeout: config.exec_timeout,
        };
        match tokio::time::timeout(config.ready_timeout, ready_rx).await {
            Ok(Ok(started_at)) => {
                runner.started_at = started_at;
                Ok(runner)
            }
            Ok(Err(_)) => Err(Error::Runner(format!(
                "it ended before it was ready: {}",
                runner.shared.lock().ended.clone().unwrap_or_default()
            ))),
            Err(_) => {
                Err(Error::Timeout { operation: "starting the kernel runner", seconds: config.ready_timeout.as_secs() })
            }
        }
    }

    /// The id of the runner's exec.
    pub fn exec_id(&self) -> &str {
        &self.exec_id
    }

    /// When the runner started, in seconds since the Unix epoch.
    pub fn started_at(&self) -> f64 {
        self.started_at
    }

    /// Why the runner is gone, or `None` while it runs.
    pub fn ended(&self) -> Option<String> {
        self.shared.lock().ended.clone()
    }

    fn send(&self, request: &Request<'_>) -> Result<()> {
        let frame = encode_request(request)?;
        let sent = match &*self.requests.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(requests) => requests.send(frame).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.gone())
        }
    }

    fn gone(&self) -> Error {
        let reason = self.shared.lock().ended.clone().unwrap_or_else(|| "it was closed".into());
        Error::Runner(format!("the runner is gone: {reason}"))
    }

    /// Runs code, or continues a run, and gathers its records (see the module docs).
    ///
    /// - [`Mode::Query`] starts a run of `text` under `run_id` (a fresh [`new_run_id`] when
    ///   `None`), first waiting — without a time limit — until the runner has finished the
    ///   current run. A run id whose earlier result was not collected starts afresh.
    /// - [`Mode::Continue`] gathers more of the run `run_id`; `text` is ignored.
    /// - [`Mode::Input`] sends `text` as the answer to the run's `waiting-input`.
    ///
    /// Then it gathers records until the run finishes (`finished`, with its exit code; the
    /// run's queue is gone afterwards) or waits for input (`waiting-input`), or until
    /// `flush_timeout` passes (`continued`; what came so far is returned, the rest is kept).
    ///
    /// Errors: [`Error::Invalid`] for continue or input without a run id, [`Error::NotFound`]
    /// (kind `run`) for a run that is unknown or already collected, [`Error::Runner`] once the
    /// runner is gone (after any records it left were returned).
    ///
    /// Cancel safety: dropping the future while it waits for the current run sends nothing;
    /// once the code is sent, the run goes on and its records stay queued for a
    /// [`Mode::Continue`].
    pub async fn execute(
        &self,
        run_id: Option<String>,
        mode: Mode,
        text: &str,
        flush_timeout: Duration,
    ) -> Result<ExecResult> {
        let run_id = match (mode, run_id) {
            (Mode::Query, run_id) => {
                let run_id = run_id.filter(|id| !id.is_empty()).unwrap_or_else(new_run_id);
                self.begin_run(&run_id, text).await?;
                run_id
            }
            (Mode::Continue | Mode::Input, None) => {
                return Err(Error::invalid("run_id", "continue and input need the id of a started run"))
            }
            (mode, Some(run_id)) => {
                if !self.shared.lock().runs.contains_key(&run_id) {
                    return Err(Error::NotFound { kind: "run", id: run_id });
                }
                if mode == Mode::Input {
                    self.send(&Request::Input { run_id: &run_id, data: text })?;
                }
                run_id
            }
        };
        self.collect(run_id, flush_timeout).await
    }

    /// Waits until no run is going on, then makes `run_id` the current run and sends its code.
    async fn begin_run(&self, run_id: &str, code: &str) -> Result<()> {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = self.shared.lock();
                if state.ended.is_some() {
                    drop(state);
                    return Err(self.gone());
                }
                if state.current.is_none() {
                    state.current = Some(run_id.to_string());
                    state.runs.insert(run_id.to_string(), RunQueue::new());
                    state.uncollected.retain(|id| id != run_id);
                    drop(state);
                    // No await between taking the slot and queueing the code.
                    return self.send(&Request::Code { run_id, code }).inspect_err(|_| {
                        let mut state = self.shared.lock();
                        state.current = None;
                        state.runs.remove(run_id);
                    });
                }
            }
            changed.await;
        }
    }

    async fn collect(&self, run_id: String, flush_timeout: Duration) -> Result<ExecResult> {
        let deadline = Instant::now() + flush_timeout;
        let mut console = Vec::new();
        let result = |status, exit_code, console, options| ExecResult {
            run_id: run_id.clone(),
            status,
            exit_code,
            console,
            options,
        };
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wake_at = {
                let mut state = self.shared.lock();
                let Some(queue) = state.runs.get_mut(&run_id) else {
                    return Err(Error::NotFound { kind: "run", id: run_id });
                };
                while let Some(record) = queue.pop() {
                    match record {
                        Record::Console(item) => push_console(&mut console, item),
                        Record::WaitingInput(options) => {
                            return Ok(result(RunStatus::WaitingInput, None, console, options))
                        }
                        Record::Finished(code) => {
                            state.runs.remove(&run_id);
                            state.uncollected.retain(|id| *id != run_id);
                            return Ok(result(RunStatus::Finished, Some(code), console, None));
                        }
                    }
                }
                let run_deadline = self.exec_timeout.map(|limit| queue.started + limit);
                if let Some(reason) = &state.ended {
                    if console.is_empty() {
                        let error = Error::Runner(format!("the runner is gone: {reason}"));
                        state.runs.remove(&run_id);
                        return Err(error);
                    }
                    return Ok(result(RunStatus::Continued, None, console, None));
                }
                let now = Instant::now();
                if run_deadline.is_some_and(|d| now >= d) {
                    state.runs.remove(&run_id);
                    let running = state.current.as_deref() == Some(run_id.as_str());
                    drop(state);
                    if running {
                        // The original destroys the kernel here; interrupting leaves the choice to the caller.
                        let _ = self.send(&Request::Interrupt);
                    }
                    return Ok(result(RunStatus::ExecTimeout, None, console, None));
                }
                if now >= deadline {
                    return Ok(result(RunStatus::Continued, None, console, None));
                }
                run_deadline.map_or(deadline, |d| d.min(deadline))
            };
            let _ = tokio::time::timeout_at(wake_at, changed).await;
        }
    }

    /// Interrupts the running code (a `KeyboardInterrupt` in it); nothing happens when no code
    /// runs.
    pub async fn interrupt(&self) -> Result<()> {
        self.send(&Request::Interrupt)
    }

    /// Asks the runner how it is (the original's `ping_kernel`), waiting at most `timeout`.
    pub async fn status(&self, timeout: Duration) -> Result<RunnerStatus> {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if state.ended.is_some() {
                drop(state);
                return Err(self.gone());
            }
            state.status_waiters.push_back(tx);
            // Queued under the lock, so replies come back in the order of the waiters.
            self.send(&Request::Status)?;
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(started_at)) => Ok(RunnerStatus { started_at }),
            Ok(Err(_)) => Err(self.gone()),
            Err(_) => Err(Error::Timeout { operation: "kernel runner status", seconds: timeout.as_secs() }),
        }
    }

    /// Stops the runner: asks it to exit, closes its stdin and waits (at most 10 s) for its
    /// output to end. Runs still going are interrupted; their records are lost. Closing twice
    /// does nothing more.
    pub async fn close(&self) -> Result<()> {
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(requests) = requests {
            if let Ok(frame) = encode_request(&Request::Exit) {
                let _ = requests.send(frame);
            }
        }
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
        for task in [writer, reader].into_iter().flatten() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), task).await.is_err() {
                abort.abort();
            }
        }
        self.shared.end("it was closed".into());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use async_trait::async_trait;
    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, DuplexStream};

    use crate::runtime::{ContainerInfo, ContainerSpec, ContainerStats, ImageInfo, PullProgress, Termination};

    // --- codec ---

    #[test]
    fn frames_round_trip_in_any_chunking() {
        let mut stream = Vec::new();
        let payloads: Vec<Vec<u8>> = vec![b"{}".to_vec(), Vec::new(), vec![b'x'; 70_000], "é".as_bytes().to_vec()];
        for payload in &payloads {
            stream.extend(encode_frame(payload).unwrap());
        }
        for chunk in [1, 3, 4, 5, 1000, stream.len()] {
            let mut decoder = FrameDecoder::new(MAX_FRAME);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                decoder.push(piece);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    got.push(frame.to_vec());
                }
            }
            assert_eq!(got, payloads, "chunk size {chunk}");
            assert_eq!(decoder.buffered(), 0);
        }
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut decoder = FrameDecoder::new(10);
        decoder.push(&11u32.to_be_bytes());
        let err = decoder.next_frame().unwrap_err();
        assert!(err.to_string().contains("frame of 11 bytes"), "{err}");
    }

    #[test]
    fn requests_are_tagged_with_op() {
        let frame = encode_request(&Request::Code { run_id: "r", code: "x = 1" }).unwrap();
        assert_eq!(&frame[..4], &(frame.len() as u32 - 4).to_be_bytes());
        assert_eq!(&frame[4..], br#"{"op":"code","run_id":"r","code":"x = 1"}"#);
        assert_eq!(&encode_request(&Request::Interrupt).unwrap()[4..], br#"{"op":"interrupt"}"#);
    }

    #[test]
    fn events_parse_and_unknown_ones_are_tolerated() {
        let event: Event = serde_json::from_str(r#"{"type":"finished","run_id":"r","exitCode":3}"#).unwrap();
        assert!(matches!(event, Event::Finished { exit_code: Some(3), .. }));
        let event: Event = serde_json::from_str(r#"{"type":"ready","started_at":1.5,"pid":7,"version":1}"#).unwrap();
        assert!(matches!(event, Event::Ready { started_at } if started_at == 1.5));
        let event: Event = serde_json::from_str(r#"{"type":"something-new","x":1}"#).unwrap();
        assert!(matches!(event, Event::Unknown));
    }

    #[test]
    fn utf8_split_between_chunks_is_kept_whole() {
        let text = "aé€😀b".as_bytes();
        for split in 0..text.len() {
            let mut decoder = Utf8Decoder::default();
            let mut out = decoder.decode(&text[..split]);
            out += &decoder.decode(&text[split..]);
            out += &decoder.finish();
            assert_eq!(out, "aé€😀b", "split at {split}");
        }
        let mut decoder = Utf8Decoder::default();
        assert_eq!(decoder.decode(b"a\xffb"), "a\u{fffd}b");
        assert_eq!(decoder.decode(b"\xe2\x82"), "");
        assert_eq!(decoder.finish(), "\u{fffd}");
    }

    // --- results ---

    #[test]
    fn console_merges_consecutive_streams_and_serialises_as_pairs() {
        let mut console = Vec::new();
        for item in [
            ConsoleItem::Stdout("a".into()),
            ConsoleItem::Stdout("b".into()),
            ConsoleItem::Stderr("c".into()),
            ConsoleItem::Stderr("d".into()),
            ConsoleItem::Media { mime: "image/png".into(), data: "AAA=".into() },
            ConsoleItem::Stdout("e".into()),
            ConsoleItem::Html("<b>f</b>".into()),
            ConsoleItem::Html("<i>g</i>".into()),
        ] {
            push_console(&mut console, item);
        }
        let json = serde_json::to_string(&console).unwrap();
        assert_eq!(
            json,
            r#"[["stdout","ab"],["stderr","cd"],["media",["image/png","AAA="]],["stdout","e"],["html","<b>f</b>"],["html","<i>g</i>"]]"#
        );
        let back: Vec<ConsoleItem> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, console);
        assert!(serde_json::from_str::<ConsoleItem>(r#"["video", "x"]"#).is_err());
    }

    #[test]
    fn results_use_the_v2_shape() {
        let result = ExecResult {
            run_id: "r1".into(),
            status: RunStatus::WaitingInput,
            exit_code: None,
            console: vec![ConsoleItem::Stdout("name? ".into())],
            options: Some(serde_json::json!({"is_password": false})),
        };
        assert_eq!(
            serde_json::to_value(&result).unwrap(),
            serde_json::json!({
                "runId": "r1", "status": "waiting-input", "exitCode": null,
                "console": [["stdout", "name? "]], "options": {"is_password": false},
            })
        );
        let batch =
            BatchResult { build_exit_code: Some(0), exit_code: Some(3), console: vec![], status: RunStatus::Finished };
        assert_eq!(
            serde_json::to_value(&batch).unwrap(),
            serde_json::json!({"buildExitCode": 0, "exitCode": 3, "console": [], "status": "finished"})
        );
        assert_eq!("continue".parse::<Mode>().unwrap(), Mode::Continue);
        assert!("batch".parse::<Mode>().unwrap_err().to_string().contains("query, continue, input"));
    }

    #[test]
    fn run_ids_are_32_hex_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_run_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }

    #[test]
    fn output_is_capped_per_stream_at_a_char_boundary() {
        let mut collector = ConsoleCollector::new(5);
        collector.push(&Output::Stdout(Bytes::from_static(b"abc")));
        collector.push(&Output::Stderr(Bytes::from_static(b"12345678")));
        collector.push(&Output::Stdout(Bytes::from_static(b"defgh")));
        assert_eq!(
            collector.finish(),
            vec![
                ConsoleItem::Stdout("abc".into()),
                ConsoleItem::Stderr("12345".into()),
                ConsoleItem::Stdout("de".into())
            ]
        );

        let mut used = OUTPUT_CAP - 1;
        assert_eq!(cap_text("éa".into(), &mut used), None);
        let mut used = OUTPUT_CAP - 2;
        assert_eq!(cap_text("éa".into(), &mut used).as_deref(), Some("é"));
    }

    #[test]
    fn a_run_queue_merges_caps_and_frees_room_when_collected() {
        let mut queue = RunQueue::new();
        queue.push_console(ConsoleItem::Stdout("a".into()));
        queue.push_console(ConsoleItem::Stdout("b".into()));
        queue.push_console(ConsoleItem::Stderr("c".into()));
        assert_eq!(queue.records.len(), 2);
        queue.push_console(ConsoleItem::Stdout("x".repeat(OUTPUT_CAP)));
        assert_eq!((queue.stdout_bytes, queue.stderr_bytes), (OUTPUT_CAP, 1));
        queue.push_console(ConsoleItem::Stdout("dropped".into()));
        assert!(matches!(queue.pop(), Some(Record::Console(ConsoleItem::Stdout(text))) if text == "ab"));
        assert!(matches!(queue.pop(), Some(Record::Console(ConsoleItem::Stderr(_)))));
        assert!(
            matches!(queue.pop(), Some(Record::Console(ConsoleItem::Stdout(text))) if text.len() == OUTPUT_CAP - 2)
        );
        assert_eq!((queue.stdout_bytes, queue.stderr_bytes), (0, 0));
        queue.push_console(ConsoleItem::Stdout("room again".into()));
        assert_eq!(queue.records.len(), 1);

        // Past the record cap only output that merges into the last record is kept.
        let mut queue = RunQueue::new();
        for i in 0..=RUN_QUEUE_CAP {
            queue.push_console(if i % 2 == 0 {
                ConsoleItem::Stdout("o".into())
            } else {
                ConsoleItem::Stderr("e".into())
            });
        }
        assert_eq!(queue.records.len(), RUN_QUEUE_CAP);
        assert_eq!(queue.stdout_bytes + queue.stderr_bytes, RUN_QUEUE_CAP);
        queue.records.push_back(Record::Finished(0));
        assert_eq!(queue.records.len(), RUN_QUEUE_CAP + 1);
    }

    #[test]
    fn the_runner_archive_holds_the_runner() {
        assert!(runner_archive("/opt/x.py").is_err());
        assert!(runner_archive("a/../../x.py").is_err());
        let archive = runner_archive("opt/kernel/bai_runner.py").unwrap();
        let mut archive = tar::Archive::new(archive.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("opt/kernel/bai_runner.py"));
        assert_eq!(entry.header().mode().unwrap(), 0o644);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        assert_eq!(text, RUNNER_SOURCE);
        assert!(entries.next().is_none());
    }

    // --- a scripted runner over in-memory streams ---

    /// The test's side of a runner: reads requests, writes events.
    struct FakeRunner {
        requests: DuplexStream,
        events: mpsc::UnboundedSender<Result<Output>>,
    }

    impl FakeRunner {
        fn emit(&self, event: serde_json::Value) {
            let frame = encode_frame(event.to_string().as_bytes()).unwrap();
            // Split every frame in two to exercise reassembly.
            let (a, b) = frame.split_at(frame.len() / 2);
            for part in [a, b] {
                let _ = self.events.send(Ok(Output::Stdout(Bytes::copy_from_slice(part))));
            }
        }

        async fn request(&mut self) -> serde_json::Value {
            let mut header = [0u8; 4];
            self.requests.read_exact(&mut header).await.unwrap();
            let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
            self.requests.read_exact(&mut payload).await.unwrap();
            serde_json::from_slice(&payload).unwrap()
        }

        fn out(&self, run_id: &str, text: &str) {
            self.emit(serde_json::json!({"type": "stdout", "run_id": run_id, "data": text}));
        }

        fn finish(&self, run_id: &str, code: i64) {
            self.emit(serde_json::json!({"type": "finished", "run_id": run_id, "exitCode": code}));
        }
    }

    fn fake_session() -> (ExecSession, FakeRunner) {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (events, rx) = mpsc::unbounded_channel();
        let output = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        let session = ExecSession { id: "exec-1".into(), stdin: Some(Box::pin(ours)), output: Box::pin(output) };
        (session, FakeRunner { requests: theirs, events })
    }

    async fn started() -> (KernelRunner, FakeRunner) {
        let (session, fake) = fake_session();
        fake.emit(serde_json::json!({"type": "ready", "started_at": 12.5, "pid": 1, "version": 1}));
        let runner = KernelRunner::attach(session, &RunnerConfig::default()).await.unwrap();
        (runner, fake)
    }

    const LONG: Duration = Duration::from_secs(30);
    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_query_gathers_merged_records_until_finished() {
        let (runner, mut fake) = started().await;
        assert_eq!(runner.started_at(), 12.5);
        let script = tokio::spawn(async move {
            let request = fake.request().await;
            assert_eq!(request["op"], "code");
            assert_eq!(request["code"], "print(42)");
            let id = request["run_id"].as_str().unwrap().to_string();
            fake.out("someone-else", "dropped");
            fake.out(&id, "4");
            fake.out(&id, "2\n");
            fake.emit(serde_json::json!({"type": "stderr", "run_id": id, "data": "warning\n"}));
            fake.emit(
                serde_json::json!({"type": "media", "run_id": id, "data": {"type": "image/svg+xml", "data": "<svg/>"}}),
            );
            fake.out(&id, "done\n");
            fake.finish(&id, 0);
            fake
        });
        let result = runner.execute(None, Mode::Query, "print(42)", LONG).await.unwrap();
        assert_eq!(result.status, RunStatus::Finished);
        assert_eq!(result.exit_code, Some(0));
        assert_eq!(result.run_id.len(), 32);
        assert_eq!(
            result.console,
            vec![
                ConsoleItem::Stdout("42\n".into()),
                ConsoleItem::Stderr("warning\n".into()),
                ConsoleItem::Media { mime: "image/svg+xml".into(), data: "<svg/>".into() },
                ConsoleItem::Stdout("done\n".into()),
            ]
        );
        // The run is collected: continuing it is an error.
        let err = runner.execute(Some(result.run_id.clone()), Mode::Continue, "", SHORT).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { kind: "run", .. }), "{err}");
        drop(script.await.unwrap());
    }

    #[tokio::test]
    async fn a_long_run_is_continued_and_keeps_its_records() {
        let (runner, mut fake) = started().await;
        let request = tokio::spawn(async move {
            let request = fake.request().await;
            (fake, request)
        });
        let first = runner.execute(Some("r1".into()), Mode::Query, "loop()", SHORT).await.unwrap();
        assert_eq!((first.status, first.exit_code, first.console.len()), (RunStatus::Continued, None, 0));
        let (fake, request) = request.await.unwrap();
        assert_eq!(request["run_id"], "r1");
        fake.out("r1", "tick\n");
        let second = runner.execute(Some("r1".into()), Mode::Continue, "", SHORT).await.unwrap();
        assert_eq!(second.status, RunStatus::Continued);
        assert_eq!(second.console, vec![ConsoleItem::Stdout("tick\n".into())]);
        fake.out("r1", "tock\n");
        fake.finish("r1", 0);
        let third = runner.execute(Some("r1".into()), Mode::Continue, "", LONG).await.unwrap();
        assert_eq!((third.status, third.exit_code), (RunStatus::Finished, Some(0)));
        assert_eq!(third.console, vec![ConsoleItem::Stdout("tock\n".into())]);
    }

    #[tokio::test]
    async fn input_round_trip() {
        let (runner, mut fake) = started().await;
        let script = tokio::spawn(async move {
            let request = fake.request().await;
            let id = request["run_id"].as_str().unwrap().to_string();
            fake.out(&id, "name? ");
            fake.emit(serde_json::json!({"type": "waiting-input", "run_id": id, "options": {"is_password": false}}));
            let answer = fake.request().await;
            assert_eq!(answer, serde_json::json!({"op": "input", "run_id": id, "data": "bob"}));
            fake.out(&id, "hello bob\n");
            fake.finish(&id, 0);
            fake
        });
        let asked = runner.execute(Some("r".into()), Mode::Query, "input()", LONG).await.unwrap();
        assert_eq!(asked.status, RunStatus::WaitingInput);
        assert_eq!(asked.options, Some(serde_json::json!({"is_password": false})));
        assert_eq!(asked.console, vec![ConsoleItem::Stdout("name? ".into())]);
        let done = runner.execute(Some("r".into()), Mode::Input, "bob", LONG).await.unwrap();
        assert_eq!((done.status, done.exit_code), (RunStatus::Finished, Some(0)));
        assert_eq!(done.console, vec![ConsoleItem::Stdout("hello bob\n".into())]);
        drop(script.await.unwrap());
    }

    #[tokio::test]
    async fn a_new_run_waits_for_the_current_one() {
        let (runner, mut fake) = started().await;
        let runner = Arc::new(runner);
        let first = runner.execute(Some("a".into()), Mode::Query, "slow()", SHORT).await.unwrap();
        assert_eq!(first.status, RunStatus::Continued);
        assert_eq!(fake.request().await["run_id"], "a");

        let second = tokio::spawn({
            let runner = runner.clone();
            async move { runner.execute(Some("b".into()), Mode::Query, "fast()", LONG).await }
        });
        // While "a" runs, "b" is not sent: the next request the runner sees is the interrupt.
        tokio::time::sleep(SHORT).await;
        runner.interrupt().await.unwrap();
        assert_eq!(fake.request().await, serde_json::json!({"op": "interrupt"}));
        fake.finish("a", 1);
        let request = fake.request().await;
        assert_eq!(request["run_id"], "b");
        fake.out("b", "b!");
        fake.finish("b", 0);
        let second = second.await.unwrap().unwrap();
        assert_eq!((second.status, second.exit_code), (RunStatus::Finished, Some(0)));
        assert_eq!(second.console, vec![ConsoleItem::Stdout("b!".into())]);
        // "a"'s end is still there for whoever continues it.
        let first = runner.execute(Some("a".into()), Mode::Continue, "", LONG).await.unwrap();
        assert_eq!((first.status, first.exit_code), (RunStatus::Finished, Some(1)));
    }

    #[tokio::test]
    async fn continue_and_input_need_a_known_run() {
        let (runner, _fake) = started().await;
        let err = runner.execute(None, Mode::Continue, "", SHORT).await.unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
        let err = runner.execute(Some("nope".into()), Mode::Input, "x", SHORT).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { kind: "run", .. }), "{err}");
    }

    #[tokio::test]
    async fn status_is_answered_in_order() {
        let (runner, mut fake) = started().await;
        let script = tokio::spawn(async move {
            assert_eq!(fake.request().await, serde_json::json!({"op": "status"}));
            fake.emit(serde_json::json!({"type": "status", "started_at": 12.5}));
            fake
        });
        assert_eq!(runner.status(LONG).await.unwrap(), RunnerStatus { started_at: 12.5 });
        drop(script.await.unwrap());
    }

    #[tokio::test]
    async fn a_dying_runner_fails_its_runs_with_its_stderr() {
        let (runner, mut fake) = started().await;
        let run = runner.execute(Some("r".into()), Mode::Query, "crash()", SHORT).await.unwrap();
        assert_eq!(run.status, RunStatus::Continued);
        fake.request().await;
        fake.out("r", "last words\n");
        let _ = fake.events.send(Ok(Output::Stderr(Bytes::from_static(b"Segmentation fault\n"))));
        drop(fake);
        let left = runner.execute(Some("r".into()), Mode::Continue, "", LONG).await.unwrap();
        assert_eq!(left.console, vec![ConsoleItem::Stdout("last words\n".into())]);
        let err = runner.execute(Some("r".into()), Mode::Continue, "", LONG).await.unwrap_err();
        assert!(err.to_string().contains("Segmentation fault"), "{err}");
        let err = runner.execute(None, Mode::Query, "1", LONG).await.unwrap_err();
        assert!(matches!(err, Error::Runner(_)), "{err}");
        assert!(runner.ended().is_some());
    }

    #[tokio::test]
    async fn a_runner_that_never_gets_ready_times_out() {
        let (session, fake) = fake_session();
        let config = RunnerConfig { ready_timeout: SHORT, ..RunnerConfig::default() };
        let err = KernelRunner::attach(session, &config).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        drop(fake);

        let (session, fake) = fake_session();
        let _ = fake.events.send(Ok(Output::Stderr(Bytes::from_static(b"python3: not found\n"))));
        drop(fake);
        let err = KernelRunner::attach(session, &RunnerConfig::default()).await.unwrap_err();
        assert!(err.to_string().contains("python3: not found"), "{err}");
    }

    #[tokio::test]
    async fn exec_timeout_abandons_the_run() {
        let (session, mut fake) = fake_session();
        fake.emit(serde_json::json!({"type": "ready", "started_at": 1.0}));
        let config = RunnerConfig { exec_timeout: Some(SHORT), ..RunnerConfig::default() };
        let runner = KernelRunner::attach(session, &config).await.unwrap();
        let result = runner.execute(Some("r".into()), Mode::Query, "while True: pass", LONG).await.unwrap();
        assert_eq!((result.status, result.exit_code), (RunStatus::ExecTimeout, None));
        assert_eq!(fake.request().await["op"], "code");
        assert_eq!(fake.request().await["op"], "interrupt");
    }

    #[tokio::test]
    async fn close_asks_the_runner_to_exit() {
        let (runner, mut fake) = started().await;
        let script = tokio::spawn(async move {
            assert_eq!(fake.request().await, serde_json::json!({"op": "exit"}));
            drop(fake); // the runner exits: its output ends
        });
        runner.close().await.unwrap();
        script.await.unwrap();
        assert!(matches!(runner.interrupt().await.unwrap_err(), Error::Runner(_)));
        runner.close().await.unwrap();
    }

    // --- batch mode against a scripted engine ---

    /// Answers each exec with the next scripted output and exit code, and records the commands.
    #[derive(Default)]
    struct ScriptedEngine {
        script: Mutex<VecDeque<(Vec<Output>, Option<i64>)>>,
        commands: Mutex<Vec<Vec<String>>>,
        codes: Mutex<HashMap<String, Option<i64>>>,
    }

    fn unsupported<T>() -> Result<T> {
        Err(Error::invalid("operation", "not scripted"))
    }

    #[async_trait]
    impl ContainerRuntime for ScriptedEngine {
        fn name(&self) -> &'static str {
            "scripted"
        }
        async fn create(&self, _: &ContainerSpec) -> Result<String> {
            unsupported()
        }
        async fn start(&self, _: &str) -> Result<()> {
            unsupported()
        }
        async fn stop(&self, _: &str, _: Duration) -> Result<()> {
            unsupported()
        }
        async fn destroy(&self, _: &str) -> Result<()> {
            unsupported()
        }
        async fn inspect(&self, _: &str) -> Result<ContainerInfo> {
            unsupported()
        }
        async fn list(&self, _: &[(&str, Option<&str>)]) -> Result<Vec<ContainerInfo>> {
            unsupported()
        }
        async fn wait(&self, _: &str) -> Result<Termination> {
            unsupported()
        }
        async fn exec(&self, _: &str, spec: &ExecSpec) -> Result<ExecSession> {
            let mut commands = self.commands.lock().unwrap();
            commands.push(spec.cmd.clone());
            let id = format!("exec-{}", commands.len());
            let (outputs, code) = self.script.lock().unwrap().pop_front().unwrap_or_default();
            self.codes.lock().unwrap().insert(id.clone(), code);
            let output = futures::stream::iter(outputs.into_iter().map(Ok));
            // A step without an exit code never ends.
            let output: OutputStream =
                if code.is_some() { Box::pin(output) } else { Box::pin(output.chain(futures::stream::pending())) };
            Ok(ExecSession { id, stdin: None, output })
        }
        async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>> {
            Ok(self.codes.lock().unwrap().get(exec_id).copied().flatten())
        }
        async fn logs(&self, _: &str) -> Result<Vec<u8>> {
            unsupported()
        }
        async fn stats(&self, _: &str) -> Result<ContainerStats> {
            unsupported()
        }
        async fn copy_in(&self, _: &str, _: &str, _: Vec<u8>) -> Result<()> {
            unsupported()
        }
        async fn copy_out(&self, _: &str, _: &str) -> Result<Vec<u8>> {
            unsupported()
        }
        async fn pull_image(&self, _: &str, _: &(dyn Fn(PullProgress) + Send + Sync)) -> Result<()> {
            unsupported()
        }
        async fn list_images(&self) -> Result<Vec<ImageInfo>> {
            unsupported()
        }
        async fn inspect_image(&self, _: &str) -> Result<ImageInfo> {
            unsupported()
        }
        async fn remove_image(&self, _: &str) -> Result<()> {
            unsupported()
        }
    }

    fn scripted(script: Vec<(Vec<Output>, Option<i64>)>) -> ScriptedEngine {
        ScriptedEngine { script: Mutex::new(script.into()), ..ScriptedEngine::default() }
    }

    fn out(text: &'static str) -> Output {
        Output::Stdout(Bytes::from_static(text.as_bytes()))
    }

    #[tokio::test]
    async fn batch_runs_build_then_exec() {
        let engine = scripted(vec![
            (vec![out("built\n")], Some(0)),
            (vec![out("hi\n"), Output::Stderr(Bytes::from_static(b"oops\n"))], Some(3)),
        ]);
        let result = run_batch(&engine, "c", Some("make"), "echo hi; exit 3", None).await.unwrap();
        assert_eq!(result.status, RunStatus::Finished);
        assert_eq!((result.build_exit_code, result.exit_code), (Some(0), Some(3)));
        assert_eq!(
            result.console,
            vec![ConsoleItem::Stdout("built\nhi\n".into()), ConsoleItem::Stderr("oops\n".into())]
        );
        let commands = engine.commands.lock().unwrap().clone();
        assert_eq!(commands, vec![vec!["sh", "-c", "make"], vec!["sh", "-c", "echo hi; exit 3"]]);
    }

    #[tokio::test]
    async fn a_failed_build_skips_the_command() {
        let engine = scripted(vec![(vec![out("error\n")], Some(2))]);
        let result = run_batch(&engine, "c", Some("*"), "./main", None).await.unwrap();
        assert_eq!((result.build_exit_code, result.exit_code), (Some(2), Some(2)));
        assert_eq!(engine.commands.lock().unwrap().len(), 1);
        assert!(engine.commands.lock().unwrap()[0][2].contains("Makefile"));

        let engine = scripted(vec![]);
        let result = run_batch(&engine, "c", Some("  "), "", None).await.unwrap();
        assert_eq!((result.build_exit_code, result.exit_code, result.status), (None, Some(0), RunStatus::Finished));
        assert!(engine.commands.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_batch_past_its_timeout_is_exec_timeout() {
        let engine = scripted(vec![(vec![out("started\n")], None)]);
        let result = run_batch(&engine, "c", None, "sleep 100", Some(SHORT)).await.unwrap();
        assert_eq!((result.status, result.exit_code), (RunStatus::ExecTimeout, None));
        assert_eq!(result.console, vec![ConsoleItem::Stdout("started\n".into())]);
    }
}
