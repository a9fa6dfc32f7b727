//! The client from Python: `bai.Client` (blocking calls) and `bai.AsyncClient` (coroutines),
//! over [`bai_client`].
//!
//! Every call is a future run on one tokio runtime shared by all clients of the process,
//! created the first time a client needs it ([`runtime`]). A blocking call spawns its future on
//! the runtime and waits for the answer with the GIL released, taking the GIL back every
//! [`SIGNAL_CHECK`] to run Python's signal handlers (so Ctrl-C interrupts it; the future is
//! then dropped, which cancels the request). A coroutine is the same future turned into an
//! asyncio awaitable by `pyo3-async-runtimes`, on the same runtime.
//!
//! Results are plain Python objects (dicts, lists, str, int, None) made from the SDK's serde
//! types, so their keys are the SDK's field names. Progress and event callbacks run on the
//! runtime's threads with the GIL taken for each call; an exception they raise is re-raised by
//! the call when it ends. Errors are the `bai.errors.ClientError` classes ([`errors::client`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path as FsPath, PathBuf};
use std::pin::Pin;
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use bai_client::{
    Client, Config, EventScope, EventStream, ExecItem, ExecRequest, Execution, NewUser, NewVFolder, SessionEvent,
    SessionSpec, SessionType, StatusFilter,
};
use futures::StreamExt;
use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::Serialize;
use serde_json::{json, Value};

use crate::convert::{self, datetime_text, is_decimal};
use crate::errors;
use crate::slots::PyBinarySize;

/// How often a blocking call takes the GIL back to check for signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// The runtime every client call runs on, created on first use and shared with
/// `pyo3-async-runtimes` (so coroutines run on it too).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static BRIDGED: Once = Once::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("bai-client")
            .build()
            .expect("cannot start the bai client's tokio runtime")
    });
    BRIDGED.call_once(|| {
        // fails only if pyo3-async-runtimes already has a runtime, which is then used instead
        let _ = pyo3_async_runtimes::tokio::init_with_runtime(runtime);
    });
    runtime
}

/// Registers the client's classes on the native module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyClient>()?;
    m.add_class::<PyAsyncClient>()?;
    m.add_class::<PyExecution>()?;
    m.add_class::<PyAsyncExecution>()?;
    m.add_class::<PyEvents>()?;
    m.add_class::<PyAsyncEvents>()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Running futures

/// Why a call failed: the client's error, or a Python exception (from a callback, or raised
/// while converting).
pub(crate) enum Fail {
    Client(bai_client::Error),
    Py(PyErr),
}

impl From<bai_client::Error> for Fail {
    fn from(err: bai_client::Error) -> Self {
        Self::Client(err)
    }
}

impl From<PyErr> for Fail {
    fn from(err: PyErr) -> Self {
        Self::Py(err)
    }
}

impl From<Fail> for PyErr {
    fn from(fail: Fail) -> Self {
        match fail {
            Fail::Client(err) => errors::client(err),
            Fail::Py(err) => err,
        }
    }
}

/// A call's future, answering JSON.
type Call = Pin<Box<dyn Future<Output = Result<Value, Fail>> + Send>>;

fn call(fut: impl Future<Output = Result<Value, Fail>> + Send + 'static) -> Call {
    Box::pin(fut)
}

/// A serde value as JSON (the SDK's types always serialise).
fn ser<T: Serialize>(value: T) -> Result<Value, Fail> {
    serde_json::to_value(value).map_err(|e| Fail::Py(PyRuntimeError::new_err(e.to_string())))
}

/// A folder as JSON, its keys in snake case (the SDK keeps the wire's `numFiles`).
fn vfolder_json<T: Serialize>(value: T) -> Result<Value, Fail> {
    fn fix(folder: &mut Value) {
        if let Some(map) = folder.as_object_mut() {
            if let Some(n) = map.remove("numFiles") {
                map.insert("num_files".into(), n);
            }
        }
    }
    let mut value = ser(value)?;
    match &mut value {
        Value::Array(items) => items.iter_mut().for_each(fix),
        other => fix(other),
    }
    Ok(value)
}

/// Runs `fut` on the shared runtime and waits for it with the GIL released, checking for
/// signals every [`SIGNAL_CHECK`]; an exception from a signal handler cancels the future.
fn wait<T: Send + 'static>(py: Python<'_>, fut: impl Future<Output = Result<T, Fail>> + Send + 'static) -> PyResult<T> {
    let (tx, mut rx) = sync_channel(1);
    let task = runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    loop {
        let (back, got) = py.detach(move || {
            let got = rx.recv_timeout(SIGNAL_CHECK);
            (rx, got)
        });
        rx = back;
        match got {
            Ok(result) => return result.map_err(PyErr::from),
            Err(RecvTimeoutError::Timeout) => {
                if let Err(interrupted) = py.check_signals() {
                    task.abort();
                    return Err(interrupted);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err("the bai client's task ended without an answer (it panicked)"))
            }
        }
    }
}

/// JSON turned into Python objects when an awaitable completes.
struct Json(Value);

impl<'py> IntoPyObject<'py> for Json {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::to_py(py, &self.0)
    }
}

/// `fut` as an asyncio awaitable on the running event loop.
fn spawn<'py>(py: Python<'py>, fut: Call) -> PyResult<Bound<'py, PyAny>> {
    runtime();
    pyo3_async_runtimes::tokio::future_into_py(py, async move { fut.await.map(Json).map_err(PyErr::from) })
}

// ---------------------------------------------------------------------------------------------
// Arguments

/// `str(obj)`, for names and ids given as `str` or `uuid.UUID`.
fn text(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(obj.str()?.to_cow()?.into_owned())
}

/// An amount as the API takes it: exact bytes (`"4294967296b"`) for a `BinarySize`, else
/// `str(value)`.
fn amount_text(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(size) = obj.cast::<PyBinarySize>() {
        return Ok(format!("{}b", size.get().0.bytes()));
    }
    text(obj)
}

/// A mapping of names to amounts or strings.
fn str_map(obj: Option<&Bound<'_, PyAny>>) -> PyResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(obj) = obj.filter(|o| !o.is_none()) else { return Ok(out) };
    for pair in obj.call_method0("items")?.try_iter()? {
        let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
        out.insert(text(&key)?, amount_text(&value)?);
    }
    Ok(out)
}

/// A `str` or an iterable of them, as a list.
fn str_list(obj: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if obj.is_instance_of::<PyString>() {
        return Ok(vec![text(obj)?]);
    }
    obj.try_iter()?.map(|item| text(&item?)).collect()
}

/// A local path (`str` or `os.PathLike`).
fn path_arg(obj: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    obj.extract::<PathBuf>()
}

fn base_name(path: &FsPath) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Which sessions a listing returns: `"active"`, `"running"`, `"dead"`, `"all"`, one status
/// name or a list of them.
fn status_filter(obj: Option<&Bound<'_, PyAny>>) -> PyResult<StatusFilter> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else { return Ok(StatusFilter::Active) };
    if obj.is_instance_of::<PyString>() {
        let name = text(obj)?;
        return Ok(match name.to_ascii_lowercase().as_str() {
            "active" => StatusFilter::Active,
            "running" => StatusFilter::Running,
            "dead" => StatusFilter::Dead,
            "all" => StatusFilter::All,
            _ => StatusFilter::Only(vec![name]),
        });
    }
    Ok(StatusFilter::Only(str_list(obj)?))
}

fn invalid(field: &str, reason: impl Into<String>) -> PyErr {
    errors::client(bai_client::Error::InvalidInput { field: field.into(), reason: reason.into() })
}

/// Plain Python data (None, bool, int, float, str, lists, tuples, dicts; UUIDs, Decimals and
/// datetimes as text) as JSON, for GraphQL variables.
fn plain_json(obj: &Bound<'_, PyAny>, at: &str) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(n) = obj.extract::<i64>() {
            return Ok(Value::from(n));
        }
        return obj
            .extract::<u64>()
            .map(Value::from)
            .map_err(|_| invalid(at, format!("integer {obj} is out of range")));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return serde_json::Number::from_f64(f.value())
            .map(Value::Number)
            .ok_or_else(|| invalid(at, format!("{} is not a finite number", f.value())));
    }
    if obj.is_instance_of::<PyString>() {
        return Ok(Value::String(text(obj)?));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut out = serde_json::Map::new();
        for (key, value) in dict.iter() {
            let key = text(&key)?;
            let value = plain_json(&value, &format!("{at}.{key}"))?;
            out.insert(key, value);
        }
        return Ok(Value::Object(out));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for (i, item) in obj.try_iter()?.enumerate() {
            out.push(plain_json(&item?, &format!("{at}[{i}]"))?);
        }
        return Ok(Value::Array(out));
    }
    if let Some(time) = datetime_text(obj)? {
        return Ok(Value::String(time));
    }
    let type_name = obj.get_type().name()?.to_string();
    if is_decimal(obj)? || type_name == "UUID" {
        return Ok(Value::String(text(obj)?));
    }
    Err(invalid(at, format!("cannot send a value of type {type_name} as JSON")))
}

/// A Python callable as a progress callback `(done, total)`. The first exception it raises is
/// kept (and later calls skipped); [`Callback::check`] returns it when the call ends.
#[derive(Clone)]
struct Callback {
    func: Arc<Py<PyAny>>,
    error: Arc<Mutex<Option<PyErr>>>,
}

impl Callback {
    fn new(func: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Self>> {
        let Some(func) = func.filter(|f| !f.is_none()) else { return Ok(None) };
        if !func.is_callable() {
            return Err(invalid("callback", format!("{} is not callable", func.repr()?)));
        }
        Ok(Some(Self { func: Arc::new(func.clone().unbind()), error: Arc::default() }))
    }

    fn call(&self, args: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyTuple>>) {
        let mut error = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if error.is_some() {
            return;
        }
        Python::attach(|py| {
            if let Err(e) = args(py).and_then(|args| self.func.bind(py).call1(args)) {
                *error = Some(e);
            }
        });
    }

    fn progress(&self, done: u64, total: u64) {
        self.call(|py| PyTuple::new(py, [done, total]));
    }

    fn check(this: &Option<Self>) -> Result<(), Fail> {
        match this.as_ref().and_then(|cb| cb.error.lock().unwrap_or_else(|p| p.into_inner()).take()) {
            Some(err) => Err(Fail::Py(err)),
            None => Ok(()),
        }
    }
}

/// Runs a folder transfer with an optional progress callback.
async fn with_progress<F, Fut>(progress: Option<Callback>, run: F) -> Result<Value, Fail>
where
    F: FnOnce(Arc<dyn Fn(u64, u64) + Send + Sync>) -> Fut,
    Fut: Future<Output = bai_client::Result<u64>>,
{
    let report: Arc<dyn Fn(u64, u64) + Send + Sync> = match progress.clone() {
        Some(cb) => Arc::new(move |done, total| cb.progress(done, total)),
        None => Arc::new(|_, _| {}),
    };
    let bytes = run(report).await;
    Callback::check(&progress)?;
    Ok(Value::from(bytes?))
}

fn make_client(
    endpoint: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    domain: Option<String>,
    group: Option<String>,
    max_retries: Option<u32>,
) -> PyResult<Client> {
    let mut config = Config::load().map_err(errors::client)?;
    if let Some(endpoint) = endpoint {
        config.endpoints = Config::new(&endpoint, "", "").map_err(errors::client)?.endpoints;
    }
    if let Some(v) = access_key {
        config.access_key = v;
    }
    if let Some(v) = secret_key {
        config.secret_key = v;
    }
    if let Some(v) = domain {
        config.domain = v;
    }
    if let Some(v) = group {
        config.group = v;
    }
    if let Some(v) = max_retries {
        config.max_retries = v;
    }
    Client::new(config).map_err(errors::client)
}

fn repr(kind: &str, client: &Client) -> String {
    format!("bai.{kind}(endpoint={:?}, access_key={:?})", client.endpoint().as_str(), client.config().access_key)
}

// ---------------------------------------------------------------------------------------------
// Executions and event streams

/// An execution, connected on first use.
enum ExecState {
    Pending { client: Client, session: String, request: ExecRequest },
    Open(Box<Execution>),
    Closed,
}

struct ExecInner {
    state: tokio::sync::Mutex<ExecState>,
    exit_code: Mutex<Option<i64>>,
}

impl ExecInner {
    fn new(client: Client, session: String, request: ExecRequest) -> Arc<Self> {
        Arc::new(Self {
            state: tokio::sync::Mutex::new(ExecState::Pending { client, session, request }),
            exit_code: Mutex::new(None),
        })
    }

    async fn connect(state: &mut ExecState) -> Result<(), Fail> {
        if let ExecState::Pending { client, session, request } = state {
            match client.execute(session, request).await {
                Ok(execution) => *state = ExecState::Open(Box::new(execution)),
                Err(e) => {
                    *state = ExecState::Closed;
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    async fn open(self: Arc<Self>) -> Result<(), Fail> {
        Self::connect(&mut *self.state.lock().await).await
    }

    async fn next(self: Arc<Self>) -> Result<Option<ExecItem>, Fail> {
        let mut state = self.state.lock().await;
        Self::connect(&mut state).await?;
        let ExecState::Open(execution) = &mut *state else { return Ok(None) };
        match execution.next().await {
            Some(Ok(item)) => {
                if let ExecItem::Finished { exit_code } = &item {
                    *self.exit_code.lock().unwrap_or_else(|p| p.into_inner()) = Some(*exit_code);
                }
                Ok(Some(item))
            }
            Some(Err(e)) => {
                *state = ExecState::Closed;
                Err(e.into())
            }
            None => {
                *state = ExecState::Closed;
                Ok(None)
            }
        }
    }

    async fn send_input(self: Arc<Self>, line: String) -> Result<(), Fail> {
        let mut state = self.state.lock().await;
        Self::connect(&mut state).await?;
        match &mut *state {
            ExecState::Open(execution) => Ok(execution.send_input(&line).await?),
            _ => Err(Fail::Client(bai_client::Error::InvalidInput {
                field: "send_input".into(),
                reason: "the execution has ended".into(),
            })),
        }
    }

    async fn close(self: Arc<Self>) {
        *self.state.lock().await = ExecState::Closed;
    }

    fn exit_code(&self) -> Option<i64> {
        *self.exit_code.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An execution item as a `(kind, data)` tuple.
struct Item(ExecItem);

impl<'py> IntoPyObject<'py> for Item {
    type Target = PyTuple;
    type Output = Bound<'py, PyTuple>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let (kind, data): (String, Bound<'py, PyAny>) = match self.0 {
            ExecItem::Stdout(s) => ("stdout".into(), PyString::new(py, &s).into_any()),
            ExecItem::Stderr(s) => ("stderr".into(), PyString::new(py, &s).into_any()),
            ExecItem::Record { kind, data } => (kind, convert::to_py(py, &data)?),
            ExecItem::WaitingInput { is_password } => {
                let d = PyDict::new(py);
                d.set_item("is_password", is_password)?;
                ("waiting-input".into(), d.into_any())
            }
            ExecItem::BuildFinished { exit_code } => ("build-finished".into(), exit_code.into_pyobject(py)?.into_any()),
            ExecItem::CleanFinished { exit_code } => ("clean-finished".into(), exit_code.into_pyobject(py)?.into_any()),
            ExecItem::Finished { exit_code } => ("finished".into(), exit_code.into_pyobject(py)?.into_any()),
        };
        PyTuple::new(py, [PyString::new(py, &kind).into_any(), data])
    }
}

/// A running execution: iterate it for `(kind, data)` items — `("stdout", text)`,
/// `("stderr", text)`, `("waiting-input", {"is_password": bool})` (answer with
/// `send_input`), other console records as `(kind, data)`, and last `("finished", exit_code)`.
#[pyclass(name = "Execution", module = "bai", frozen)]
struct PyExecution {
    inner: Arc<ExecInner>,
}

#[pymethods]
impl PyExecution {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Item>> {
        Ok(wait(py, self.inner.clone().next())?.map(Item))
    }

    /// Answers `("waiting-input", …)` with a line of input.
    fn send_input(&self, py: Python<'_>, line: String) -> PyResult<()> {
        wait(py, self.inner.clone().send_input(line))
    }

    /// Closes the connection (interrupting the code if it still runs).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let inner = self.inner.clone();
        wait(py, async move {
            inner.close().await;
            Ok(())
        })
    }

    /// The exit code, once `("finished", …)` has been read; else None.
    #[getter]
    fn exit_code(&self) -> Option<i64> {
        self.inner.exit_code()
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}

/// `AsyncClient.execute`: `async for kind, data in client.execute(...)`, or
/// `run = await client.execute(...)` to connect first.
#[pyclass(name = "AsyncExecution", module = "bai", frozen)]
struct PyAsyncExecution {
    inner: Arc<ExecInner>,
}

#[pymethods]
impl PyAsyncExecution {
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        runtime();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            match inner.next().await.map_err(PyErr::from)? {
                Some(item) => Ok(Item(item)),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }

    fn __await__<'py>(slf: Py<Self>, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = slf.get().inner.clone();
        runtime();
        let fut = pyo3_async_runtimes::tokio::future_into_py(py, async move {
            inner.open().await.map_err(PyErr::from)?;
            Ok(slf)
        })?;
        fut.call_method0("__await__")
    }

    /// Answers `("waiting-input", …)` with a line of input (a coroutine).
    fn send_input<'py>(&self, py: Python<'py>, line: String) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        spawn(
            py,
            call(async move {
                inner.send_input(line).await?;
                Ok(Value::Null)
            }),
        )
    }

    /// Closes the connection (a coroutine).
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        spawn(
            py,
            call(async move {
                inner.close().await;
                Ok(Value::Null)
            }),
        )
    }

    /// The exit code, once `("finished", …)` has been read; else None.
    #[getter]
    fn exit_code(&self) -> Option<i64> {
        self.inner.exit_code()
    }

    fn __aenter__<'py>(slf: Py<Self>, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = slf.get().inner.clone();
        runtime();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            inner.open().await.map_err(PyErr::from)?;
            Ok(slf)
        })
    }

    #[pyo3(signature = (*_args))]
    fn __aexit__<'py>(&self, py: Python<'py>, _args: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        spawn(
            py,
            call(async move {
                inner.close().await;
                Ok(Value::Bool(false))
            }),
        )
    }
}

/// An event stream, connected on first use.
enum EventState {
    Pending { client: Client, session: String, scope: EventScope },
    Open(Box<EventStream>),
    Closed,
}

struct EventInner {
    state: tokio::sync::Mutex<EventState>,
}

impl EventInner {
    fn new(client: Client, session: String, scope: EventScope) -> Arc<Self> {
        Arc::new(Self { state: tokio::sync::Mutex::new(EventState::Pending { client, session, scope }) })
    }

    async fn connect(state: &mut EventState) -> Result<(), Fail> {
        if let EventState::Pending { client, session, scope } = state {
            match client.session_events(session, *scope).await {
                Ok(stream) => *state = EventState::Open(Box::new(stream)),
                Err(e) => {
                    *state = EventState::Closed;
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    async fn open(self: Arc<Self>) -> Result<(), Fail> {
        Self::connect(&mut *self.state.lock().await).await
    }

    async fn next(self: Arc<Self>) -> Result<Option<Value>, Fail> {
        let mut state = self.state.lock().await;
        Self::connect(&mut state).await?;
        let EventState::Open(stream) = &mut *state else { return Ok(None) };
        match stream.next().await {
            Some(Ok(event)) => Ok(Some(event_json(&event)?)),
            Some(Err(e)) => {
                *state = EventState::Closed;
                Err(e.into())
            }
            None => {
                *state = EventState::Closed;
                Ok(None)
            }
        }
    }

    async fn close(self: Arc<Self>) {
        *self.state.lock().await = EventState::Closed;
    }
}

fn event_json(event: &SessionEvent) -> Result<Value, Fail> {
    ser(event)
}

fn event_scope(scope: &str) -> PyResult<EventScope> {
    match scope {
        "all" | "*" => Ok(EventScope::All),
        "session" => Ok(EventScope::Session),
        "kernel" => Ok(EventScope::Kernel),
        other => Err(invalid("scope", format!("{other:?} is not \"all\", \"session\" or \"kernel\""))),
    }
}

/// A session's events as dicts (`name`, `session_id`, `session_name`, `kernel_id`, `reason`,
/// `exit_code`, `data`), in order; the iteration ends when the server closes the stream, which
/// it does after the session's final event.
#[pyclass(name = "EventStream", module = "bai", frozen)]
struct PyEvents {
    inner: Arc<EventInner>,
}

#[pymethods]
impl PyEvents {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match wait(py, self.inner.clone().next())? {
            Some(event) => Ok(Some(convert::to_py(py, &event)?.unbind())),
            None => Ok(None),
        }
    }

    /// Stops following the events.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let inner = self.inner.clone();
        wait(py, async move {
            inner.close().await;
            Ok(())
        })
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}

/// `AsyncClient.events`: `async for event in client.events(...)`.
#[pyclass(name = "AsyncEventStream", module = "bai", frozen)]
struct PyAsyncEvents {
    inner: Arc<EventInner>,
}

#[pymethods]
impl PyAsyncEvents {
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        runtime();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            match inner.next().await.map_err(PyErr::from)? {
                Some(event) => Ok(Json(event)),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }

    fn __await__<'py>(slf: Py<Self>, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = slf.get().inner.clone();
        runtime();
        let fut = pyo3_async_runtimes::tokio::future_into_py(py, async move {
            inner.open().await.map_err(PyErr::from)?;
            Ok(slf)
        })?;
        fut.call_method0("__await__")
    }

    /// Stops following the events (a coroutine).
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        spawn(
            py,
            call(async move {
                inner.close().await;
                Ok(Value::Null)
            }),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The clients

/// A client of a Backend.AI manager whose calls block (with the GIL released).
#[pyclass(name = "Client", module = "bai", frozen)]
struct PyClient {
    client: Client,
}

/// A client of a Backend.AI manager whose calls are coroutines (asyncio).
#[pyclass(name = "AsyncClient", module = "bai", frozen)]
struct PyAsyncClient {
    client: Client,
}

/// Defines the calls once for both clients: `fn name(py, client, args…) { … }` where the body,
/// run with the GIL held, converts the arguments and returns `PyResult<Call>`. `Client` gets a
/// method that waits for the call and converts its JSON; `AsyncClient` one that returns an
/// awaitable. `both { … }` holds methods written once for both classes (they see only
/// `self.client`); `sync { … }` and `async { … }` hold each class's other methods.
macro_rules! client_calls {
    (
        both { $($both:tt)* }
        sync { $($sync:tt)* }
        async { $($async:tt)* }
        $(
            $(#[$meta:meta])*
            fn $name:ident($py:ident, $c:ident $(, $arg:ident: $ty:ty)* $(,)?) $body:block
        )*
    ) => {
        #[pymethods]
        impl PyClient {
            $($both)*
            $($sync)*
            $(
                $(#[$meta])*
                #[allow(clippy::too_many_arguments)] // keyword arguments, as Python APIs have them
                fn $name(&self, $py: Python<'_>, $($arg: $ty),*) -> PyResult<Py<PyAny>> {
                    let $c = self.client.clone();
                    let pending: PyResult<Call> = $body;
                    let value = wait($py, pending?)?;
                    Ok(convert::to_py($py, &value)?.unbind())
                }
            )*
        }

        #[pymethods]
        impl PyAsyncClient {
            $($both)*
            $($async)*
            $(
                $(#[$meta])*
                #[allow(clippy::too_many_arguments)]
                fn $name<'py>(&self, $py: Python<'py>, $($arg: $ty),*) -> PyResult<Bound<'py, PyAny>> {
                    let $c = self.client.clone();
                    let pending: PyResult<Call> = $body;
                    spawn($py, pending?)
                }
            )*
        }
    };
}

client_calls! {
    both {
        #[new]
        #[pyo3(signature = (endpoint=None, access_key=None, secret_key=None, *, domain=None, group=None, max_retries=None))]
        fn new(
            endpoint: Option<String>,
            access_key: Option<String>,
            secret_key: Option<String>,
            domain: Option<String>,
            group: Option<String>,
            max_retries: Option<u32>,
        ) -> PyResult<Self> {
            Ok(Self { client: make_client(endpoint, access_key, secret_key, domain, group, max_retries)? })
        }

        /// The endpoint requests go to.
        #[getter]
        fn endpoint(&self) -> String {
            self.client.endpoint().to_string()
        }

        /// The access key requests are signed with ("" when anonymous).
        #[getter]
        fn access_key(&self) -> String {
            self.client.config().access_key.clone()
        }

        /// The domain sent with requests.
        #[getter]
        fn domain(&self) -> String {
            self.client.config().domain.clone()
        }

        /// The project (group) sessions are created in.
        #[getter]
        fn group(&self) -> String {
            self.client.config().group.clone()
        }
    }
    sync {
        fn __repr__(&self) -> String {
            repr("Client", &self.client)
        }

        /// Starts running `code` in a session and returns an `Execution`, an iterator of
        /// `(kind, data)` items ending with `("finished", exit_code)`.
        fn execute(&self, py: Python<'_>, session: Bound<'_, PyAny>, code: String) -> PyResult<PyExecution> {
            let inner = ExecInner::new(self.client.clone(), text(&session)?, ExecRequest::Query(code));
            wait(py, inner.clone().open())?;
            Ok(PyExecution { inner })
        }

        /// Follows a session's events (`scope`: "all", "session" or "kernel") and returns an
        /// `EventStream`, an iterator of event dicts that ends after the session's final event.
        #[pyo3(signature = (session, scope="all"))]
        fn events(&self, py: Python<'_>, session: Bound<'_, PyAny>, scope: &str) -> PyResult<PyEvents> {
            let inner = EventInner::new(self.client.clone(), text(&session)?, event_scope(scope)?);
            wait(py, inner.clone().open())?;
            Ok(PyEvents { inner })
        }
    }
    async {
        fn __repr__(&self) -> String {
            repr("AsyncClient", &self.client)
        }

        /// Runs `code` in a session: `async for kind, data in client.execute(s, code)` (connects
        /// on the first item), or `run = await client.execute(s, code)`.
        fn execute(&self, session: Bound<'_, PyAny>, code: String) -> PyResult<PyAsyncExecution> {
            Ok(PyAsyncExecution { inner: ExecInner::new(self.client.clone(), text(&session)?, ExecRequest::Query(code)) })
        }

        /// Follows a session's events: `async for event in client.events(s)`.
        #[pyo3(signature = (session, scope="all"))]
        fn events(&self, session: Bound<'_, PyAny>, scope: &str) -> PyResult<PyAsyncEvents> {
            Ok(PyAsyncEvents { inner: EventInner::new(self.client.clone(), text(&session)?, event_scope(scope)?) })
        }
    }

    // ---- server ----

    /// `{"version", "manager"}`: the API version and the manager's version (`GET /`).
    fn server_version(py, c) {
        Ok(call(async move {
            let v = c.server_version().await?;
            Ok(json!({"version": v.version, "manager": v.manager}))
        }))
    }

    /// Runs a GraphQL query or mutation and returns its `data`; errors raise `GraphQLError`.
    #[pyo3(signature = (query, variables=None))]
    fn graphql(py, c, query: String, variables: Option<Bound<'_, PyAny>>) {
        let variables = match variables {
            Some(v) => plain_json(&v, "variables")?,
            None => json!({}),
        };
        Ok(call(async move { Ok(c.graphql(&query, variables).await?) }))
    }

    // ---- sessions ----

    /// Creates a session and (unless `enqueue_only`) waits until it runs; returns
    /// `{"session_id", "session_name", "status", "service_ports", "created"}`. `resources`
    /// maps slots to amounts (`{"cpu": 1, "mem": "1g"}`; a bare number for `mem` is MiB).
    /// `on_event(event)` is called with each of its events while it starts.
    #[pyo3(signature = (image, *, name=None, session_type="interactive", resources=None, resource_opts=None,
                        environ=None, mounts=None, mount_map=None, scaling_group=None, cluster_size=1,
                        startup_command=None, bootstrap_script=None, tag=None, enqueue_only=false, max_wait=0,
                        reuse=true, owner_access_key=None, group=None, architecture=None, preopen_ports=None,
                        on_event=None))]
    fn create_session(
        py, c,
        image: String,
        name: Option<String>,
        session_type: &str,
        resources: Option<Bound<'_, PyAny>>,
        resource_opts: Option<Bound<'_, PyAny>>,
        environ: Option<Bound<'_, PyAny>>,
        mounts: Option<Vec<String>>,
        mount_map: Option<Bound<'_, PyAny>>,
        scaling_group: Option<String>,
        cluster_size: u32,
        startup_command: Option<String>,
        bootstrap_script: Option<String>,
        tag: Option<String>,
        enqueue_only: bool,
        max_wait: u64,
        reuse: bool,
        owner_access_key: Option<String>,
        group: Option<String>,
        architecture: Option<String>,
        preopen_ports: Option<Vec<u16>>,
        on_event: Option<Bound<'_, PyAny>>,
    ) {
        let session_type = match session_type {
            "interactive" => SessionType::Interactive,
            "batch" => SessionType::Batch,
            other => return Err(invalid("session_type", format!("{other:?} is not \"interactive\" or \"batch\""))),
        };
        let mut spec = SessionSpec::new(image);
        spec.name = name;
        spec.session_type = session_type;
        spec.resources = str_map(resources.as_ref())?;
        spec.resource_opts = str_map(resource_opts.as_ref())?;
        spec.environ = str_map(environ.as_ref())?;
        spec.mounts = mounts.unwrap_or_default();
        spec.mount_map = str_map(mount_map.as_ref())?;
        spec.scaling_group = scaling_group;
        spec.cluster_size = cluster_size;
        spec.startup_command = startup_command;
        spec.bootstrap_script = bootstrap_script;
        spec.tag = tag;
        spec.enqueue_only = enqueue_only;
        spec.max_wait_seconds = max_wait;
        spec.reuse_if_exists = reuse;
        spec.owner_access_key = owner_access_key;
        spec.group = group;
        spec.architecture = architecture;
        spec.preopen_ports = preopen_ports.unwrap_or_default();
        let on_event = Callback::new(on_event.as_ref())?;
        Ok(call(async move {
            let created = match on_event.clone() {
                None => c.create_session(&spec).await,
                Some(cb) => {
                    c.create_session_watched(&spec, move |event| {
                        let Ok(event) = serde_json::to_value(event) else { return };
                        cb.call(|py| PyTuple::new(py, [convert::to_py(py, &event)?]));
                    })
                    .await
                }
            };
            Callback::check(&on_event)?;
            let created = created?;
            Ok(json!({
                "session_id": created.session_id, "session_name": created.session_name, "status": created.status,
                "service_ports": ser(&created.service_ports)?, "created": created.created,
            }))
        }))
    }

    /// A page of sessions, newest first: `{"items": [...], "total_count": n}`. `status` is
    /// "active" (default), "running", "dead", "all", a status name or a list of them.
    #[pyo3(signature = (status=None, *, access_key=None, limit=100, offset=0))]
    fn list_sessions(py, c, status: Option<Bound<'_, PyAny>>, access_key: Option<String>, limit: u32, offset: u32) {
        let status = status_filter(status.as_ref())?;
        Ok(call(async move { ser(c.list_sessions(&status, access_key.as_deref(), limit, offset).await?) }))
    }

    /// Every session matching `status` (all pages), newest first.
    #[pyo3(signature = (status=None, *, access_key=None))]
    fn all_sessions(py, c, status: Option<Bound<'_, PyAny>>, access_key: Option<String>) {
        let status = status_filter(status.as_ref())?;
        Ok(call(async move { ser(c.all_sessions(&status, access_key.as_deref()).await?) }))
    }

    /// A session's details and kernels, by name or id.
    fn session_info(py, c, session: Bound<'_, PyAny>) {
        let session = text(&session)?;
        Ok(call(async move { ser(c.session_info(&session).await?) }))
    }

    /// Destroys a session (`forced`: even while it starts); returns its last statistics or None.
    #[pyo3(signature = (session, *, forced=false))]
    fn destroy_session(py, c, session: Bound<'_, PyAny>, forced: bool) {
        let session = text(&session)?;
        Ok(call(async move { Ok(c.destroy_session(&session, forced).await?.unwrap_or(Value::Null)) }))
    }

    /// Restarts a session's kernels in place.
    fn restart_session(py, c, session: Bound<'_, PyAny>) {
        let session = text(&session)?;
        Ok(call(async move {
            c.restart_session(&session).await?;
            Ok(Value::Null)
        }))
    }

    /// The main kernel's console log.
    fn session_logs(py, c, session: Bound<'_, PyAny>) {
        let session = text(&session)?;
        Ok(call(async move { Ok(Value::String(c.session_logs(&session).await?)) }))
    }

    /// The apps (services) the session offers, as dicts: name, protocol, ports, and
    /// url_template / allowed_arguments / allowed_envs when the image says.
    fn apps(py, c, session: Bound<'_, PyAny>) {
        let session = text(&session)?;
        Ok(call(async move { ser(c.apps(&session).await?) }))
    }

    /// A link that opens an HTTP app of the session in a browser without signing:
    /// `{"url", "expires_at"}`. The app is started first if it is not running.
    fn app_link(py, c, session: Bound<'_, PyAny>, app: String) {
        let session = text(&session)?;
        Ok(call(async move { ser(c.app_link(&session, &app, &bai_client::AppOptions::default()).await?) }))
    }

    /// The files in a directory of the session (relative to `/home/work`), as dicts.
    #[pyo3(signature = (session, path=String::from(".")))]
    fn session_files(py, c, session: Bound<'_, PyAny>, path: String) {
        let session = text(&session)?;
        Ok(call(async move { ser(c.session_files(&session, &path).await?) }))
    }

    /// Uploads local files into the session's `/home/work`: `files` is a path, or a list of
    /// paths (kept under their base names) and `(local path, name in the session)` pairs.
    fn upload_to_session(py, c, session: Bound<'_, PyAny>, files: Bound<'_, PyAny>) {
        let session = text(&session)?;
        let items: Vec<Bound<'_, PyAny>> = if files.is_instance_of::<PyString>() || !files.hasattr("__iter__")? {
            vec![files]
        } else {
            files.try_iter()?.collect::<PyResult<_>>()?
        };
        let mut list = Vec::new();
        for item in items {
            if let Ok(pair) = item.cast::<PyTuple>() {
                let (local, name): (Bound<'_, PyAny>, String) = pair.extract()?;
                list.push((path_arg(&local)?, name));
            } else {
                let local = path_arg(&item)?;
                let name = base_name(&local);
                list.push((local, name));
            }
        }
        Ok(call(async move {
            c.upload_to_session(&session, &list).await?;
            Ok(Value::Null)
        }))
    }

    /// Downloads files or directories of the session (paths relative to `/home/work`) into
    /// `dest` (the current directory when None); returns the local paths written.
    #[pyo3(signature = (session, files, dest=None))]
    fn download_from_session(py, c, session: Bound<'_, PyAny>, files: Bound<'_, PyAny>, dest: Option<Bound<'_, PyAny>>) {
        let session = text(&session)?;
        let files = str_list(&files)?;
        let dest = match dest.filter(|d| !d.is_none()) {
            Some(d) => path_arg(&d)?,
            None => PathBuf::from("."),
        };
        Ok(call(async move {
            let written = c.download_from_session(&session, &files, &dest).await?;
            Ok(Value::Array(written.iter().map(|p| Value::String(p.display().to_string())).collect()))
        }))
    }

    /// Runs `code` to the end: `{"stdout", "stderr", "exit_code"}` (for code that needs no input).
    fn run_code(py, c, session: Bound<'_, PyAny>, code: String) {
        let session = text(&session)?;
        Ok(call(async move {
            let out = c.run_code(&session, &code).await?;
            Ok(json!({"stdout": out.stdout, "stderr": out.stderr, "exit_code": out.exit_code}))
        }))
    }

    // ---- virtual folders ----

    /// Creates a folder and returns it. `quota` takes sizes such as "10g".
    #[pyo3(signature = (name, *, host=None, group=None, usage_mode=None, permission=None, quota=None, cloneable=false))]
    fn create_vfolder(
        py, c,
        name: String,
        host: Option<String>,
        group: Option<String>,
        usage_mode: Option<String>,
        permission: Option<String>,
        quota: Option<Bound<'_, PyAny>>,
        cloneable: bool,
    ) {
        let quota = quota.filter(|q| !q.is_none()).map(|q| amount_text(&q)).transpose()?;
        let spec = NewVFolder { name, host, group, usage_mode, permission, quota, cloneable };
        Ok(call(async move { vfolder_json(c.create_vfolder(&spec).await?) }))
    }

    /// The folders the requester can use.
    fn list_vfolders(py, c) {
        Ok(call(async move { vfolder_json(c.list_vfolders().await?) }))
    }

    /// One folder, with its current usage.
    fn vfolder_info(py, c, name: String) {
        Ok(call(async move { vfolder_json(c.vfolder_info(&name).await?) }))
    }

    /// Deletes a folder.
    fn delete_vfolder(py, c, name: String) {
        Ok(call(async move {
            c.delete_vfolder(&name).await?;
            Ok(Value::Null)
        }))
    }

    /// Renames a folder.
    fn rename_vfolder(py, c, name: String, new_name: String) {
        Ok(call(async move {
            c.rename_vfolder(&name, &new_name).await?;
            Ok(Value::Null)
        }))
    }

    /// `{"default", "allowed"}`: the storage hosts the requester may create folders on.
    fn vfolder_hosts(py, c) {
        Ok(call(async move { ser(c.vfolder_hosts().await?) }))
    }

    /// Creates a directory in a folder (`parents`: like `mkdir -p`).
    #[pyo3(signature = (name, path, *, parents=false))]
    fn vfolder_mkdir(py, c, name: String, path: String, parents: bool) {
        Ok(call(async move {
            c.vfolder_mkdir(&name, &path, parents).await?;
            Ok(Value::Null)
        }))
    }

    /// The files in a directory of a folder, as dicts.
    #[pyo3(signature = (name, path=String::from(".")))]
    fn vfolder_files(py, c, name: String, path: String) {
        Ok(call(async move { ser(c.vfolder_files(&name, &path).await?) }))
    }

    /// Deletes files (and, with `recursive`, directories) in a folder.
    #[pyo3(signature = (name, files, *, recursive=false))]
    fn vfolder_delete_files(py, c, name: String, files: Bound<'_, PyAny>, recursive: bool) {
        let files = str_list(&files)?;
        Ok(call(async move {
            c.vfolder_delete_files(&name, &files, recursive).await?;
            Ok(Value::Null)
        }))
    }

    /// Uploads a local file to `remote_path` in a folder (its base name when None) and returns
    /// the bytes sent; `progress(done, total)` is called after each chunk.
    #[pyo3(signature = (name, local, remote_path=None, *, progress=None))]
    fn vfolder_upload(
        py, c,
        name: String,
        local: Bound<'_, PyAny>,
        remote_path: Option<String>,
        progress: Option<Bound<'_, PyAny>>,
    ) {
        let local = path_arg(&local)?;
        let remote_path = remote_path.unwrap_or_else(|| base_name(&local));
        let progress = Callback::new(progress.as_ref())?;
        Ok(call(async move {
            with_progress(progress, |report| async move {
                c.vfolder_upload(&name, &local, &remote_path, &*report).await
            })
            .await
        }))
    }

    /// Downloads `remote_path` of a folder to `local` (the remote base name in the current
    /// directory when None; an existing file is an error unless `overwrite`) and returns the
    /// bytes received; `progress(done, total)` is called as they arrive.
    #[pyo3(signature = (name, remote_path, local=None, *, overwrite=false, progress=None))]
    fn vfolder_download(
        py, c,
        name: String,
        remote_path: String,
        local: Option<Bound<'_, PyAny>>,
        overwrite: bool,
        progress: Option<Bound<'_, PyAny>>,
    ) {
        let local = match local.filter(|l| !l.is_none()) {
            Some(l) => path_arg(&l)?,
            None => PathBuf::from(base_name(FsPath::new(&remote_path))),
        };
        let progress = Callback::new(progress.as_ref())?;
        Ok(call(async move {
            with_progress(progress, |report| async move {
                c.vfolder_download(&name, &remote_path, &local, overwrite, &*report).await
            })
            .await
        }))
    }

    // ---- administration ----

    /// A page of agents (`status`: "ALIVE" when None), `{"items", "total_count"}`; superadmin.
    #[pyo3(signature = (status=None, scaling_group=None, *, limit=100, offset=0))]
    fn list_agents(py, c, status: Option<String>, scaling_group: Option<String>, limit: u32, offset: u32) {
        Ok(call(async move { ser(c.list_agents(status.as_deref(), scaling_group.as_deref(), limit, offset).await?) }))
    }

    /// The requester's own keypair.
    fn own_keypair(py, c) {
        Ok(call(async move { ser(c.own_keypair().await?) }))
    }

    /// A page of keypairs, optionally of one user (by email) or by state; admins.
    #[pyo3(signature = (email=None, is_active=None, *, limit=100, offset=0))]
    fn list_keypairs(py, c, email: Option<String>, is_active: Option<bool>, limit: u32, offset: u32) {
        Ok(call(async move { ser(c.list_keypairs(email.as_deref(), is_active, limit, offset).await?) }))
    }

    /// Creates a keypair for a user (by email): `{"access_key", "secret_key"}`.
    #[pyo3(signature = (email, *, resource_policy=String::from("default"), is_admin=false, rate_limit=5000))]
    fn create_keypair(py, c, email: String, resource_policy: String, is_admin: bool, rate_limit: u32) {
        Ok(call(async move {
            let (access_key, secret_key) = c.create_keypair(&email, &resource_policy, is_admin, rate_limit).await?;
            Ok(json!({"access_key": access_key, "secret_key": secret_key}))
        }))
    }

    /// Activates or deactivates a keypair.
    fn set_keypair_active(py, c, access_key: String, active: bool) {
        Ok(call(async move {
            c.set_keypair_active(&access_key, active).await?;
            Ok(Value::Null)
        }))
    }

    /// Deletes a keypair.
    fn delete_keypair(py, c, access_key: String) {
        Ok(call(async move {
            c.delete_keypair(&access_key).await?;
            Ok(Value::Null)
        }))
    }

    /// A page of users, optionally by status; admins.
    #[pyo3(signature = (status=None, *, limit=100, offset=0))]
    fn list_users(py, c, status: Option<String>, limit: u32, offset: u32) {
        Ok(call(async move { ser(c.list_users(status.as_deref(), limit, offset).await?) }))
    }

    /// Creates a user (and its main keypair) and returns it.
    #[pyo3(signature = (email, password, *, domain=String::from("default"), role=String::from("user"), username=None, full_name=String::new()))]
    fn create_user(
        py, c,
        email: String,
        password: String,
        domain: String,
        role: String,
        username: Option<String>,
        full_name: String,
    ) {
        let mut user = NewUser::new(email, password);
        user.domain = domain;
        user.role = role;
        if let Some(username) = username {
            user.username = username;
        }
        user.full_name = full_name;
        Ok(call(async move { ser(c.create_user(&user).await?) }))
    }

    /// The domains; superadmin.
    fn list_domains(py, c) {
        Ok(call(async move { ser(c.list_domains().await?) }))
    }

    /// Creates a domain; superadmin.
    #[pyo3(signature = (name, description=String::new()))]
    fn create_domain(py, c, name: String, description: String) {
        Ok(call(async move {
            c.create_domain(&name, &description).await?;
            Ok(Value::Null)
        }))
    }

    /// The projects of a domain (the requester's when None).
    #[pyo3(signature = (domain=None))]
    fn list_groups(py, c, domain: Option<String>) {
        Ok(call(async move { ser(c.list_groups(domain.as_deref()).await?) }))
    }

    /// Creates a project in a domain and returns its id.
    #[pyo3(signature = (name, *, domain=String::from("default"), description=String::new()))]
    fn create_group(py, c, name: String, domain: String, description: String) {
        Ok(call(async move { Ok(Value::String(c.create_group(&domain, &name, &description).await?)) }))
    }

    /// The images the manager knows.
    fn list_images(py, c) {
        Ok(call(async move { ser(c.list_images().await?) }))
    }

    /// The scaling groups; superadmin.
    fn list_scaling_groups(py, c) {
        Ok(call(async move { ser(c.list_scaling_groups().await?) }))
    }

    /// The keypair resource policies; superadmin.
    fn list_resource_policies(py, c) {
        Ok(call(async move { ser(c.list_resource_policies().await?) }))
    }

    /// The resource presets.
    fn list_presets(py, c) {
        Ok(call(async move { ser(c.list_presets().await?) }))
    }

    /// What the requester may still allocate, and which presets fit.
    #[pyo3(signature = (scaling_group=None))]
    fn check_presets(py, c, scaling_group: Option<String>) {
        Ok(call(async move { ser(c.check_presets(scaling_group.as_deref()).await?) }))
    }
}
