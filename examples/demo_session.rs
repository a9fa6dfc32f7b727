//! A demo session against a running manager with the Rust SDK (`bai-client`): create a
//! session, stream `print(1+1)` from it, destroy it.
//!
//! ```sh
//! export BACKEND_ENDPOINT=http://127.0.0.1:8081 BACKEND_ACCESS_KEY=… BACKEND_SECRET_KEY=…
//! cargo run -p bai-examples --example demo_session -- bai/python:3.11
//! ```
//!
//! The same variables configure the `bai` command line and the official `backend.ai` client,
//! which work against the same manager.

use bai_client::{Client, ExecItem, ExecRequest, SessionSpec};
use futures::StreamExt;

async fn demo(image: &str) -> bai_client::Result<String> {
    let client = Client::from_env()?;
    let mut spec = SessionSpec::new(image).resource("cpu", "1").resource("mem", "512m");
    spec.max_wait_seconds = 120;
    println!("creating a session of {image} …");
    let session = client.create_session(&spec).await?;
    let id = session.session_id.to_string();
    println!("session {} ({id}) is {}", session.session_name, session.status);

    let mut output = String::new();
    if session.status == "RUNNING" {
        let mut run = client.execute(&id, &ExecRequest::Query("print(1+1)".into())).await?;
        while let Some(item) = run.next().await {
            match item? {
                ExecItem::Stdout(text) => output.push_str(&text),
                ExecItem::Stderr(text) => eprint!("{text}"),
                ExecItem::Finished { exit_code } => {
                    println!("print(1+1) printed {:?} (exit code {exit_code})", output.trim_end())
                }
                _ => {}
            }
        }
    }
    client.destroy_session(&id, true).await?;
    println!("session {id} destroyed");
    Ok(output)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let image = std::env::args().nth(1).unwrap_or_else(|| "bai/python:3.11".into());
    match demo(&image).await {
        Ok(output) if output.trim() == "2" => std::process::ExitCode::SUCCESS,
        Ok(output) => {
            eprintln!("demo_session: expected the output 2, got {output:?}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo_session: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("  hint: {hint}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
