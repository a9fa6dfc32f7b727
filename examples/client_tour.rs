//! A tour of the Rust SDK against a manager it starts itself (`bai_manager::local`: SQLite,
//! in-process bus, an agent running kernels as local processes): sessions, streamed
//! execution, events, folders with progress and an admin query.
//!
//! ```sh
//! cargo run -p bai-examples --example client_tour
//! ```
//!
//! Against a deployed manager, build the client with `Client::from_env()` instead.

use bai_client::{Client, Config, EventScope, ExecItem, ExecRequest, NewVFolder, SessionSpec, StatusFilter};
use bai_manager::local::{LocalManager, EXAMPLE_ADMIN};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let local = LocalManager::start(dir.path()).await?;
    let client = Client::new(Config::new(&local.endpoint(), EXAMPLE_ADMIN.0, EXAMPLE_ADMIN.1)?)?;
    println!("manager {} at {}", client.server_version().await?.manager, local.endpoint());

    // A session of the local `host` image runs Python on this machine.
    let session = client.create_session(&SessionSpec::new("host").name("tour").resource("cpu", "1")).await?;
    let mut events = client.session_events("tour", EventScope::Session).await?;

    let code = "for i in range(3):\n    print('line', i)\nx = input('name? ')\nprint('hello', x)";
    let mut run = client.execute("tour", &ExecRequest::Query(code.into())).await?;
    while let Some(item) = run.next().await {
        match item? {
            ExecItem::Stdout(text) => print!("{text}"),
            ExecItem::WaitingInput { .. } => run.send_input("SDK").await?,
            ExecItem::Finished { exit_code } => println!("(exit code {exit_code})"),
            _ => {}
        }
    }

    for s in client.list_sessions(&StatusFilter::Active, None, 10, 0).await?.items {
        println!("session {} {} {:?}", s.name, s.status, s.occupying_slots);
    }

    // A folder: upload with a progress callback, list, download.
    client.create_vfolder(&NewVFolder { name: "tour-data".into(), ..NewVFolder::default() }).await?;
    let file = dir.path().join("hello.txt");
    std::fs::write(&file, "hello from the SDK\n")?;
    let progress = |done: u64, total: u64| println!("  uploaded {done}/{total} bytes");
    client.vfolder_upload("tour-data", &file, "docs/hello.txt", &progress).await?;
    for f in client.vfolder_files("tour-data", "docs").await? {
        println!("  docs/{} ({} bytes)", f.filename, f.size);
    }

    let agents = client.list_agents(None, None, 10, 0).await?;
    println!("{} agent(s): {:?}", agents.total_count, agents.items.iter().map(|a| &a.id).collect::<Vec<_>>());

    client.destroy_session(&session.session_id.to_string(), false).await?;
    while let Some(event) = events.next().await {
        let event = event?;
        println!("event {}", event.name);
        if event.is_final() {
            break;
        }
    }
    local.shutdown().await;
    Ok(())
}
