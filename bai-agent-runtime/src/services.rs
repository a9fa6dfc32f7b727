//! Services inside kernels (Jupyter, TensorBoard, a TCP echo server, …), started on demand.
//!
//! An image declares its services' ports in `ai.backend.service-ports`
//! (`name:protocol:port,…`, see [`labels::parse_service_ports`]) and how to start each one in
//! a label `ai.backend.service-def.{name}` holding JSON in the shape of the original's
//! service definition files:
//!
//! ```json
//! {"command": ["{runtime_path}", "-m", "http.server", "{ports[0]}"],
//!  "env": {"PYTHONUNBUFFERED": "1"},
//!  "url_template": "http://{host}:{port}/",
//!  "allowed_arguments": ["--directory"], "allowed_envs": ["GREETING"],
//!  "default_arguments": {"--bind": "0.0.0.0"}}
//! ```
//!
//! In `command`, `{ports[N]}` is the service's N-th container port, `{port}` the first, and
//! `{runtime_path}` the image's `ai.backend.runtime-path` label (`python3` without one). A
//! `command` given as one string runs through `sh -c`. Arguments are appended as the original
//! does: `{"--flag": null}` gives `--flag`, `{"--opt": "v"}` gives `--opt v`,
//! `{"--opt": ["a", "b"]}` gives `--opt a b`; callers may only pass `allowed_arguments` and
//! `allowed_envs`.
//!
//! [`ServiceLauncher::start`] needs nothing in the image but `sh` and `grep`: it checks the
//! kernel's `/proc/net/tcp{,6}` for a listener on the service's first port (a listening
//! service answers [`Started::AlreadyRunning`]), else starts the command in the background
//! (output in `/tmp/bai-services/{name}.log`, pid in `{name}.pid`) and polls until the port
//! listens, the process exits (an error quoting the end of its log) or the time limit passes.
//! Starts of the same service in the same container are serialised, so two connections
//! arriving together start it once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::labels::ServicePort;
use crate::runtime::{ContainerRuntime, ExecSpec, Output};

/// The label prefix of service definitions: `ai.backend.service-def.{name}`.
pub const SERVICE_DEF_PREFIX: &str = "ai.backend.service-def.";

/// The image label naming the runtime's interpreter, substituted for `{runtime_path}`.
pub const RUNTIME_PATH: &str = "ai.backend.runtime-path";

/// Where services keep their logs and pid files inside the container.
pub const SERVICE_DIR: &str = "/tmp/bai-services";

/// How much of a failed service's log an error quotes.
const LOG_QUOTED: usize = 2000;

/// How a service is started. See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDef {
    /// The command and its arguments (a string is run through `sh -c`).
    #[serde(deserialize_with = "command_list")]
    pub command: Vec<String>,
    /// Environment variables the service always gets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// How a client builds the URL of the service (`{protocol}`, `{host}`, `{port}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_template: Option<String>,
    /// The arguments a caller may add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_arguments: Vec<String>,
    /// The environment variables a caller may set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_envs: Vec<String>,
    /// Arguments always added (a caller's value for the same name replaces it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default_arguments: BTreeMap<String, Value>,
}

fn command_list<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Command {
        Shell(String),
        Argv(Vec<String>),
    }
    Ok(match Command::deserialize(d)? {
        Command::Shell(s) => vec!["sh".into(), "-c".into(), s],
        Command::Argv(argv) => argv,
    })
}

/// Reads the `ai.backend.service-def.*` labels of an image (or of a container, which carries
/// its image's labels). A definition for a service `ports` does not declare, a malformed one
/// or an empty command is an error naming the label.
pub fn parse_service_defs(
    labels: &BTreeMap<String, String>,
    ports: &[ServicePort],
) -> Result<BTreeMap<String, ServiceDef>> {
    let mut defs = BTreeMap::new();
    for (key, raw) in labels.range(SERVICE_DEF_PREFIX.to_string()..) {
        let Some(name) = key.strip_prefix(SERVICE_DEF_PREFIX) else { break };
        let field = || format!("label {key}");
        if !ports.iter().any(|p| p.name == name) {
            return Err(Error::invalid(field(), format!("no service {name:?} in ai.backend.service-ports")));
        }
        let def: ServiceDef = serde_json::from_str(raw).map_err(|e| Error::invalid(field(), e.to_string()))?;
        if def.command.first().is_none_or(|c| c.trim().is_empty()) {
            return Err(Error::invalid(field(), "command is empty"));
        }
        for (arg, value) in &def.default_arguments {
            argument_words(arg, value).map_err(|reason| Error::invalid(field(), reason))?;
        }
        defs.insert(name.to_string(), def);
    }
    Ok(defs)
}

/// What a caller adds when starting a service: `arguments` as the client sends them
/// (`{"--opt": value}`) and environment variables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceOptions {
    /// Extra arguments: `null` (a flag), a string, a number or a list of strings.
    #[serde(default)]
    pub arguments: BTreeMap<String, Value>,
    /// Extra environment variables.
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
}

/// How [`ServiceLauncher::start`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// The service was started and now listens.
    Started,
    /// It was listening already; nothing was started.
    AlreadyRunning,
}

impl Started {
    /// `started` or `running`, as the original reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Started::Started => "started",
            Started::AlreadyRunning => "running",
        }
    }
}

fn argument_words(name: &str, value: &Value) -> std::result::Result<Vec<String>, String> {
    let mut out = vec![name.to_string()];
    match value {
        Value::Null => {}
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Bool(b) => out.push(b.to_string()),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    Value::Number(n) => out.push(n.to_string()),
                    other => return Err(format!("argument {name}: list items must be strings, not {other}")),
                }
            }
        }
        Value::Object(_) => return Err(format!("argument {name}: an object is not an argument value")),
    }
    Ok(out)
}

/// The command line of `def` for `port` with `options`: placeholders substituted, default and
/// caller arguments appended. Arguments or environment variables the definition does not
/// allow are an error naming them.
pub fn command_line(
    def: &ServiceDef,
    port: &ServicePort,
    runtime_path: Option<&str>,
    options: &ServiceOptions,
) -> Result<Vec<String>> {
    for name in options.arguments.keys() {
        if !def.allowed_arguments.contains(name) {
            return Err(Error::invalid(
                "arguments",
                format!("{name:?} is not allowed for {} (allowed: {:?})", port.name, def.allowed_arguments),
            ));
        }
    }
    for name in options.envs.keys() {
        if !def.allowed_envs.contains(name) {
            return Err(Error::invalid(
                "envs",
                format!("{name:?} is not allowed for {} (allowed: {:?})", port.name, def.allowed_envs),
            ));
        }
    }
    let substitute = |word: &str| -> Result<String> {
        let mut out = word.replace("{runtime_path}", runtime_path.unwrap_or("python3"));
        if let Some(first) = port.container_ports.first() {
            out = out.replace("{port}", &first.to_string());
        }
        for (i, p) in port.container_ports.iter().enumerate() {
            out = out.replace(&format!("{{ports[{i}]}}"), &p.to_string());
        }
        if out.contains("{ports[") {
            return Err(Error::invalid(
                format!("service {}", port.name),
                format!("{word:?} names a port the service does not have ({:?})", port.container_ports),
            ));
        }
        Ok(out)
    };
    let mut argv: Vec<String> = def.command.iter().map(|w| substitute(w)).collect::<Result<_>>()?;
    let mut arguments = def.default_arguments.clone();
    arguments.extend(options.arguments.clone());
    for (name, value) in &arguments {
        argv.extend(argument_words(name, value).map_err(|reason| Error::invalid("arguments", reason))?);
    }
    Ok(argv)
}

/// Single-quotes a word for `sh`.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A `grep` that succeeds when something listens on TCP `port` in the container's network
/// namespace (state `0A` in /proc/net/tcp or tcp6).
fn listening_check(port: u16) -> String {
    format!(
        "grep -qiE '^ *[0-9]+: [0-9A-F]+:{port:04X} [0-9A-F]+:[0-9A-F]+ 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null"
    )
}

/// Runs `script` with `sh -c` in the container; its stdout (and stderr) as text.
async fn sh(
    runtime: &dyn ContainerRuntime,
    container_id: &str,
    script: &str,
    env: BTreeMap<String, String>,
) -> Result<String> {
    let spec = ExecSpec { cmd: vec!["sh".into(), "-c".into(), script.into()], env, ..Default::default() };
    let mut session = runtime.exec(container_id, &spec).await?;
    let mut out = Vec::new();
    while let Some(chunk) = session.output.next().await {
        match chunk? {
            Output::Stdout(b) | Output::Stderr(b) => {
                if out.len() < 64 * 1024 {
                    out.extend_from_slice(&b);
                }
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Starts and stops services in containers. One per node; see the module documentation.
#[derive(Debug)]
pub struct ServiceLauncher {
    /// How long a started service may take to listen.
    pub start_timeout: Duration,
    /// How often a starting service is checked.
    pub poll_interval: Duration,
    locks: Mutex<HashMap<(String, String), StartLock>>,
}

/// Held while one service of one container starts or stops.
type StartLock = Arc<tokio::sync::Mutex<()>>;

impl Default for ServiceLauncher {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

impl ServiceLauncher {
    /// A launcher that waits up to `start_timeout` for a service to listen.
    pub fn new(start_timeout: Duration) -> Self {
        Self { start_timeout, poll_interval: Duration::from_millis(200), locks: Mutex::default() }
    }

    fn lock_for(&self, container_id: &str, service: &str) -> StartLock {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Forget the locks nobody holds, so the map does not grow with every container.
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry((container_id.to_string(), service.to_string())).or_default().clone()
    }

    /// Starts `port`'s service in `container_id` by `def` unless it listens already.
    /// See the module documentation.
    pub async fn start(
        &self,
        runtime: &dyn ContainerRuntime,
        container_id: &str,
        port: &ServicePort,
        def: Option<&ServiceDef>,
        runtime_path: Option<&str>,
        options: &ServiceOptions,
    ) -> Result<Started> {
        let Some(&first) = port.container_ports.first() else {
            return Err(Error::invalid(format!("service {}", port.name), "declares no port"));
        };
        // Options are checked even when the service runs already: a refused one is refused.
        let argv = def.map(|d| command_line(d, port, runtime_path, options)).transpose()?;
        let lock = self.lock_for(container_id, &port.name);
        let _held = lock.lock().await;
        let check = listening_check(first);
        if sh(runtime, container_id, &format!("{check} && echo up"), BTreeMap::new()).await?.trim() == "up" {
            return Ok(Started::AlreadyRunning);
        }
        let (Some(def), Some(argv)) = (def, argv) else {
            return Err(Error::invalid(
                format!("service {}", port.name),
                format!("the image has no start command for it (label {SERVICE_DEF_PREFIX}{})", port.name),
            ));
        };
        let command = argv.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
        let name = &port.name;
        let script = format!(
            "mkdir -p {SERVICE_DIR} && (cd /home/work 2>/dev/null || cd /; {command} >{SERVICE_DIR}/{name}.log 2>&1 </dev/null & echo $! >{SERVICE_DIR}/{name}.pid; echo $!)"
        );
        let mut env = def.env.clone();
        env.extend(options.envs.clone());
        let started = sh(runtime, container_id, &script, env).await?;
        let pid: u32 = started
            .trim()
            .parse()
            .map_err(|_| Error::Runner(format!("service {name}: could not start {command}: {}", started.trim())))?;
        tracing::info!(container = container_id, service = %name, pid, "service started");
        let probe = format!(
            "if {check}; then echo up; elif kill -0 {pid} 2>/dev/null; then echo starting; else echo exited; fi"
        );
        let deadline = Instant::now() + self.start_timeout;
        loop {
            match sh(runtime, container_id, &probe, BTreeMap::new()).await?.trim() {
                "up" => return Ok(Started::Started),
                "exited" => {
                    let log = sh(
                        runtime,
                        container_id,
                        &format!("tail -c {LOG_QUOTED} {SERVICE_DIR}/{name}.log"),
                        BTreeMap::new(),
                    )
                    .await
                    .unwrap_or_default();
                    return Err(Error::Runner(format!(
                        "service {name} exited before listening on port {first}: {}",
                        log.trim()
                    )));
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    operation: "starting the service",
                    seconds: self.start_timeout.as_secs(),
                });
            }
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// Stops `service` in `container_id` if this launcher (or an earlier agent) started it;
    /// `false` when it was not running.
    pub async fn stop(&self, runtime: &dyn ContainerRuntime, container_id: &str, service: &str) -> Result<bool> {
        let lock = self.lock_for(container_id, service);
        let _held = lock.lock().await;
        let pidfile = format!("{SERVICE_DIR}/{service}.pid");
        let script = format!(
            "if [ -f {pidfile} ] && kill $(cat {pidfile}) 2>/dev/null; then rm -f {pidfile}; echo stopped; else rm -f {pidfile}; echo none; fi"
        );
        Ok(sh(runtime, container_id, &script, BTreeMap::new()).await?.trim() == "stopped")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn port(name: &str, ports: &[u16]) -> ServicePort {
        ServicePort { name: name.into(), protocol: "http".into(), container_ports: ports.to_vec() }
    }

    #[test]
    fn definitions_come_from_labels_and_name_their_label_when_wrong() {
        let ports = [port("web", &[8000]), port("echo", &[7000])];
        let mut labels = BTreeMap::from([
            ("ai.backend.service-ports".to_string(), "web:http:8000,echo:tcp:7000".to_string()),
            (format!("{SERVICE_DEF_PREFIX}web"), r#"{"command": ["{runtime_path}", "-m", "http.server", "{ports[0]}"], "url_template": "http://{host}:{port}/"}"#.into()),
            (format!("{SERVICE_DEF_PREFIX}echo"), r#"{"command": "exec nc -l {port}"}"#.into()),
            ("ai.backend.service-defx".to_string(), "ignored".to_string()),
        ]);
        let defs = parse_service_defs(&labels, &ports).unwrap();
        assert_eq!(defs["web"].command, ["{runtime_path}", "-m", "http.server", "{ports[0]}"]);
        assert_eq!(defs["web"].url_template.as_deref(), Some("http://{host}:{port}/"));
        assert_eq!(defs["echo"].command, ["sh", "-c", "exec nc -l {port}"]);

        labels.insert(format!("{SERVICE_DEF_PREFIX}ghost"), r#"{"command": ["x"]}"#.into());
        let err = parse_service_defs(&labels, &ports).unwrap_err().to_string();
        assert_eq!(
            err,
            r#"invalid label ai.backend.service-def.ghost: no service "ghost" in ai.backend.service-ports"#
        );
        labels.remove(&format!("{SERVICE_DEF_PREFIX}ghost"));
        labels.insert(format!("{SERVICE_DEF_PREFIX}web"), r#"{"command": []}"#.into());
        let err = parse_service_defs(&labels, &ports).unwrap_err().to_string();
        assert_eq!(err, "invalid label ai.backend.service-def.web: command is empty");
        labels.insert(format!("{SERVICE_DEF_PREFIX}web"), r#"{"command": 3}"#.into());
        let err = parse_service_defs(&labels, &ports).unwrap_err().to_string();
        assert!(err.starts_with("invalid label ai.backend.service-def.web: "), "{err}");
    }

    #[test]
    fn command_lines_substitute_ports_and_append_arguments_like_the_original() {
        let def = ServiceDef {
            command: vec![
                "{runtime_path}".into(),
                "-m".into(),
                "srv".into(),
                "--port={ports[1]}".into(),
                "{port}".into(),
            ],
            allowed_arguments: vec!["--dir".into(), "--verbose".into(), "--tags".into()],
            allowed_envs: vec!["GREETING".into()],
            default_arguments: BTreeMap::from([("--bind".into(), json!("0.0.0.0"))]),
            ..ServiceDef::default()
        };
        let p = port("svc", &[8000, 8001]);
        let options = ServiceOptions {
            arguments: BTreeMap::from([
                ("--dir".into(), json!("/home/work")),
                ("--verbose".into(), Value::Null),
                ("--tags".into(), json!(["a", "b"])),
            ]),
            envs: BTreeMap::from([("GREETING".into(), "hi".into())]),
        };
        assert_eq!(
            command_line(&def, &p, Some("/usr/bin/python3"), &options).unwrap(),
            [
                "/usr/bin/python3",
                "-m",
                "srv",
                "--port=8001",
                "8000",
                "--bind",
                "0.0.0.0",
                "--dir",
                "/home/work",
                "--tags",
                "a",
                "b",
                "--verbose"
            ]
        );
        assert_eq!(command_line(&def, &p, None, &ServiceOptions::default()).unwrap()[0], "python3");

        let refused =
            ServiceOptions { arguments: BTreeMap::from([("--evil".into(), Value::Null)]), ..Default::default() };
        let err = command_line(&def, &p, None, &refused).unwrap_err().to_string();
        assert!(err.starts_with(r#"invalid arguments: "--evil" is not allowed for svc"#), "{err}");
        let refused = ServiceOptions { envs: BTreeMap::from([("PATH".into(), "/x".into())]), ..Default::default() };
        let err = command_line(&def, &p, None, &refused).unwrap_err().to_string();
        assert!(err.starts_with(r#"invalid envs: "PATH" is not allowed for svc"#), "{err}");
        let object =
            ServiceOptions { arguments: BTreeMap::from([("--dir".into(), json!({"a": 1}))]), ..Default::default() };
        let err = command_line(&def, &p, None, &object).unwrap_err().to_string();
        assert_eq!(err, "invalid arguments: argument --dir: an object is not an argument value");
        let err = command_line(&def, &port("svc", &[8000]), None, &ServiceOptions::default()).unwrap_err().to_string();
        assert!(err.contains("names a port the service does not have"), "{err}");
    }

    #[test]
    fn words_are_quoted_for_sh_and_listeners_checked_by_hex_port() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$HOME; rm -rf /"), "'$HOME; rm -rf /'");
        assert!(listening_check(8000).contains(":1F40 "));
        assert!(listening_check(7).contains(":0007 "));
    }
}
