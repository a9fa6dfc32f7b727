//! Background tasks: long operations (an image rescan, later folder clones) that an API call
//! starts and answers at once with a task id, and whose progress clients follow over
//! `GET /events/background-task?taskId=<uuid>` ([`crate::api::events`]).
//!
//! [`BackgroundTasks::start`] runs a future on the runtime with a [`ProgressReporter`]; the
//! future's `Ok(message)` makes the task `done`, `Err(message)` `failed`, a panic `failed`
//! and [`BackgroundTasks::cancel`] `cancelled`. Each task's latest [`TaskState`] sits in a
//! `watch` channel, so a subscriber sees the current state at once and every later change
//! (intermediate progress may be coalesced; the final state never is). A finished task stays
//! known for [`BackgroundTasks::retention`] so that a client arriving late still learns its
//! outcome; it is forgotten after that.
//!
//! The registry lives in the manager process that started the task: the stream must be opened
//! at that manager (the original keeps the state in Redis instead).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use uuid::Uuid;

/// How long a finished task's outcome stays known by default.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Running.
    Started,
    /// Finished.
    Done,
    /// Finished with an error.
    Failed,
    /// Cancelled before it finished.
    Cancelled,
}

impl TaskStatus {
    /// The wire name: `started`, `done`, `failed`, `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Started => "started",
            TaskStatus::Done => "done",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// The server-sent event announcing this state: `bgtask_updated` while running, else
    /// `bgtask_done`, `bgtask_failed` or `bgtask_cancelled`.
    pub fn event_name(self) -> &'static str {
        match self {
            TaskStatus::Started => "bgtask_updated",
            TaskStatus::Done => "bgtask_done",
            TaskStatus::Failed => "bgtask_failed",
            TaskStatus::Cancelled => "bgtask_cancelled",
        }
    }

    /// Whether the task has finished.
    pub fn is_finished(self) -> bool {
        self != TaskStatus::Started
    }
}

/// A task's latest state.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    /// The task.
    pub task_id: Uuid,
    /// What it does, e.g. `rescan_images`.
    pub name: String,
    /// Where it is.
    pub status: TaskStatus,
    /// Units of work done.
    pub current_progress: u64,
    /// Units of work known so far.
    pub total_progress: u64,
    /// The last progress message, or the outcome once finished.
    pub message: String,
}

impl TaskState {
    /// The event's data: `{task_id, status, current_progress, total_progress, message}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "task_id": self.task_id.to_string(),
            "status": self.status.as_str(),
            "current_progress": self.current_progress,
            "total_progress": self.total_progress,
            "message": self.message,
        })
    }
}

/// What a task uses to report its progress.
#[derive(Debug, Clone)]
pub struct ProgressReporter {
    state: Arc<watch::Sender<TaskState>>,
}

impl ProgressReporter {
    /// Adds `found` units to the total and `done` to the progress, with a message.
    pub fn step(&self, found: u64, done: u64, message: &str) {
        self.state.send_modify(|s| {
            s.total_progress += found;
            s.current_progress += done;
            s.total_progress = s.total_progress.max(s.current_progress);
            s.message = message.to_string();
        });
    }

    /// The task's id.
    pub fn task_id(&self) -> Uuid {
        self.state.borrow().task_id
    }
}

struct Entry {
    state: Arc<watch::Sender<TaskState>>,
    owner: Option<Uuid>,
    finished: Option<Instant>,
    abort: Option<AbortHandle>,
}

/// The tasks of this manager. Cheap to clone (shared).
#[derive(Clone)]
pub struct BackgroundTasks {
    tasks: Arc<Mutex<HashMap<Uuid, Entry>>>,
    retention: Duration,
    /// Where `backendai_bgtask_*` are recorded, once given.
    metrics: Arc<std::sync::OnceLock<Arc<crate::metrics::ManagerMetrics>>>,
}

impl std::fmt::Debug for BackgroundTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundTasks").field("retention", &self.retention).finish_non_exhaustive()
    }
}

impl Default for BackgroundTasks {
    fn default() -> Self {
        Self::new(DEFAULT_RETENTION)
    }
}

/// A subscription to a task's state.
#[derive(Debug)]
pub struct Subscription {
    /// The state, changing as the task goes on.
    pub state: watch::Receiver<TaskState>,
    /// The user who started the task.
    pub owner: Option<Uuid>,
}

impl BackgroundTasks {
    /// A registry keeping finished tasks for `retention`.
    pub fn new(retention: Duration) -> Self {
        Self { tasks: Arc::default(), retention, metrics: Arc::default() }
    }

    /// Records `backendai_bgtask_count`, `_done_count` and `_processing_time_sec` in
    /// `metrics` from now on (only the first call has an effect).
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::ManagerMetrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// How long a finished task stays known.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets tasks that finished more than the retention ago.
    fn prune(&self, tasks: &mut HashMap<Uuid, Entry>) {
        let now = Instant::now();
        tasks.retain(|_, e| e.finished.is_none_or(|at| now.duration_since(at) < self.retention));
    }

    /// Starts `task` (named `name`, on behalf of `owner`) on the runtime; returns its id at
    /// once. `Ok(message)` finishes it as done, `Err(message)` as failed.
    pub fn start<F, Fut>(&self, name: &str, owner: Option<Uuid>, task: F) -> Uuid
    where
        F: FnOnce(ProgressReporter) -> Fut,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        let task_id = Uuid::new_v4();
        let state = Arc::new(watch::Sender::new(TaskState {
            task_id,
            name: name.to_string(),
            status: TaskStatus::Started,
            current_progress: 0,
            total_progress: 0,
            message: String::new(),
        }));
        {
            let mut tasks = self.lock();
            self.prune(&mut tasks);
            tasks.insert(task_id, Entry { state: state.clone(), owner, finished: None, abort: None });
        }
        let metrics = self.metrics.get().cloned();
        if let Some(m) = &metrics {
            m.bgtask_started(name);
        }
        let started = std::time::Instant::now();
        let work = tokio::spawn(task(ProgressReporter { state: state.clone() }));
        if let Some(entry) = self.lock().get_mut(&task_id) {
            entry.abort = Some(work.abort_handle());
        }
        let tasks = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let (status, message) = match work.await {
                Ok(Ok(message)) => (TaskStatus::Done, message),
                Ok(Err(message)) => (TaskStatus::Failed, message),
                Err(e) if e.is_cancelled() => (TaskStatus::Cancelled, "the task was cancelled".to_string()),
                Err(e) => (TaskStatus::Failed, format!("the task failed: {e}")),
            };
            tracing::info!(task = %task_id, name, status = status.as_str(), message, "background task finished");
            if let Some(m) = &metrics {
                let error = match status {
                    TaskStatus::Done => None,
                    _ => Some(crate::metrics::ErrorInfo::new("bgtask", &name, status.as_str(), "BackgroundTaskError")),
                };
                m.bgtask_finished(&name, started.elapsed(), error.as_ref());
            }
            if let Some(entry) = tasks.lock().get_mut(&task_id) {
                entry.finished = Some(Instant::now());
                entry.abort = None;
            }
            state.send_modify(|s| {
                s.status = status;
                s.message = message;
            });
        });
        task_id
    }

    /// Follows task `id`, if it is running or finished within the retention.
    pub fn subscribe(&self, id: Uuid) -> Option<Subscription> {
        let mut tasks = self.lock();
        self.prune(&mut tasks);
        tasks.get(&id).map(|e| Subscription { state: e.state.subscribe(), owner: e.owner })
    }

    /// The current state of task `id`.
    pub fn state(&self, id: Uuid) -> Option<TaskState> {
        self.subscribe(id).map(|s| s.state.borrow().clone())
    }

    /// Cancels task `id`; whether it was running.
    pub fn cancel(&self, id: Uuid) -> bool {
        match self.lock().get(&id).and_then(|e| e.abort.clone()) {
            Some(abort) => {
                abort.abort();
                true
            }
            None => false,
        }
    }

    /// How many tasks are running.
    pub fn running(&self) -> usize {
        self.lock().values().filter(|e| e.finished.is_none()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn finished(tasks: &BackgroundTasks, id: Uuid) -> TaskState {
        let mut sub = tasks.subscribe(id).expect("known");
        let state = sub.state.wait_for(|s| s.status.is_finished()).await.expect("the task reports its end").clone();
        state
    }

    #[tokio::test]
    async fn progress_then_outcome() {
        let tasks = BackgroundTasks::default();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let id = tasks.start("demo", None, |progress| async move {
            progress.step(3, 0, "three to go");
            progress.step(0, 1, "one");
            go_rx.await.map_err(|e| e.to_string())?;
            progress.step(0, 2, "all");
            Ok("did 3".to_string())
        });
        let mut sub = tasks.subscribe(id).unwrap();
        let state = sub.state.wait_for(|s| s.current_progress == 1).await.unwrap().clone();
        assert_eq!((state.status, state.total_progress, state.message.as_str()), (TaskStatus::Started, 3, "one"));
        assert_eq!(tasks.running(), 1);
        go_tx.send(()).unwrap();
        let end = finished(&tasks, id).await;
        assert_eq!((end.status, end.current_progress, end.message.as_str()), (TaskStatus::Done, 3, "did 3"));
        assert_eq!(end.status.event_name(), "bgtask_done");
        assert_eq!(end.to_json()["status"], "done");
        assert_eq!(end.to_json()["task_id"], id.to_string());
    }

    #[tokio::test]
    async fn failures_panics_and_cancellation() {
        let tasks = BackgroundTasks::default();
        let failed = tasks.start("f", None, |_| async { Err("registry r: refused".to_string()) });
        assert_eq!(finished(&tasks, failed).await.message, "registry r: refused");
        assert_eq!(tasks.state(failed).unwrap().status, TaskStatus::Failed);
        let panicked = tasks.start("p", None, |_| async { panic!("boom") });
        let state = finished(&tasks, panicked).await;
        assert_eq!(state.status, TaskStatus::Failed);
        assert!(state.message.contains("panic"), "{}", state.message);
        let stuck = tasks.start("s", None, |_| std::future::pending::<Result<String, String>>());
        assert!(tasks.cancel(stuck));
        assert_eq!(finished(&tasks, stuck).await.status, TaskStatus::Cancelled);
        assert!(!tasks.cancel(stuck));
        assert!(tasks.subscribe(Uuid::new_v4()).is_none());
    }

    #[tokio::test]
    async fn tasks_are_counted_in_the_metrics() {
        let metrics = Arc::new(crate::metrics::ManagerMetrics::new());
        let tasks = BackgroundTasks::default();
        tasks.set_metrics(metrics.clone());
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let waiting = tasks.start("rescan_images", None, |_| async move {
            go_rx.await.map_err(|e| e.to_string())?;
            Ok("done".to_string())
        });
        let text = metrics.encode();
        assert!(text.contains("backendai_bgtask_count{task_name=\"rescan_images\"} 1"), "{text}");
        go_tx.send(()).unwrap();
        finished(&tasks, waiting).await;
        let failed = tasks.start("rescan_images", None, |_| async { Err("registry r: refused".to_string()) });
        finished(&tasks, failed).await;
        let text = metrics.encode();
        assert!(text.contains("backendai_bgtask_count{task_name=\"rescan_images\"} 0"), "{text}");
        assert!(
            text.contains("backendai_bgtask_done_count_total{task_name=\"rescan_images\",status=\"success\",domain=\"\",operation=\"\",error_detail=\"\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("backendai_bgtask_done_count_total{task_name=\"rescan_images\",status=\"failure\",domain=\"bgtask\",operation=\"rescan_images\",error_detail=\"failed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("backendai_bgtask_processing_time_sec_bucket{le=\"600.0\",task_name=\"rescan_images\""),
            "{text}"
        );
    }

    #[tokio::test]
    async fn finished_tasks_are_kept_for_the_retention() {
        let kept = BackgroundTasks::new(Duration::from_secs(3600));
        let owner = Uuid::new_v4();
        let id = kept.start("t", Some(owner), |_| async { Ok("ok".to_string()) });
        finished(&kept, id).await;
        let late = kept.subscribe(id).expect("still known after it finished");
        assert_eq!((late.state.borrow().status, late.owner), (TaskStatus::Done, Some(owner)));
        assert_eq!(kept.running(), 0);

        let forgetful = BackgroundTasks::new(Duration::ZERO);
        let id = forgetful.start("t", None, |_| async { Ok("ok".to_string()) });
        finished(&forgetful, id).await;
        assert!(forgetful.subscribe(id).is_none(), "forgotten once the retention has passed");
    }
}
