//! Code execution in real kernels: batch commands and the query-mode runner, in containers of
//! the kernel image `scripts/build-kernel-images` builds (`BAI_TEST_KERNEL_IMAGE`, default
//! `bai/python:3.11`) on the Docker Engine of `BAI_TEST_DOCKER_HOST`, and the runner on the
//! process runtime with the host's python3.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bai_agent_runtime::exec::{run_batch, ConsoleItem, ExecResult, KernelRunner, Mode, RunStatus, RunnerConfig};
use bai_agent_runtime::runtime::docker::DockerRuntime;
use bai_agent_runtime::runtime::process::{ProcessRuntime, HOST_IMAGE};
use bai_agent_runtime::runtime::{ContainerRuntime, ContainerSpec};
use common::*;

const DEFAULT_KERNEL_IMAGE: &str = "bai/python:3.11";
/// Long enough for any run in these tests to finish: they never wait for it unless the run
/// is meant to end.
const PATIENT: Duration = Duration::from_secs(60);
/// Short enough that the runs meant to outlast it do.
const BRIEF: Duration = Duration::from_millis(300);

/// Removes the container when dropped, however the test ends.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let host = std::env::var("BAI_TEST_DOCKER_HOST").unwrap_or_default();
        let _ = std::process::Command::new("docker").args(["-H", &host, "rm", "-f", "-v", &self.0]).output();
    }
}

/// A running container of the kernel image, or `None` when the tests run without Docker.
async fn kernel(test: &str) -> Option<(Arc<DockerRuntime>, String, Cleanup)> {
    let runtime = docker().await?;
    let image = std::env::var("BAI_TEST_KERNEL_IMAGE")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_KERNEL_IMAGE.to_string());
    if let Err(err) = runtime.inspect_image(&image).await {
        let message = format!("kernel image {image} is missing ({err}); build it with scripts/build-kernel-images");
        if std::env::var("BAI_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("{message} (scripts/test does)");
        }
        eprintln!("skipping: {message}");
        return None;
    }
    let name = unique_name(test);
    let cleanup = Cleanup(name.clone());
    let mut labels = BTreeMap::new();
    labels.insert("ai.backend.bai.test".to_string(), name.clone());
    let spec = ContainerSpec { name, image, labels, init: true, memory_limit: Some(256 << 20), ..Default::default() };
    let id = runtime.create(&spec).await.expect("create the kernel container");
    runtime.start(&id).await.expect("start the kernel container");
    Some((Arc::new(runtime), id, cleanup))
}

/// A runner in a fresh kernel container.
async fn runner(test: &str) -> Option<(KernelRunner, Cleanup)> {
    let (runtime, id, cleanup) = kernel(test).await?;
    let runner = KernelRunner::start(runtime, &id).await.expect("start the kernel runner");
    Some((runner, cleanup))
}

fn stdout(result: &ExecResult) -> String {
    text_of(&result.console, true)
}

fn stderr(result: &ExecResult) -> String {
    text_of(&result.console, false)
}

fn text_of(console: &[ConsoleItem], want_stdout: bool) -> String {
    console
        .iter()
        .filter_map(|item| match item {
            ConsoleItem::Stdout(text) if want_stdout => Some(text.as_str()),
            ConsoleItem::Stderr(text) if !want_stdout => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// Runs `code` to the end and returns the result.
async fn run(runner: &KernelRunner, code: &str) -> ExecResult {
    let result = runner.execute(None, Mode::Query, code, PATIENT).await.expect("execute");
    assert_eq!(result.status, RunStatus::Finished, "{code:?} did not finish: {result:?}");
    result
}

#[tokio::test]
async fn batch_commands_report_their_exit_code_and_output() {
    let Some((runtime, id, _cleanup)) = kernel("batch").await else { return };
    let result = run_batch(&*runtime, &id, Some("echo building"), "echo hi; echo oops >&2; exit 3", Some(PATIENT))
        .await
        .expect("batch");
    assert_eq!(result.status, RunStatus::Finished);
    assert_eq!((result.build_exit_code, result.exit_code), (Some(0), Some(3)));
    // The engine keeps the order within stdout and within stderr, not between them.
    assert_eq!(text_of(&result.console, true), "building\nhi\n");
    assert_eq!(text_of(&result.console, false), "oops\n");

    // A failing build stops the job before the command.
    let result = run_batch(&*runtime, &id, Some("exit 2"), "echo never", Some(PATIENT)).await.expect("batch");
    assert_eq!((result.build_exit_code, result.exit_code), (Some(2), Some(2)));
    assert!(result.console.is_empty(), "{:?}", result.console);

    // Past its time limit the job ends as exec-timeout.
    let result =
        run_batch(&*runtime, &id, None, "echo started; sleep 60", Some(Duration::from_secs(2))).await.expect("batch");
    assert_eq!((result.status, result.exit_code), (RunStatus::ExecTimeout, None));
    assert_eq!(result.console, vec![ConsoleItem::Stdout("started\n".into())]);
}

#[tokio::test]
async fn query_runs_share_a_namespace_and_report_errors() {
    let Some((runner, _cleanup)) = runner("query").await else { return };
    assert!(runner.status(PATIENT).await.expect("status").started_at > 0.0);

    let first = run(&runner, "x = 40").await;
    assert_eq!((first.exit_code, first.console.clone()), (Some(0), vec![]));
    assert_eq!(first.run_id.len(), 32);
    let second = run(&runner, "print(x + 2)").await;
    assert_eq!((second.exit_code, stdout(&second)), (Some(0), "42\n".to_string()));
    // A last expression is shown as a REPL shows it.
    let shown = run(&runner, "y = [x]\ny * 2").await;
    assert_eq!(stdout(&shown), "[40, 40]\n");

    let failed = run(&runner, "def f():\n    return 1 / 0\nf()").await;
    assert_eq!(failed.exit_code, Some(1));
    let traceback = stderr(&failed);
    assert!(traceback.starts_with("Traceback (most recent call last):"), "{traceback}");
    assert!(traceback.contains("ZeroDivisionError: division by zero"), "{traceback}");
    assert!(!traceback.contains("bai_runner"), "the runner's own frames leak: {traceback}");

    let syntax = run(&runner, "def (").await;
    assert_eq!(syntax.exit_code, Some(1));
    assert!(stderr(&syntax).contains("SyntaxError"), "{syntax:?}");
    // The namespace survives errors.
    assert_eq!(stdout(&run(&runner, "print(x)").await), "40\n");
    runner.close().await.expect("close");
}

#[tokio::test]
async fn query_output_of_subprocesses_and_rich_media_reaches_the_console() {
    let Some((runner, _cleanup)) = runner("subprocess").await else { return };
    let result = run(
        &runner,
        "import subprocess, os\nsubprocess.run(['echo', 'from child'])\nos.system('echo to stderr >&2')\nprint('back')",
    )
    .await;
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(stdout(&result), "from child\nback\n");
    assert_eq!(stderr(&result), "to stderr\n");

    let rich =
        run(&runner, "print('before')\nbai.display_html('<b>hi</b>')\nbai.display_media('image/png', b'\\x89PNG')")
            .await;
    assert_eq!(
        rich.console,
        vec![
            ConsoleItem::Stdout("before\n".into()),
            ConsoleItem::Html("<b>hi</b>".into()),
            ConsoleItem::Media { mime: "image/png".into(), data: "iVBORw==".into() },
        ]
    );
}

#[tokio::test]
async fn query_input_round_trip() {
    let Some((runner, _cleanup)) = runner("input").await else { return };
    let asked = runner
        .execute(Some("ask".into()), Mode::Query, "name = input('name? ')\nprint('hello', name)", PATIENT)
        .await
        .unwrap();
    assert_eq!(asked.status, RunStatus::WaitingInput, "{asked:?}");
    assert_eq!(asked.options, Some(serde_json::json!({"is_password": false})));
    assert_eq!(stdout(&asked), "name? ");
    let answered = runner.execute(Some("ask".into()), Mode::Input, "bob", PATIENT).await.unwrap();
    assert_eq!((answered.status, answered.exit_code), (RunStatus::Finished, Some(0)));
    assert_eq!(stdout(&answered), "hello bob\n");

    // An interrupt ends the wait; the traceback shows the user's code only.
    let asked = runner.execute(Some("again".into()), Mode::Query, "input()", PATIENT).await.unwrap();
    assert_eq!(asked.status, RunStatus::WaitingInput, "{asked:?}");
    runner.interrupt().await.unwrap();
    let stopped = runner.execute(Some("again".into()), Mode::Continue, "", PATIENT).await.unwrap();
    assert_eq!((stopped.status, stopped.exit_code), (RunStatus::Finished, Some(1)));
    let traceback = stderr(&stopped);
    assert!(traceback.ends_with("KeyboardInterrupt\n") && traceback.contains("<cell "), "{traceback}");
    assert!(!traceback.contains("bai_runner") && !traceback.contains("queue.py"), "{traceback}");
}

#[tokio::test]
async fn query_long_runs_continue_and_can_be_interrupted() {
    let Some((runner, _cleanup)) = runner("continue").await else { return };
    let code = "import time\nfor i in range(4):\n    print(i)\n    time.sleep(0.5)";
    let first = runner.execute(Some("loop".into()), Mode::Query, code, BRIEF).await.unwrap();
    assert_eq!((first.status, first.exit_code), (RunStatus::Continued, None));
    let mut printed = stdout(&first);
    let last = loop {
        let next = runner.execute(Some("loop".into()), Mode::Continue, "", PATIENT).await.unwrap();
        printed += &stdout(&next);
        if next.status != RunStatus::Continued {
            break next;
        }
    };
    assert_eq!((last.status, last.exit_code), (RunStatus::Finished, Some(0)));
    assert_eq!(printed, "0\n1\n2\n3\n");

    let spinning = runner.execute(Some("spin".into()), Mode::Query, "while True: pass", BRIEF).await.unwrap();
    assert_eq!(spinning.status, RunStatus::Continued);
    runner.interrupt().await.unwrap();
    let stopped = runner.execute(Some("spin".into()), Mode::Continue, "", PATIENT).await.unwrap();
    assert_eq!((stopped.status, stopped.exit_code), (RunStatus::Finished, Some(1)));
    assert!(stderr(&stopped).contains("KeyboardInterrupt"), "{stopped:?}");

    // A sleeping run is woken by the interrupt too, and the kernel goes on.
    let sleeping =
        runner.execute(Some("nap".into()), Mode::Query, "import time; time.sleep(600)", BRIEF).await.unwrap();
    assert_eq!(sleeping.status, RunStatus::Continued);
    runner.interrupt().await.unwrap();
    let woken = runner.execute(Some("nap".into()), Mode::Continue, "", PATIENT).await.unwrap();
    assert_eq!((woken.status, woken.exit_code), (RunStatus::Finished, Some(1)));
    assert_eq!(stdout(&run(&runner, "print('still here')").await), "still here\n");
}

#[tokio::test]
async fn query_runs_wait_for_each_other() {
    let Some((runner, _cleanup)) = runner("queue").await else { return };
    let runner = Arc::new(runner);
    let first =
        runner.execute(Some("a".into()), Mode::Query, "import time; time.sleep(1); print('a')", BRIEF).await.unwrap();
    assert_eq!(first.status, RunStatus::Continued);
    let second = runner.execute(Some("b".into()), Mode::Query, "print('b')", PATIENT).await.unwrap();
    assert_eq!((second.status, stdout(&second)), (RunStatus::Finished, "b\n".to_string()));
    let first = runner.execute(Some("a".into()), Mode::Continue, "", PATIENT).await.unwrap();
    assert_eq!((first.status, stdout(&first)), (RunStatus::Finished, "a\n".to_string()));
}

/// The same runner on the process runtime, with the host's python3.
#[tokio::test]
async fn query_on_the_process_runtime() {
    if std::process::Command::new("python3").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        assert!(std::env::var("BAI_REQUIRE_SERVICES").as_deref() != Ok("1"), "python3 is missing on this host");
        eprintln!("skipping: no python3 on this host");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(ProcessRuntime::new(dir.path()).unwrap());
    let spec = ContainerSpec {
        name: unique_name("process-query"),
        image: HOST_IMAGE.into(),
        cmd: vec!["sleep".into(), "300".into()],
        ..Default::default()
    };
    let id = runtime.create(&spec).await.unwrap();
    runtime.start(&id).await.unwrap();
    let config = RunnerConfig { runner_path: ".bai/bai_runner.py".into(), ..RunnerConfig::default() };
    // In a task of its own, so that the container is removed even when an assertion fails.
    let outcome = tokio::spawn({
        let (runtime, id) = (runtime.clone(), id.clone());
        async move {
            let runner = KernelRunner::start_with(runtime, &id, config).await.expect("start the runner");
            run(&runner, "x = 40").await;
            let result =
                run(&runner, "print(x + 2)\nimport subprocess; _ = subprocess.run(['echo', 'from child'])").await;
            assert_eq!(stdout(&result), "42\nfrom child\n");
            runner.close().await.unwrap();
        }
    })
    .await;
    runtime.destroy(&id).await.unwrap();
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}
