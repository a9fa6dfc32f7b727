//! What each command does.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use bai_client::{
    Client, Config, Error, EventScope, ExecItem, ExecRequest, NewUser, NewVFolder, Result, SessionSpec, StatusFilter,
};
use clap::CommandFactory;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::output::{self, emit, opt, slots, time, Format, Table};
use crate::{AdminCmd, Cli, Command, KeypairCmd, NewSessionArgs, PresetCmd, Scope, SessionCmd, UserCmd, VfolderCmd};

/// Runs the command line and returns the exit code.
pub async fn run(cli: &Cli) -> i32 {
    match dispatch(cli).await {
        Ok(code) => code,
        Err(error) => {
            match cli.output {
                Format::Json => println!("{}", output::describe_json(&error)),
                Format::Table => eprint!("{}", output::describe(&error)),
            }
            1
        }
    }
}

fn client(cli: &Cli) -> Result<Client> {
    let mut config = Config::load()?;
    if let Some(endpoint) = &cli.endpoint {
        config.apply_env(|key| (key == "BACKEND_ENDPOINT").then(|| endpoint.clone()))?;
    }
    Client::new(config)
}

/// Status lines go to stderr so stdout stays data.
fn status(cli: &Cli, line: &str) {
    if !cli.quiet {
        eprintln!("{line}");
    }
}

async fn dispatch(cli: &Cli) -> Result<i32> {
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "bai", &mut std::io::stdout());
            Ok(0)
        }
        Command::Config => {
            let config = Config::load()?;
            let path = Config::file_path().map(|p| p.display().to_string());
            let doc = json!({
                "file": path, "file_exists": Config::file_path().is_some_and(|p| p.exists()),
                "endpoints": config.endpoints.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
                "access_key": config.access_key, "secret_key": if config.secret_key.is_empty() { "" } else { "(set)" },
                "domain": config.domain, "group": config.group, "max_retries": config.max_retries,
            });
            emit(cli.output, &doc, || key_values(&doc));
            Ok(0)
        }
        Command::Version => {
            let server = client(cli)?.server_version().await?;
            let doc = json!({"client": env!("CARGO_PKG_VERSION"), "api": server.version, "manager": server.manager});
            emit(cli.output, &doc, || key_values(&doc));
            Ok(0)
        }
        Command::Gql { query, vars } => {
            let vars: Value = serde_json::from_str(vars)
                .map_err(|e| Error::InvalidInput { field: "--vars".into(), reason: format!("not JSON: {e}") })?;
            let data = client(cli)?.graphql(query, vars).await?;
            println!("{}", serde_json::to_string_pretty(&data).unwrap_or_default());
            Ok(0)
        }
        Command::Session(cmd) => session(cli, cmd).await,
        Command::Run(args) => run_code(cli, args).await,
        Command::App(args) => app(cli, args).await,
        Command::Apps { session } => {
            let apps = client(cli)?.apps(session).await?;
            emit(cli.output, &apps, || {
                let mut table = Table::new(&["name", "protocol", "ports", "arguments", "envs"]);
                for a in &apps {
                    let ports = a.ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
                    table.row(vec![
                        a.name.clone(),
                        a.protocol.clone(),
                        ports,
                        a.allowed_arguments.join(" "),
                        a.allowed_envs.join(" "),
                    ]);
                }
                table
            });
            Ok(0)
        }
        Command::Vfolder(cmd) => vfolder(cli, cmd).await,
        Command::Preset(cmd) => preset(cli, cmd).await,
        Command::Admin(cmd) => admin(cli, cmd).await,
    }
}

/// `--arg` values as the official client reads them: `--opt value` → `{"--opt": "value"}`,
/// `--flag` → `{"--flag": null}`, `--opt a b` → `{"--opt": ["a", "b"]}`.
fn app_arguments(items: &[String]) -> Result<serde_json::Map<String, Value>> {
    let mut out = serde_json::Map::new();
    for item in items {
        let mut words = Vec::new();
        for word in item.split_whitespace() {
            match word.split_once('=') {
                Some((k, v)) if k.starts_with('-') => words.extend([k.to_string(), v.to_string()]),
                _ => words.push(word.to_string()),
            }
        }
        let Some((name, values)) = words.split_first() else {
            return Err(Error::InvalidInput { field: "--arg".into(), reason: "is empty".into() });
        };
        let value = match values {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

async fn app(cli: &Cli, args: &crate::AppArgs) -> Result<i32> {
    let client = client(cli)?;
    let options = bai_client::AppOptions {
        arguments: app_arguments(&args.arguments)?.into_iter().collect(),
        envs: pairs("--env", &args.envs)?.into_iter().collect(),
    };
    if args.link {
        let link = client.app_link(&args.session, &args.app, &options).await?;
        emit(cli.output, &link, || key_values(&json!(link)));
        return Ok(0);
    }
    let bind = if args.bind.contains(':') { args.bind.clone() } else { format!("127.0.0.1:{}", args.bind) };
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|source| Error::Io { path: format!("--bind {bind}"), source })?;
    let addr = listener.local_addr().map_err(|source| Error::Io { path: format!("--bind {bind}"), source })?;
    let apps = client.apps(&args.session).await?;
    let template = apps
        .iter()
        .find(|a| a.name == args.app)
        .and_then(|a| a.url_template.clone())
        .unwrap_or_else(|| "{protocol}://{host}:{port}".into());
    let url = template
        .replace("{protocol}", "tcp")
        .replace("{host}", &addr.ip().to_string())
        .replace("{port}", &addr.port().to_string());
    status(cli, &format!("A local proxy to the app {:?} of the session {:?} is available at:", args.app, args.session));
    println!("{url}");
    let forward = client.forward_app(&args.session, &args.app, &options, listener);
    tokio::select! {
        r = forward => r.map(|()| 0),
        _ = tokio::signal::ctrl_c() => {
            status(cli, "Shutting down.");
            Ok(0)
        }
    }
}

fn key_values(doc: &Value) -> Table {
    let mut table = Table::new(&["key", "value"]);
    for (k, v) in doc.as_object().into_iter().flatten() {
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        table.row(vec![k.clone(), v]);
    }
    table
}

fn pairs(field: &str, items: &[String]) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(Error::InvalidInput { field: field.into(), reason: format!("{item:?} is not KEY=VALUE") }),
        })
        .collect()
}

fn spec_of(new: &NewSessionArgs) -> Result<SessionSpec> {
    let mut spec = SessionSpec::new(&new.image);
    spec.name = new.name.clone();
    spec.resources = pairs("--resource", &new.resources)?.into_iter().collect();
    spec.environ = pairs("--env", &new.environ)?.into_iter().collect();
    for mount in &new.mounts {
        match mount.split_once('=') {
            Some((name, path)) if !name.is_empty() && !path.is_empty() => {
                spec.mounts.push(name.to_string());
                spec.mount_map.insert(name.to_string(), path.to_string());
            }
            Some(_) => {
                return Err(Error::InvalidInput {
                    field: "--mount".into(),
                    reason: format!("{mount:?} is not FOLDER or FOLDER=PATH"),
                })
            }
            None => spec.mounts.push(mount.clone()),
        }
    }
    spec.group = new.group.clone();
    spec.scaling_group = new.scaling_group.clone();
    spec.max_wait_seconds = new.max_wait;
    Ok(spec)
}

/// Creates a session with a spinner; fails unless it ends up RUNNING (or queued when asked).
async fn create(cli: &Cli, client: &Client, spec: &SessionSpec) -> Result<bai_client::SessionCreated> {
    let spinner = output::spinner(&format!("queueing a session of {}", spec.image), cli.quiet);
    let created = client
        .create_session_watched(spec, |event| {
            let phase = match event.name.as_str() {
                "session_scheduled" => "scheduled on an agent",
                "session_preparing" | "kernel_preparing" => "preparing",
                "kernel_pulling" => "pulling the image",
                "kernel_creating" => "creating the kernel",
                "kernel_started" => "starting",
                _ => return,
            };
            spinner.set_message(format!("{}: {phase}", spec.image));
        })
        .await;
    spinner.finish_and_clear();
    let created = created?;
    match created.status.as_str() {
        "RUNNING" => status(
            cli,
            &format!(
                "✓ session {} ({}) is {}",
                created.session_name,
                created.session_id,
                if created.created { "running" } else { "already running" }
            ),
        ),
        "PENDING" if spec.enqueue_only => {
            status(cli, &format!("∙ session {} ({}) is queued", created.session_name, created.session_id))
        }
        "TIMEOUT" | "PENDING" | "SCHEDULED" => {
            return Err(Error::Rejected {
                operation: "session create".into(),
                msg: format!(
                    "session {} is still queued after --max-wait; `bai session info {}` shows why",
                    created.session_name, created.session_id
                ),
            })
        }
        other => {
            return Err(Error::Rejected {
                operation: "session create".into(),
                msg: format!(
                    "session {} ended up {other}; `bai session info {}` shows why",
                    created.session_name, created.session_id
                ),
            })
        }
    }
    Ok(created)
}

async fn session(cli: &Cli, cmd: &SessionCmd) -> Result<i32> {
    let client = client(cli)?;
    match cmd {
        SessionCmd::Create { new, batch, enqueue_only, tag } => {
            let mut spec = spec_of(new)?;
            if let Some(command) = batch {
                spec = spec.batch(command);
            }
            spec.enqueue_only = *enqueue_only;
            spec.tag = tag.clone();
            let created = create(cli, &client, &spec).await?;
            emit(cli.output, &created, || {
                let mut t = Table::new(&["id", "name", "status"]);
                t.row(vec![created.session_id.to_string(), created.session_name.clone(), created.status.clone()]);
                t
            });
        }
        SessionCmd::Ls { all, dead, running, status, access_key, limit } => {
            let filter = if *all {
                StatusFilter::All
            } else if *dead {
                StatusFilter::Dead
            } else if *running {
                StatusFilter::Running
            } else if let Some(s) = status {
                StatusFilter::Only(s.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            } else {
                StatusFilter::Active
            };
            let page = client.list_sessions(&filter, access_key.as_deref(), (*limit).clamp(1, 100), 0).await?;
            emit(cli.output, &page, || {
                let mut t = Table::new(&["name", "id", "image", "type", "status", "created", "slots"]);
                for s in &page.items {
                    t.row(vec![
                        s.name.clone(),
                        s.id.to_string(),
                        opt(&s.image),
                        opt(&s.session_type),
                        s.status.clone(),
                        time(&s.created_at),
                        slots(&s.occupying_slots),
                    ]);
                }
                t
            });
        }
        SessionCmd::Info { session } => {
            let info = client.session_info(session).await?;
            emit(cli.output, &info, || {
                let mut t = Table::new(&["field", "value"]);
                for (k, v) in [
                    ("name", info.name.clone()),
                    ("id", info.id.to_string()),
                    ("image", opt(&info.image)),
                    ("status", info.status.clone()),
                    ("status info", opt(&info.status_info)),
                    ("created", time(&info.created_at)),
                    ("terminated", time(&info.terminated_at)),
                    ("slots", slots(&info.occupying_slots)),
                ] {
                    t.row(vec![k.to_string(), v]);
                }
                for k in &info.containers {
                    let role = format!("kernel {}#{}", opt(&k.cluster_role), opt(&k.cluster_idx));
                    t.row(vec![role, format!("{} {} on {}", k.id, opt(&k.status), opt(&k.agent))]);
                }
                t
            });
        }
        SessionCmd::Rm { sessions, forced } => {
            let mut failed = 0;
            for s in sessions {
                match client.destroy_session(s, *forced).await {
                    Ok(_) => status(cli, &format!("✓ {s} destroyed")),
                    Err(e) => {
                        eprint!("{}", output::describe(&e));
                        failed += 1;
                    }
                }
            }
            return Ok(if failed == 0 { 0 } else { 1 });
        }
        SessionCmd::Restart { session } => {
            client.restart_session(session).await?;
            status(cli, &format!("✓ {session} restarted"));
        }
        SessionCmd::Logs { session } => {
            print!("{}", client.session_logs(session).await?);
        }
        SessionCmd::Events { session, scope } => {
            let scope = match scope {
                Scope::All => EventScope::All,
                Scope::Session => EventScope::Session,
                Scope::Kernel => EventScope::Kernel,
            };
            let mut events = client.session_events(session, scope).await?;
            while let Some(event) = events.next().await {
                let event = event?;
                match cli.output {
                    Format::Json => println!("{}", serde_json::to_string(&event).unwrap_or_default()),
                    Format::Table => {
                        let code = event.exit_code.map(|c| format!(" exit={c}")).unwrap_or_default();
                        println!("{} {}{code}", event.name, event.reason.as_deref().unwrap_or(""));
                    }
                }
                let _ = std::io::stdout().flush();
                if event.is_final() {
                    break;
                }
            }
        }
        SessionCmd::Exec { session, code } => return execute(cli, &client, session, code).await,
        SessionCmd::Files { session, path } => {
            let files = client.session_files(session, path).await?;
            emit(cli.output, &files, || file_table(&files));
        }
        SessionCmd::Upload { session, files } => {
            let named = files.iter().map(|f| Ok((f.clone(), relative_name(f)?))).collect::<Result<Vec<_>>>()?;
            client.upload_to_session(session, &named).await?;
            status(cli, &format!("✓ uploaded {} file(s)", named.len()));
        }
        SessionCmd::Download { session, files, dest } => {
            let written = client.download_from_session(session, files, dest).await?;
            for path in written {
                println!("{}", path.display());
            }
        }
    }
    Ok(0)
}

fn file_table(files: &[bai_client::FileEntry]) -> Table {
    let mut t = Table::new(&["mode", "size", "modified", "name"]);
    for f in files {
        let modified = chrono::DateTime::from_timestamp(f.mtime as i64, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        t.row(vec![f.mode.clone(), f.size.to_string(), modified, f.filename.clone()]);
    }
    t
}

/// A file's name in the remote tree: its path relative to the current directory, refusing
/// paths that climb out of it.
fn relative_name(path: &Path) -> Result<String> {
    let invalid = |reason: &str| Error::InvalidInput { field: path.display().to_string(), reason: reason.into() };
    let relative = if path.is_absolute() {
        let cwd = std::env::current_dir().map_err(|e| invalid(&e.to_string()))?;
        path.strip_prefix(&cwd).map(Path::to_path_buf).map_err(|_| invalid("is outside the current directory"))?
    } else {
        path.to_path_buf()
    };
    let mut parts = Vec::new();
    for c in relative.components() {
        match c {
            std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            std::path::Component::CurDir => {}
            _ => return Err(invalid("must stay inside the current directory (no `..`)")),
        }
    }
    if parts.is_empty() {
        return Err(invalid("is not a file"));
    }
    Ok(parts.join("/"))
}

/// Streams an execution to stdout/stderr, answering input prompts from stdin.
async fn execute(cli: &Cli, client: &Client, session: &str, code: &str) -> Result<i32> {
    let mut run = client.execute(session, &ExecRequest::Query(code.to_string())).await?;
    let mut exit_code = 0;
    while let Some(item) = run.next().await {
        match item? {
            ExecItem::Stdout(s) => {
                print!("{s}");
                let _ = std::io::stdout().flush();
            }
            ExecItem::Stderr(s) => eprint!("{s}"),
            ExecItem::Record { kind, data } => println!("----- output record (type: {kind}) -----\n{data}"),
            ExecItem::WaitingInput { .. } => {
                let line = tokio::task::spawn_blocking(|| {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line).map(|_| line)
                })
                .await
                .map_err(|e| Error::InvalidInput { field: "stdin".into(), reason: e.to_string() })?
                .map_err(|e| Error::Io { path: "stdin".into(), source: e })?;
                run.send_input(line.trim_end_matches(['\r', '\n'])).await?;
            }
            ExecItem::BuildFinished { exit_code } | ExecItem::CleanFinished { exit_code } => {
                status(cli, &format!("∙ step finished with exit code {exit_code}"))
            }
            ExecItem::Finished { exit_code: code } => exit_code = code,
        }
    }
    Ok(i32::try_from(exit_code).unwrap_or(1))
}

async fn run_code(cli: &Cli, args: &crate::RunArgs) -> Result<i32> {
    let client = client(cli)?;
    let mut spec = spec_of(&args.new)?;
    spec.reuse_if_exists = false;
    let created = create(cli, &client, &spec).await?;
    let id = created.session_id.to_string();
    let result = execute(cli, &client, &id, &args.code).await;
    if args.rm {
        match client.destroy_session(&id, true).await {
            Ok(_) => status(cli, &format!("✓ session {} destroyed", created.session_name)),
            Err(e) => eprint!("{}", output::describe(&e)),
        }
    }
    result
}

/// A table of e-mail addresses, with the permission they were given when there is one.
fn email_table(emails: &[String], permission: Option<&str>) -> Table {
    let mut t = Table::new(if permission.is_some() { &["email", "permission"] } else { &["email"] });
    for e in emails {
        let mut row = vec![e.clone()];
        row.extend(permission.map(str::to_string));
        t.row(row);
    }
    t
}

async fn vfolder(cli: &Cli, cmd: &VfolderCmd) -> Result<i32> {
    let client = client(cli)?;
    let folder_table = |folders: &[bai_client::VFolder]| {
        let mut t = Table::new(&["name", "id", "host", "usage", "permission", "owner", "status"]);
        for f in folders {
            t.row(vec![
                f.name.clone(),
                f.id.clone(),
                opt(&f.host),
                opt(&f.usage_mode),
                opt(&f.permission),
                opt(&f.ownership_type),
                opt(&f.status),
            ]);
        }
        t
    };
    match cmd {
        VfolderCmd::Create { name, host, group, usage_mode, permission, quota } => {
            let spec = NewVFolder {
                name: name.clone(),
                host: host.clone(),
                group: group.clone(),
                usage_mode: Some(usage_mode.clone()),
                permission: Some(permission.clone()),
                quota: quota.clone(),
                cloneable: false,
            };
            let folder = client.create_vfolder(&spec).await?;
            emit(cli.output, &folder, || folder_table(std::slice::from_ref(&folder)));
        }
        VfolderCmd::Ls => {
            let folders = client.list_vfolders().await?;
            emit(cli.output, &folders, || folder_table(&folders));
        }
        VfolderCmd::Info { name } => {
            let folder = client.vfolder_info(name).await?;
            emit(cli.output, &folder, || {
                let mut both = Table::new(&["field", "value"]);
                for (k, v) in [
                    ("name", folder.name.clone()),
                    ("id", folder.id.clone()),
                    ("host", opt(&folder.host)),
                    ("permission", opt(&folder.permission)),
                    ("files", opt(&folder.num_files)),
                    ("bytes", opt(&folder.used_bytes)),
                    ("quota", opt(&folder.max_size)),
                    ("created", time(&folder.created_at)),
                ] {
                    both.row(vec![k.into(), v]);
                }
                both
            });
        }
        VfolderCmd::Files { name, path } => {
            let files = client.vfolder_files(name, path).await?;
            emit(cli.output, &files, || file_table(&files));
        }
        VfolderCmd::Mkdir { name, path, parents } => {
            client.vfolder_mkdir(name, path, *parents).await?;
            status(cli, &format!("✓ created {path} in {name}"));
        }
        VfolderCmd::Upload { name, files, base_dir } => {
            for file in files {
                let local = if file.is_absolute() { file.clone() } else { base_dir.join(file) };
                let remote = relative_to(base_dir, &local)?;
                let bar = output::byte_bar(&remote, cli.quiet);
                let report = |done: u64, total: u64| {
                    bar.set_length(total);
                    bar.set_position(done);
                };
                let sent = client.vfolder_upload(name, &local, &remote, &report).await;
                bar.finish_and_clear();
                let sent = sent?;
                status(cli, &format!("✓ {remote} ({sent} bytes)"));
            }
        }
        VfolderCmd::Download { name, files, base_dir, overwrite } => {
            for remote in files {
                let local = safe_join(base_dir, remote)?;
                if let Some(parent) = local.parent() {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .map_err(|e| Error::Io { path: parent.display().to_string(), source: e })?;
                }
                let bar = output::byte_bar(remote, cli.quiet);
                let report = |done: u64, total: u64| {
                    bar.set_length(total);
                    bar.set_position(done);
                };
                let got = client.vfolder_download(name, remote, &local, *overwrite, &report).await;
                bar.finish_and_clear();
                let got = got?;
                status(cli, &format!("✓ {} ({got} bytes)", local.display()));
            }
        }
        VfolderCmd::RmFiles { name, files, recursive } => {
            client.vfolder_delete_files(name, files, *recursive).await?;
            status(cli, &format!("✓ deleted {} path(s) in {name}", files.len()));
        }
        VfolderCmd::Rename { name, new_name } => {
            client.rename_vfolder(name, new_name).await?;
            status(cli, &format!("✓ {name} is now {new_name}"));
        }
        VfolderCmd::Rm { name } => {
            client.delete_vfolder(name).await?;
            status(cli, &format!("✓ {name} deleted"));
        }
        VfolderCmd::Share { name, emails, permission } => {
            let shared = client.share_vfolder(name, permission, emails).await?;
            emit(cli.output, &shared, || email_table(&shared, Some(permission)));
            status(cli, &format!("✓ {name} shared ({permission}) with {} user(s)", shared.len()));
        }
        VfolderCmd::Unshare { name, emails } => {
            let unshared = client.unshare_vfolder(name, emails).await?;
            emit(cli.output, &unshared, || email_table(&unshared, None));
            status(cli, &format!("✓ {name} unshared from {} user(s)", unshared.len()));
        }
        VfolderCmd::Invite { name, emails, permission } => {
            let invited = client.invite_to_vfolder(name, permission, emails).await?;
            emit(cli.output, &invited, || email_table(&invited, Some(permission)));
            if invited.is_empty() {
                status(cli, "nobody new was invited: they already have the folder or an invitation to it");
            } else {
                status(cli, &format!("✓ invited {} user(s) to {name} ({permission})", invited.len()));
            }
        }
        VfolderCmd::Invitations => {
            let invitations = client.vfolder_invitations().await?;
            emit(cli.output, &invitations, || {
                let mut t = Table::new(&["id", "folder", "inviter", "permission", "sent"]);
                for i in &invitations {
                    t.row(vec![
                        i.id.clone(),
                        i.vfolder_name.clone(),
                        i.inviter.clone(),
                        i.permission.clone(),
                        time(&i.created_at),
                    ]);
                }
                t
            });
        }
        VfolderCmd::Accept { id } => {
            client.accept_invitation(id).await?;
            status(cli, &format!("✓ accepted invitation {id}"));
        }
        VfolderCmd::Reject { id } => {
            client.reject_invitation(id).await?;
            status(cli, &format!("✓ rejected invitation {id}"));
        }
        VfolderCmd::Leave { name } => {
            client.leave_vfolder(name).await?;
            status(cli, &format!("✓ left {name}"));
        }
        VfolderCmd::Hosts => {
            let hosts = client.vfolder_hosts().await?;
            emit(cli.output, &hosts, || {
                let mut t = Table::new(&["host", "default"]);
                for h in &hosts.allowed {
                    let default = if hosts.default.as_deref() == Some(h.as_str()) { "yes" } else { "" };
                    t.row(vec![h.clone(), default.into()]);
                }
                t
            });
        }
    }
    Ok(0)
}

/// `local` relative to `base` with `/` separators; refuses files outside `base`.
fn relative_to(base: &Path, local: &Path) -> Result<String> {
    let invalid = |reason: &str| Error::InvalidInput { field: local.display().to_string(), reason: reason.into() };
    let base = std::fs::canonicalize(base).map_err(|e| Error::Io { path: base.display().to_string(), source: e })?;
    let full = std::fs::canonicalize(local).map_err(|e| Error::Io { path: local.display().to_string(), source: e })?;
    if !full.is_file() {
        return Err(invalid("is not a file"));
    }
    let rel = full.strip_prefix(&base).map_err(|_| invalid("is outside --base-dir"))?;
    Ok(rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/"))
}

/// `base/remote`, refusing remote paths that would leave `base`.
fn safe_join(base: &Path, remote: &str) -> Result<PathBuf> {
    let mut out = base.to_path_buf();
    for part in remote.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(Error::InvalidInput { field: remote.into(), reason: "must not contain `..`".into() }),
            p => out.push(p),
        }
    }
    if out == base {
        return Err(Error::InvalidInput { field: remote.into(), reason: "is not a file path".into() });
    }
    Ok(out)
}

async fn preset(cli: &Cli, cmd: &PresetCmd) -> Result<i32> {
    let client = client(cli)?;
    let preset_table = |presets: &[bai_client::Preset]| {
        let mut t = Table::new(&["name", "slots", "allocatable"]);
        for p in presets {
            let allocatable = p.allocatable.map(|a| if a { "yes" } else { "no" }.to_string()).unwrap_or_default();
            t.row(vec![p.name.clone(), slots(&p.resource_slots), allocatable]);
        }
        t
    };
    match cmd {
        PresetCmd::Ls => {
            let presets = client.list_presets().await?;
            emit(cli.output, &presets, || preset_table(&presets));
        }
        PresetCmd::Check { scaling_group } => {
            let check = client.check_presets(scaling_group.as_deref()).await?;
            if cli.output == Format::Table {
                let mut t = Table::new(&["", "slots"]);
                t.row(vec!["keypair limits".into(), slots(&check.keypair_limits)]);
                t.row(vec!["keypair using".into(), slots(&check.keypair_using)]);
                t.row(vec!["keypair remaining".into(), slots(&check.keypair_remaining)]);
                t.row(vec!["scaling group remaining".into(), slots(&check.scaling_group_remaining)]);
                print!("{}\n{}", t.render(), preset_table(&check.presets).render());
            } else {
                emit(cli.output, &check, Table::default);
            }
        }
    }
    Ok(0)
}

async fn admin(cli: &Cli, cmd: &AdminCmd) -> Result<i32> {
    let client = client(cli)?;
    match cmd {
        AdminCmd::Agents { status, scaling_group } => {
            let page = client.list_agents(Some(status), scaling_group.as_deref(), 100, 0).await?;
            emit(cli.output, &page, || {
                let mut t = Table::new(&["id", "status", "scaling group", "cpu %", "available", "occupied"]);
                for a in &page.items {
                    t.row(vec![
                        a.id.clone(),
                        a.status.clone(),
                        opt(&a.scaling_group),
                        a.cpu_cur_pct.map(|p| format!("{p:.1}")).unwrap_or_else(|| "-".into()),
                        slots(&a.available_slots),
                        slots(&a.occupied_slots),
                    ]);
                }
                t
            });
        }
        AdminCmd::Keypair(cmd) => keypair(cli, &client, cmd).await?,
        AdminCmd::User(UserCmd::Ls { status }) => {
            let page = client.list_users(status.as_deref(), 100, 0).await?;
            emit(cli.output, &page, || user_table(&page.items));
        }
        AdminCmd::User(UserCmd::Create { email, password, role, domain, full_name }) => {
            let mut spec = NewUser::new(email, password);
            spec.role = role.clone();
            spec.domain = domain.clone();
            spec.full_name = full_name.clone();
            let user = client.create_user(&spec).await?;
            emit(cli.output, &user, || user_table(std::slice::from_ref(&user)));
        }
        AdminCmd::Domains => {
            let domains = client.list_domains().await?;
            emit(cli.output, &domains, || {
                let mut t = Table::new(&["name", "active", "created", "slots"]);
                for d in &domains {
                    t.row(vec![
                        d.name.clone(),
                        d.is_active.to_string(),
                        time(&d.created_at),
                        slots(&d.total_resource_slots),
                    ]);
                }
                t
            });
        }
        AdminCmd::Groups { domain } => {
            let groups = client.list_groups(domain.as_deref()).await?;
            emit(cli.output, &groups, || {
                let mut t = Table::new(&["name", "id", "active", "created"]);
                for g in &groups {
                    t.row(vec![g.name.clone(), g.id.clone(), g.is_active.to_string(), time(&g.created_at)]);
                }
                t
            });
        }
        AdminCmd::Images => {
            let images = client.list_images().await?;
            emit(cli.output, &images, || {
                let mut t = Table::new(&["name", "tag", "registry", "architecture", "size", "aliases"]);
                for i in &images {
                    let size = i.size_bytes.map(|b| bai_core::BinarySize::new(b as u64).to_short_string());
                    t.row(vec![
                        i.name.clone(),
                        opt(&i.tag),
                        opt(&i.registry),
                        opt(&i.architecture),
                        opt(&size),
                        i.aliases.join(","),
                    ]);
                }
                t
            });
        }
        AdminCmd::ScalingGroups => {
            let groups = client.list_scaling_groups().await?;
            emit(cli.output, &groups, || {
                let mut t = Table::new(&["name", "active", "public", "driver", "scheduler"]);
                for g in &groups {
                    t.row(vec![
                        g.name.clone(),
                        g.is_active.to_string(),
                        g.is_public.to_string(),
                        opt(&g.driver),
                        opt(&g.scheduler),
                    ]);
                }
                t
            });
        }
        AdminCmd::Policies => {
            let policies = client.list_resource_policies().await?;
            emit(cli.output, &policies, || {
                let mut t = Table::new(&["name", "slots", "sessions", "containers", "idle timeout", "folders"]);
                for p in &policies {
                    t.row(vec![
                        p.name.clone(),
                        slots(&p.total_resource_slots),
                        opt(&p.max_concurrent_sessions),
                        opt(&p.max_containers_per_session),
                        opt(&p.idle_timeout),
                        opt(&p.max_vfolder_count),
                    ]);
                }
                t
            });
        }
    }
    Ok(0)
}

fn user_table(users: &[bai_client::User]) -> Table {
    let mut t = Table::new(&["email", "id", "role", "status", "domain", "access key"]);
    for u in users {
        t.row(vec![
            u.email.clone(),
            u.uuid.clone(),
            opt(&u.role),
            opt(&u.status),
            opt(&u.domain_name),
            opt(&u.main_access_key),
        ]);
    }
    t
}

async fn keypair(cli: &Cli, client: &Client, cmd: &KeypairCmd) -> Result<()> {
    let keypair_table = |keys: &[bai_client::KeyPair]| {
        let mut t = Table::new(&["access key", "user", "active", "admin", "policy", "rate limit", "sessions"]);
        for k in keys {
            t.row(vec![
                k.access_key.clone(),
                k.user_id.clone(),
                k.is_active.to_string(),
                k.is_admin.to_string(),
                opt(&k.resource_policy),
                opt(&k.rate_limit),
                opt(&k.concurrency_used),
            ]);
        }
        t
    };
    match cmd {
        KeypairCmd::Ls { email } => {
            let page = client.list_keypairs(email.as_deref(), None, 100, 0).await?;
            emit(cli.output, &page, || keypair_table(&page.items));
        }
        KeypairCmd::Me => {
            let key = client.own_keypair().await?;
            emit(cli.output, &key, || keypair_table(std::slice::from_ref(&key)));
        }
        KeypairCmd::Create { email, policy, admin, rate_limit } => {
            let (access_key, secret_key) = client.create_keypair(email, policy, *admin, *rate_limit).await?;
            let doc = json!({"access_key": access_key, "secret_key": secret_key});
            emit(cli.output, &doc, || key_values(&doc));
            status(cli, "∙ the secret key is shown only now; keep it safe");
        }
        KeypairCmd::Activate { access_key } => {
            client.set_keypair_active(access_key, true).await?;
            status(cli, &format!("✓ {access_key} activated"));
        }
        KeypairCmd::Deactivate { access_key } => {
            client.set_keypair_active(access_key, false).await?;
            status(cli, &format!("✓ {access_key} deactivated"));
        }
        KeypairCmd::Rm { access_key } => {
            client.delete_keypair(access_key).await?;
            status(cli, &format!("✓ {access_key} deleted"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_cannot_climb_out() {
        assert_eq!(safe_join(Path::new("/d"), "a/./b.txt").unwrap(), PathBuf::from("/d/a/b.txt"));
        assert!(safe_join(Path::new("/d"), "a/../../etc/passwd").is_err());
        assert!(safe_join(Path::new("/d"), "/").is_err());
        assert!(relative_name(Path::new("../x")).is_err());
        assert_eq!(relative_name(Path::new("./sub/x.txt")).unwrap(), "sub/x.txt");
    }

    #[test]
    fn app_arguments_read_like_the_official_client() {
        let args = ["--directory /home/work".to_string(), "--verbose".into(), "--tags a b".into(), "--port=9".into()];
        assert_eq!(
            Value::Object(app_arguments(&args).unwrap()),
            json!({"--directory": "/home/work", "--verbose": null, "--tags": ["a", "b"], "--port": "9"})
        );
        let err = app_arguments(&[" ".into()]).unwrap_err().to_string();
        assert_eq!(err, "--arg: is empty");
    }

    #[test]
    fn key_value_arguments_name_the_flag() {
        assert_eq!(pairs("--env", &["A=1=2".into()]).unwrap(), [("A".to_string(), "1=2".to_string())]);
        let err = pairs("--resource", &["cpu".into()]).unwrap_err().to_string();
        assert_eq!(err, "--resource: \"cpu\" is not KEY=VALUE");
    }

    #[test]
    fn mounts_take_an_optional_directory() {
        let args = |mounts: &[&str]| NewSessionArgs {
            image: "img".into(),
            name: None,
            resources: vec![],
            environ: vec![],
            mounts: mounts.iter().map(|m| m.to_string()).collect(),
            group: None,
            scaling_group: None,
            max_wait: 0,
        };
        let spec = spec_of(&args(&["data", "models=/home/work/m"])).unwrap();
        assert_eq!(spec.mounts, ["data", "models"]);
        assert_eq!(spec.mount_map.get("models").map(String::as_str), Some("/home/work/m"));
        let err = spec_of(&args(&["=x"])).unwrap_err().to_string();
        assert_eq!(err, "--mount: \"=x\" is not FOLDER or FOLDER=PATH");
    }
}
