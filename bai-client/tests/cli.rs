//! The `bai` command line against an in-process manager.

use std::path::Path;

use bai_manager::local::{LocalManager, EXAMPLE_ADMIN, EXAMPLE_USER};
use expect_test::expect;
use serde_json::Value;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `bai` with `args` as `key`, from `cwd`, with no config file.
async fn bai(local: &LocalManager, key: (&str, &str), cwd: &Path, args: &[&str]) -> Out {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_bai"))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BAI_CONFIG", cwd.join("no-such-config.toml"))
        .env("BACKEND_ENDPOINT", local.endpoint())
        .env("BACKEND_ACCESS_KEY", key.0)
        .env("BACKEND_SECRET_KEY", key.1)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run bai");
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn json(out: &Out) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {} / {}", out.stdout, out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalManager::start(dir.path()).await.unwrap();
    let cwd = dir.path();

    let out =
        bai(&local, EXAMPLE_USER, cwd, &["-o", "json", "session", "create", "host", "-n", "cli-main", "-r", "cpu=1"])
            .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(json(&out)["status"], "RUNNING");

    let out = bai(&local, EXAMPLE_USER, cwd, &["session", "ls"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut lines = out.stdout.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAME", "ID", "IMAGE", "TYPE", "STATUS", "CREATED", "SLOTS"]
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with("cli-main ") && row.contains(" RUNNING "), "{row}");

    let out = bai(&local, EXAMPLE_USER, cwd, &["session", "exec", "cli-main", "-c", "print(2 ** 10)"]).await;
    assert_eq!((out.code, out.stdout.as_str()), (0, "1024\n"), "{}", out.stderr);

    // `run`: output streamed, exit code passed through, session removed.
    let code = "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\nsys.exit(3)";
    let out = bai(&local, EXAMPLE_USER, cwd, &["-q", "run", "host", "-c", code, "--rm"]).await;
    assert_eq!(out.stdout, "to stdout\n", "{}", out.stderr);
    assert!(out.stderr.contains("to stderr"), "{}", out.stderr);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let out = bai(&local, EXAMPLE_USER, cwd, &["-o", "json", "session", "ls"]).await;
    assert_eq!(json(&out)["total_count"], 1, "only cli-main is left: {}", out.stdout);

    // Files in and out of a session.
    std::fs::create_dir(cwd.join("sub")).unwrap();
    std::fs::write(cwd.join("sub/in.txt"), "hello").unwrap();
    let out = bai(&local, EXAMPLE_USER, cwd, &["session", "upload", "cli-main", "sub/in.txt"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out =
        bai(&local, EXAMPLE_USER, cwd, &["session", "download", "cli-main", "sub/in.txt", "--dest", "back"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(cwd.join("back/in.txt")).unwrap(), "hello");

    let out = bai(&local, EXAMPLE_USER, cwd, &["session", "rm", "cli-main", "no-such-session"]).await;
    assert_eq!(out.code, 1, "one of two failed");
    expect![[r#"
        ✓ cli-main destroyed
        error: DELETE /session/no-such-session failed with 404: No such session
          hint: `bai session ls` lists your sessions; use the name or the id it shows
    "#]]
    .assert_eq(&out.stderr);
    local.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_admin_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalManager::start(dir.path()).await.unwrap();
    let cwd = dir.path();

    let out = bai(&local, EXAMPLE_USER, cwd, &["vfolder", "create", "cli-data"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::create_dir_all(cwd.join("up/nested")).unwrap();
    std::fs::write(cwd.join("up/nested/a.txt"), "abc").unwrap();
    let out = bai(&local, EXAMPLE_USER, cwd, &["vfolder", "upload", "cli-data", "nested/a.txt", "-b", "up"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = bai(&local, EXAMPLE_USER, cwd, &["-o", "json", "vfolder", "files", "cli-data", "nested"]).await;
    assert_eq!(json(&out)[0]["filename"], "a.txt");
    let out = bai(&local, EXAMPLE_USER, cwd, &["vfolder", "download", "cli-data", "nested/a.txt", "-b", "down"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(cwd.join("down/nested/a.txt")).unwrap(), "abc");
    let out = bai(&local, EXAMPLE_USER, cwd, &["vfolder", "download", "cli-data", "nested/a.txt", "-b", "down"]).await;
    assert_eq!(out.code, 1, "an existing file is kept");
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    let out = bai(&local, EXAMPLE_USER, cwd, &["vfolder", "download", "cli-data", "../escape.txt"]).await;
    expect![[r#"
        error: ../escape.txt: must not contain `..`
    "#]]
    .assert_eq(&out.stderr);

    // Admin: the superadmin sees the agent; a regular user gets a GraphQL error.
    let out = bai(&local, EXAMPLE_ADMIN, cwd, &["-o", "json", "admin", "keypair", "me"]).await;
    assert_eq!((out.code, json(&out)["is_admin"].as_bool()), (0, Some(true)), "{}", out.stderr);
    let out = bai(&local, EXAMPLE_ADMIN, cwd, &["admin", "agents"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 2, "a header and the one agent: {}", out.stdout);
    assert!(out.stdout.lines().nth(1).unwrap().contains(" ALIVE "), "{}", out.stdout);
    let out = bai(&local, EXAMPLE_USER, cwd, &["admin", "agents"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.starts_with("error: GraphQL: "), "{}", out.stderr);

    let out = bai(&local, EXAMPLE_USER, cwd, &["-o", "json", "preset", "check"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(json(&out)["keypair_remaining"].is_object());

    // Errors: bad keys, bad arguments, a dead endpoint, usage.
    let out = bai(&local, (EXAMPLE_USER.0, "wrong"), cwd, &["-o", "json", "vfolder", "ls"]).await;
    assert_eq!(out.code, 1);
    assert_eq!(json(&out)["status"], 401);
    let out = bai(&local, EXAMPLE_USER, cwd, &["session", "create", "host", "-r", "cpu"]).await;
    expect![[r#"
        error: --resource: "cpu" is not KEY=VALUE
    "#]]
    .assert_eq(&out.stderr);
    let out = bai(&local, EXAMPLE_USER, cwd, &["--endpoint", "localhost:1", "vfolder", "ls"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("BACKEND_ENDPOINT: \"localhost:1\""), "{}", out.stderr);
    let out = bai(&local, EXAMPLE_USER, cwd, &["session", "ls", "--all", "--dead"]).await;
    assert_eq!(out.code, 2, "usage errors exit 2");

    let out = bai(&local, EXAMPLE_USER, cwd, &["completions", "bash"]).await;
    assert!(out.stdout.contains("_bai()"), "{}", &out.stdout[..200.min(out.stdout.len())]);
    let out = bai(&local, EXAMPLE_USER, cwd, &["-o", "json", "version"]).await;
    assert_eq!(json(&out)["api"], "v7.20230615");
    local.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_are_shared_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalManager::start(dir.path()).await.unwrap();
    let cwd = dir.path();
    // The superadmin is the other party here: invitations and shares work for any user.
    assert_eq!(bai(&local, EXAMPLE_USER, cwd, &["vfolder", "create", "cli-shared"]).await.code, 0);

    let out = bai(&local, EXAMPLE_USER, cwd, &["vfolder", "share", "cli-shared", "admin@lablup.com", "-p", "ro"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.split_whitespace().collect::<Vec<_>>(), ["EMAIL", "PERMISSION", "admin@lablup.com", "ro"]);
    expect![[r#"
        ✓ cli-shared shared (ro) with 1 user(s)
    "#]]
    .assert_eq(&out.stderr);
    let out = bai(&local, EXAMPLE_ADMIN, cwd, &["-o", "json", "vfolder", "info", "cli-shared"]).await;
    assert_eq!((json(&out)["permission"].as_str(), json(&out)["is_owner"].as_bool()), (Some("ro"), Some(false)));
    let out =
        bai(&local, EXAMPLE_USER, cwd, &["-o", "json", "vfolder", "unshare", "cli-shared", "admin@lablup.com"]).await;
    assert_eq!(json(&out), serde_json::json!(["admin@lablup.com"]), "{}", out.stderr);
    let out = bai(&local, EXAMPLE_USER, cwd, &["vfolder", "share", "cli-shared", "nobody@lablup.com"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("nobody@lablup.com"), "{}", out.stderr);
    let out = bai(&local, EXAMPLE_USER, cwd, &["vfolder", "share", "cli-shared", "x@y", "-p", "all"]).await;
    assert_eq!(out.code, 2, "usage error: {}", out.stderr);

    // Invite, list, accept, leave.
    let out = bai(&local, EXAMPLE_USER, cwd, &["vfolder", "invite", "cli-shared", "admin@lablup.com"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("✓ invited 1 user(s) to cli-shared (rw)"), "{}", out.stderr);
    let out = bai(&local, EXAMPLE_USER, cwd, &["vfolder", "invite", "cli-shared", "admin@lablup.com"]).await;
    assert!(out.stderr.contains("nobody new was invited"), "{}", out.stderr);
    let out = bai(&local, EXAMPLE_ADMIN, cwd, &["vfolder", "invitations"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut lines = out.stdout.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["ID", "FOLDER", "INVITER", "PERMISSION", "SENT"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[1..4], ["cli-shared", "user@lablup.com", "rw"]);
    let id = row[0].to_string();
    let out = bai(&local, EXAMPLE_ADMIN, cwd, &["vfolder", "accept", &id]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr, format!("✓ accepted invitation {id}\n"));
    let out = bai(&local, EXAMPLE_ADMIN, cwd, &["-o", "json", "vfolder", "invitations"]).await;
    assert_eq!(json(&out), serde_json::json!([]));
    let out = bai(&local, EXAMPLE_ADMIN, cwd, &["vfolder", "leave", "cli-shared"]).await;
    assert_eq!((out.code, out.stderr.as_str()), (0, "✓ left cli-shared\n"));
    let out = bai(&local, EXAMPLE_ADMIN, cwd, &["vfolder", "leave", "cli-shared"]).await;
    assert_eq!(out.code, 1, "no longer shared: {}", out.stderr);

    // Reject.
    assert_eq!(
        bai(&local, EXAMPLE_USER, cwd, &["vfolder", "invite", "cli-shared", "admin@lablup.com", "-p", "ro"]).await.code,
        0
    );
    let out = bai(&local, EXAMPLE_ADMIN, cwd, &["-o", "json", "vfolder", "invitations"]).await;
    let id = json(&out)[0]["id"].as_str().unwrap().to_string();
    assert_eq!(json(&out)[0]["perm"], "ro");
    let out = bai(&local, EXAMPLE_ADMIN, cwd, &["vfolder", "reject", &id]).await;
    assert_eq!((out.code, out.stderr), (0, format!("✓ rejected invitation {id}\n")));
    let out = bai(&local, EXAMPLE_ADMIN, cwd, &["vfolder", "accept", &id]).await;
    assert_eq!(out.code, 1, "already rejected");
    local.shutdown().await;
}
