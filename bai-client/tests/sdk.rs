//! The SDK against a real manager: an in-process all-in-one (`bai_manager::local`) whose agent
//! runs kernels as local processes (image `host`, Python code).

use std::time::Duration;

use bai_client::{Client, Config, Error, EventScope, ExecItem, ExecRequest, NewVFolder, SessionSpec, StatusFilter};
use bai_manager::local::{LocalManager, EXAMPLE_ADMIN, EXAMPLE_USER};
use futures::StreamExt;

fn client(local: &LocalManager, key: (&str, &str)) -> Client {
    Client::new(Config::new(&local.endpoint(), key.0, key.1).unwrap()).unwrap()
}

async fn with_timeout<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f).await.unwrap_or_else(|_| panic!("{what} took over 60 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_from_create_to_destroy() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalManager::start(dir.path()).await.unwrap();
    let user = client(&local, EXAMPLE_USER);

    assert_eq!(user.server_version().await.unwrap().version, "v7.20230615");

    let spec = SessionSpec::new("host").name("sdk-main").resource("cpu", "1").resource("mem", "256");
    let created = with_timeout("create", user.create_session(&spec)).await.unwrap();
    assert_eq!((created.status.as_str(), created.created), ("RUNNING", true), "{created:?}");
    // The same name and image again reuses the session.
    let again = user.create_session(&spec).await.unwrap();
    assert_eq!((again.session_id, again.created), (created.session_id, false));

    let page = user.list_sessions(&StatusFilter::Active, None, 10, 0).await.unwrap();
    assert_eq!(page.total_count, 1);
    assert_eq!((page.items[0].name.as_str(), page.items[0].status.as_str()), ("sdk-main", "RUNNING"));
    assert!(page.items[0].occupying_slots.contains_key("cpu"), "{:?}", page.items[0]);

    let info = user.session_info("sdk-main").await.unwrap();
    assert_eq!(info.id, created.session_id);
    assert_eq!(info.containers.len(), 1);
    assert_eq!(info.containers[0].cluster_role.as_deref(), Some("main"));

    // Execute as a stream: stdout and stderr in order, then the exit code.
    let code = "import sys\nprint('out', flush=True)\nprint('err', file=sys.stderr, flush=True)\nprint(6 * 7)";
    let mut run = user.execute("sdk-main", &ExecRequest::Query(code.into())).await.unwrap();
    let mut items = Vec::new();
    while let Some(item) = with_timeout("execute", run.next()).await {
        items.push(item.unwrap());
    }
    let stdout: String =
        items.iter().filter_map(|i| if let ExecItem::Stdout(s) = i { Some(s.as_str()) } else { None }).collect();
    let stderr: String =
        items.iter().filter_map(|i| if let ExecItem::Stderr(s) = i { Some(s.as_str()) } else { None }).collect();
    assert_eq!((stdout.as_str(), stderr.as_str()), ("out\n42\n", "err\n"), "{items:?}");
    assert_eq!(items.last(), Some(&ExecItem::Finished { exit_code: 0 }));

    // Input: the stream asks, the caller answers.
    let mut run = user
        .execute(&created.session_id.to_string(), &ExecRequest::Query("x = input()\nprint(x * 2)".into()))
        .await
        .unwrap();
    let mut answered = false;
    let mut out = String::new();
    while let Some(item) = with_timeout("execute with input", run.next()).await {
        match item.unwrap() {
            ExecItem::WaitingInput { is_password } => {
                assert!(!is_password);
                run.send_input("ab").await.unwrap();
                answered = true;
            }
            ExecItem::Stdout(s) => out.push_str(&s),
            _ => {}
        }
    }
    assert!(answered);
    assert_eq!(out, "abab\n");

    // Files: upload (names with directories), list, download into a fresh directory.
    let local_file = dir.path().join("data.txt");
    std::fs::write(&local_file, "payload").unwrap();
    user.upload_to_session("sdk-main", &[(local_file.clone(), "sub/data file.txt".into())]).await.unwrap();
    let files = user.session_files("sdk-main", "sub").await.unwrap();
    assert_eq!(files.iter().map(|f| (f.filename.as_str(), f.size)).collect::<Vec<_>>(), [("data file.txt", 7)]);
    let dest = dir.path().join("downloaded");
    let written = user.download_from_session("sdk-main", &["sub/data file.txt".into()], &dest).await.unwrap();
    assert_eq!(written.len(), 1);
    assert_eq!(std::fs::read_to_string(&written[0]).unwrap(), "payload");
    assert!(user.session_files("sdk-main", "../..").await.is_err(), "paths stay inside /home/work");

    assert!(user.session_logs("sdk-main").await.is_ok());

    // Events: destroy and watch the session end.
    let mut events = user.session_events("sdk-main", EventScope::Session).await.unwrap();
    user.destroy_session("sdk-main", false).await.unwrap();
    let mut names = Vec::new();
    while let Some(event) = with_timeout("events", events.next()).await {
        let event = event.unwrap();
        assert_eq!(event.session_id, Some(created.session_id));
        names.push(event.name.clone());
        if event.is_final() {
            break;
        }
    }
    assert_eq!(names.last().map(String::as_str), Some("session_terminated"), "{names:?}");
    let dead = user.list_sessions(&StatusFilter::Dead, None, 10, 0).await.unwrap();
    assert_eq!(dead.items.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["sdk-main"]);
    local.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_keep_the_servers_problem_details() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalManager::start(dir.path()).await.unwrap();
    let user = client(&local, EXAMPLE_USER);

    let missing = user.destroy_session("no-such-session", false).await.unwrap_err();
    assert_eq!(missing.status(), Some(404));
    assert_eq!(missing.problem().unwrap().kind(), "object-not-found");
    assert!(missing.hint().unwrap().contains("bai session ls"), "{:?}", missing.hint());
    assert!(user.session_info("no-such-session").await.unwrap_err().is_not_found());

    let bad = user.create_session(&SessionSpec::new("host").name("x")).await.unwrap_err();
    assert_eq!(bad.status(), Some(400), "{bad}");
    assert_eq!(bad.problem().unwrap().kind(), "invalid-api-params");
    assert!(bad.to_string().contains("name"), "{bad}");

    let wrong_secret = client(&local, (EXAMPLE_USER.0, "not-the-secret"));
    let denied = wrong_secret.list_vfolders().await.unwrap_err();
    assert_eq!(denied.status(), Some(401));
    assert!(denied.hint().unwrap().contains("BACKEND_SECRET_KEY"));

    // A regular user may not list agents: a GraphQL error, kept as such.
    match user.list_agents(None, None, 10, 0).await.unwrap_err() {
        Error::GraphQl { errors } => assert!(!errors.is_empty()),
        other => panic!("expected a GraphQL error, got {other:?}"),
    }
    assert!(matches!(user.list_sessions(&StatusFilter::All, None, 0, 0).await, Err(Error::InvalidInput { .. })));

    // Nothing listens here: unreachable, with a hint, after the configured retries.
    let mut config = Config::new("http://127.0.0.1:9", EXAMPLE_USER.0, EXAMPLE_USER.1).unwrap();
    config.max_retries = 0;
    let offline = Client::new(config).unwrap().list_vfolders().await.unwrap_err();
    assert!(matches!(offline, Error::Unreachable { .. }), "{offline:?}");
    assert!(offline.hint().unwrap().contains("BACKEND_ENDPOINT"));
    local.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_upload_and_download_with_progress() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalManager::start(dir.path()).await.unwrap();
    let user = client(&local, EXAMPLE_USER);

    let hosts = user.vfolder_hosts().await.unwrap();
    assert!(hosts.default.is_some());
    let folder = user.create_vfolder(&NewVFolder { name: "sdk-data".into(), ..NewVFolder::default() }).await.unwrap();
    assert_eq!(folder.name, "sdk-data");
    assert_eq!(user.list_vfolders().await.unwrap().iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["sdk-data"]);

    // A file over one chunk, to see progress move in steps.
    let big = dir.path().join("big.bin");
    let content: Vec<u8> = (0..(bai_client::vfolder::UPLOAD_CHUNK + 1000)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&big, &content).unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let report = |done: u64, total: u64| seen.lock().unwrap().push((done, total));
    user.vfolder_mkdir("sdk-data", "in/deep", true).await.unwrap();
    let sent = user.vfolder_upload("sdk-data", &big, "in/deep/big.bin", &report).await.unwrap();
    assert_eq!(sent, content.len() as u64);
    let steps = seen.lock().unwrap().clone();
    assert_eq!(steps.first(), Some(&(0, sent)));
    assert_eq!(steps.last(), Some(&(sent, sent)));
    assert!(steps.len() >= 3, "{steps:?}");

    let files = user.vfolder_files("sdk-data", "in/deep").await.unwrap();
    assert_eq!(files.iter().map(|f| (f.filename.as_str(), f.size)).collect::<Vec<_>>(), [("big.bin", sent)]);
    let info = user.vfolder_info("sdk-data").await.unwrap();
    assert_eq!(info.num_files, Some(1));

    let back = dir.path().join("back.bin");
    let got = user
        .vfolder_download("sdk-data", "in/deep/big.bin", &back, false, &bai_client::vfolder::no_progress)
        .await
        .unwrap();
    assert_eq!(got, sent);
    assert_eq!(std::fs::read(&back).unwrap(), content);
    // An existing destination is kept unless overwriting is asked for.
    let refused =
        user.vfolder_download("sdk-data", "in/deep/big.bin", &back, false, &bai_client::vfolder::no_progress).await;
    assert!(matches!(refused, Err(Error::InvalidInput { .. })), "{refused:?}");
    let missing = user
        .vfolder_download("sdk-data", "nope.bin", &dir.path().join("n"), false, &bai_client::vfolder::no_progress)
        .await;
    assert_eq!(missing.unwrap_err().status(), Some(404));
    assert!(!dir.path().join("n").exists() && !dir.path().join("n.bai-partial").exists());

    user.vfolder_delete_files("sdk-data", &["in".into()], true).await.unwrap();
    assert!(user.vfolder_files("sdk-data", ".").await.unwrap().is_empty());
    user.rename_vfolder("sdk-data", "sdk-data2").await.unwrap();
    user.delete_vfolder("sdk-data2").await.unwrap();
    assert!(user.list_vfolders().await.unwrap().is_empty());
    local.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_and_presets() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalManager::start(dir.path()).await.unwrap();
    let admin = client(&local, EXAMPLE_ADMIN);
    let user = client(&local, EXAMPLE_USER);

    let own = user.own_keypair().await.unwrap();
    assert_eq!((own.access_key.as_str(), own.is_admin), (EXAMPLE_USER.0, false));
    assert!(admin.own_keypair().await.unwrap().is_admin);

    let raw = admin.graphql("query { keypair { access_key } }", serde_json::json!({})).await.unwrap();
    assert_eq!(raw["keypair"]["access_key"], EXAMPLE_ADMIN.0);
    let broken = admin.graphql("query { no_such_root }", serde_json::json!({})).await.unwrap_err();
    assert!(matches!(broken, Error::GraphQl { .. }), "{broken:?}");

    // The superadmin's view of the cluster.
    let agents = admin.list_agents(None, None, 10, 0).await.unwrap();
    assert_eq!(agents.total_count, 1);
    assert!(agents.items[0].available_slots.contains_key("cpu"), "{:?}", agents.items[0]);
    assert!(admin.list_domains().await.unwrap().iter().any(|d| d.name == "default"));
    assert!(admin.list_groups(Some("default")).await.unwrap().iter().any(|g| g.name == "default"));
    assert!(!admin.list_scaling_groups().await.unwrap().is_empty());
    assert!(admin.list_resource_policies().await.unwrap().iter().any(|p| p.name == "default"));
    let report = admin.rescan_images().await.unwrap();
    assert!(report.starts_with("scanned 1 image tag(s) on 1 agent(s)"), "{report}");
    let images = admin.list_images().await.unwrap();
    assert!(images.iter().any(|i| i.name == "host"), "{images:?}");
    assert!(matches!(user.rescan_images().await, Err(Error::GraphQl { .. })));

    // Users and keypairs: create, use, deactivate (then refused), reactivate.
    let mut new_user = bai_client::NewUser::new("carol@example.com", "a-long-password");
    new_user.full_name = "Carol".into();
    let carol = admin.create_user(&new_user).await.unwrap();
    assert_eq!((carol.email.as_str(), carol.role.as_deref()), ("carol@example.com", Some("user")));
    let users = admin.list_users(None, 100, 0).await.unwrap();
    assert!(users.items.iter().any(|u| u.email == "carol@example.com"));
    let again = admin.create_user(&new_user).await.unwrap_err();
    assert!(matches!(again, Error::Rejected { .. }), "{again:?}");
    let (ak, sk) = admin.create_keypair("carol@example.com", "default", false, 1000).await.unwrap();
    let carol_client = client(&local, (&ak, &sk));
    assert_eq!(carol_client.own_keypair().await.unwrap().user_id, "carol@example.com");
    let keys = admin.list_keypairs(Some("carol@example.com"), None, 100, 0).await.unwrap();
    assert!(keys.items.iter().any(|k| k.access_key == ak));
    admin.set_keypair_active(&ak, false).await.unwrap();
    assert_eq!(carol_client.list_vfolders().await.unwrap_err().status(), Some(401));
    admin.set_keypair_active(&ak, true).await.unwrap();
    assert!(carol_client.list_vfolders().await.is_ok());
    admin.delete_keypair(&ak).await.unwrap();
    assert_eq!(carol_client.list_vfolders().await.unwrap_err().status(), Some(401));
    // A regular user cannot administer.
    assert!(matches!(user.create_keypair("carol@example.com", "default", true, 1).await, Err(Error::GraphQl { .. })));

    let presets = user.list_presets().await.unwrap();
    let check = user.check_presets(None).await.unwrap();
    assert_eq!(check.presets.len(), presets.len());
    assert!(check.keypair_remaining.contains_key("cpu"), "{check:?}");
    local.shutdown().await;
}

/// A server that answers `statuses` in turn (with `Retry-After: 0`), then 200 `[]`.
async fn flaky_server(statuses: Vec<u16>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::http::StatusCode;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().fallback(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let status = statuses.get(n).copied().unwrap_or(200);
        async move {
            let status = StatusCode::from_u16(status).unwrap();
            let body = if status.is_success() {
                "[]".to_string()
            } else {
                r#"{"type": "https://api.backend.ai/probs/rate-limit-exceeded", "title": "Slow down."}"#.to_string()
            };
            (status, [("retry-after", "0"), ("content-type", "application/json")], body)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), calls)
}

#[tokio::test]
async fn retries_after_429_and_503_then_reports_the_last_answer() {
    use std::sync::atomic::Ordering;
    let (endpoint, calls) = flaky_server(vec![429, 503]).await;
    let client = Client::new(Config::new(&endpoint, EXAMPLE_USER.0, EXAMPLE_USER.1).unwrap()).unwrap();
    assert!(client.list_vfolders().await.unwrap().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let (endpoint, calls) = flaky_server(vec![429; 10]).await;
    let mut config = Config::new(&endpoint, EXAMPLE_USER.0, EXAMPLE_USER.1).unwrap();
    config.max_retries = 2;
    let err = Client::new(config).unwrap().list_vfolders().await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 3, "one try and two retries");
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.problem().unwrap().title, "Slow down.");
    // Other errors are not retried.
    let (endpoint, calls) = flaky_server(vec![500]).await;
    let client = Client::new(Config::new(&endpoint, EXAMPLE_USER.0, EXAMPLE_USER.1).unwrap()).unwrap();
    assert_eq!(client.list_vfolders().await.unwrap_err().status(), Some(500));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_creation_reports_progress_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalManager::start(dir.path()).await.unwrap();
    let user = client(&local, EXAMPLE_USER);

    let mut seen = Vec::new();
    let spec = SessionSpec::new("host").name("watched-1").resource("cpu", "1");
    let created = with_timeout("watched create", user.create_session_watched(&spec, |e| seen.push(e.name.clone())))
        .await
        .unwrap();
    assert_eq!(created.status, "RUNNING", "{created:?}");
    assert!(seen.iter().any(|n| n == "session_started"), "{seen:?}");
    assert!(seen.iter().any(|n| n.starts_with("kernel_")), "{seen:?}");
    assert_eq!(user.run_code("watched-1", "print('up')").await.unwrap().stdout, "up\n");

    // More than the agent has: it stays queued, and the wait gives up after max_wait_seconds.
    let mut spec = SessionSpec::new("host").name("watched-2").resource("cpu", "4096");
    spec.max_wait_seconds = 2;
    let waited = with_timeout("timed-out create", user.create_session_watched(&spec, |_| {})).await.unwrap();
    assert_eq!(waited.status, "TIMEOUT");
    let info = user.session_info("watched-2").await.unwrap();
    assert_eq!(info.status, "PENDING");
    user.destroy_session("watched-2", false).await.unwrap();
    assert_eq!(user.session_info(&waited.session_id.to_string()).await.unwrap().status, "CANCELLED");
    local.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_are_shared_invited_and_left() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalManager::start(dir.path()).await.unwrap();
    let admin = client(&local, EXAMPLE_ADMIN);
    let user = client(&local, EXAMPLE_USER);
    admin.create_user(&bai_client::NewUser::new("friend@lablup.com", "s3cret!")).await.unwrap();
    let (ak, sk) = admin.create_keypair("friend@lablup.com", "default", false, 1000).await.unwrap();
    let friend = client(&local, (&ak, &sk));
    let friend_email = vec!["friend@lablup.com".to_string()];

    user.create_vfolder(&NewVFolder { name: "team-data".into(), ..NewVFolder::default() }).await.unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "shared notes").unwrap();
    user.vfolder_upload("team-data", &file, "notes.txt", &bai_client::vfolder::no_progress).await.unwrap();

    // Checked before sending, and refused by the server without a change.
    assert!(matches!(user.share_vfolder("team-data", "rx", &friend_email).await, Err(Error::InvalidInput { .. })));
    assert!(matches!(user.share_vfolder("team-data", "ro", &[]).await, Err(Error::InvalidInput { .. })));
    let unknown = user.share_vfolder("team-data", "ro", &["ghost@lablup.com".into()]).await.unwrap_err();
    assert_eq!(unknown.status(), Some(404));
    assert!(unknown.to_string().contains("ghost@lablup.com"), "{unknown}");
    let own = user.share_vfolder("team-data", "ro", &["user@lablup.com".into()]).await.unwrap_err();
    assert_eq!(own.status(), Some(400), "{own}");
    assert!(friend.list_vfolders().await.unwrap().is_empty());

    // Shared read-only: the friend reads it but cannot write.
    let shared = user.share_vfolder("team-data", "ro", &friend_email).await.unwrap();
    assert_eq!(shared, friend_email);
    let seen = friend.list_vfolders().await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].name.as_str(), seen[0].is_owner, seen[0].permission.as_deref()),
        ("team-data", false, Some("ro"))
    );
    let back = dir.path().join("back.txt");
    friend.vfolder_download("team-data", "notes.txt", &back, false, &bai_client::vfolder::no_progress).await.unwrap();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "shared notes");
    let denied = friend.vfolder_mkdir("team-data", "mine", false).await.unwrap_err();
    assert_eq!(denied.status(), Some(403), "{denied}");
    assert_eq!(user.unshare_vfolder("team-data", &friend_email).await.unwrap(), friend_email);
    assert!(friend.vfolder_info("team-data").await.unwrap_err().is_not_found());

    // Invited, accepted, used, left.
    assert_eq!(user.invite_to_vfolder("team-data", "rw", &friend_email).await.unwrap(), friend_email);
    assert!(user.invite_to_vfolder("team-data", "rw", &friend_email).await.unwrap().is_empty(), "already pending");
    assert!(user.vfolder_invitations().await.unwrap().is_empty());
    let invitations = friend.vfolder_invitations().await.unwrap();
    assert_eq!(invitations.len(), 1);
    let inv = &invitations[0];
    assert_eq!(
        (inv.inviter.as_str(), inv.permission.as_str(), inv.vfolder_name.as_str(), inv.state.as_str()),
        ("user@lablup.com", "rw", "team-data", "pending")
    );
    assert!(friend.accept_invitation("not-an-id").await.unwrap_err().status() == Some(400));
    friend.accept_invitation(&inv.id).await.unwrap();
    assert_eq!(friend.vfolder_info("team-data").await.unwrap().permission.as_deref(), Some("rw"));
    friend.vfolder_mkdir("team-data", "from-friend", false).await.unwrap();
    assert!(friend.vfolder_invitations().await.unwrap().is_empty());
    friend.leave_vfolder("team-data").await.unwrap();
    assert!(friend.list_vfolders().await.unwrap().is_empty());
    assert_eq!(user.leave_vfolder("team-data").await.unwrap_err().status(), Some(400), "owners delete instead");

    // A rejected invitation gives nothing.
    user.invite_to_vfolder("team-data", "ro", &friend_email).await.unwrap();
    let id = friend.vfolder_invitations().await.unwrap()[0].id.clone();
    friend.reject_invitation(&id).await.unwrap();
    assert!(friend.vfolder_invitations().await.unwrap().is_empty());
    assert!(friend.vfolder_info("team-data").await.unwrap_err().is_not_found());
    local.shutdown().await;
}
