//! One error type for every call, keeping what the server said.

use serde_json::Value;

/// A problem-details body (`application/problem+json`) as the manager sends it with every
/// error status: `{"type", "title", "msg"?, "data"?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The problem type, a URL such as `https://api.backend.ai/probs/object-not-found`.
    pub type_: String,
    /// The short, human title.
    pub title: String,
    /// The detailed message, when the server gave one.
    pub msg: Option<String>,
    /// Structured details (e.g. which fields were invalid).
    pub data: Option<Value>,
    /// The whole body as received (JSON, or `{"content": text}` when it was not JSON).
    pub raw: Value,
}

impl Problem {
    /// Reads an error body; a body that is not a problem object keeps its text as the title.
    pub fn from_body(body: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(body) {
            Ok(raw @ Value::Object(_)) => Self {
                type_: raw["type"].as_str().unwrap_or("about:blank").to_string(),
                title: raw["title"].as_str().unwrap_or("").to_string(),
                msg: raw["msg"].as_str().map(str::to_string),
                data: raw.get("data").filter(|d| !d.is_null()).cloned(),
                raw,
            },
            _ => {
                let text = String::from_utf8_lossy(body).trim().to_string();
                Self {
                    type_: "about:blank".into(),
                    title: text.chars().take(200).collect(),
                    msg: None,
                    data: None,
                    raw: serde_json::json!({ "content": text }),
                }
            }
        }
    }

    /// The last segment of the type URL: `object-not-found`, `auth-failed`, …
    pub fn kind(&self) -> &str {
        self.type_.rsplit('/').next().unwrap_or(&self.type_)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let title = if self.title.is_empty() { self.kind() } else { &self.title };
        f.write_str(title.trim_end_matches('.'))?;
        if let Some(msg) = self.msg.as_deref().filter(|m| !m.is_empty() && *m != self.title) {
            write!(f, ": {msg}")?;
        }
        Ok(())
    }
}

/// One GraphQL error of a response's `errors` list.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphQlError {
    /// The message.
    pub message: String,
    /// The path of the field that failed, e.g. `agent_list`.
    pub path: Vec<String>,
}

/// Everything a call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client configuration (environment, file or builder) is unusable.
    #[error("configuration: {field}: {reason}")]
    Config {
        /// The setting, e.g. `BACKEND_ENDPOINT`.
        field: String,
        /// Why it is refused.
        reason: String,
    },
    /// An argument of the call is invalid; nothing was sent.
    #[error("{field}: {reason}")]
    InvalidInput {
        /// The argument.
        field: String,
        /// Why it is refused.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{method} {path} failed with {status}: {problem}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The request method.
        method: String,
        /// The request path (without the query).
        path: String,
        /// The server's problem details.
        problem: Box<Problem>,
    },
    /// A GraphQL request returned errors.
    #[error("GraphQL: {}", .errors.iter().map(|e| if e.path.is_empty() { e.message.clone() } else { format!("{} (at {})", e.message, e.path.join(".")) }).collect::<Vec<_>>().join("; "))]
    GraphQl {
        /// The errors, in the server's order.
        errors: Vec<GraphQlError>,
    },
    /// The manager could not be reached (connection refused, DNS, TLS, timeout).
    #[error("cannot reach the manager at {url}: {reason}")]
    Unreachable {
        /// The URL of the request.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server refused an operation it understood (a GraphQL mutation answering
    /// `ok: false`), with its reason.
    #[error("{operation} was refused: {msg}")]
    Rejected {
        /// The operation, e.g. `create_keypair`.
        operation: String,
        /// The server's reason.
        msg: String,
    },
    /// The server answered something this client does not understand.
    #[error("unexpected response to {what}: {reason}")]
    Protocol {
        /// The call.
        what: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// A local file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The HTTP status, for [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's problem details, for [`Error::Api`].
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Api { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// Whether the server said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// What the user can do about it, when there is something obvious to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Config { field, .. } if field.starts_with("BACKEND_") => Some(format!(
                "set {field} in the environment or in the config file (`bai config path` shows where it is)"
            )),
            Self::Unreachable { .. } => {
                Some("check that the manager is running and that BACKEND_ENDPOINT points at it".into())
            }
            Self::Api { status: 401, problem, .. } if problem.kind() == "auth-failed" => Some(
                "check BACKEND_ACCESS_KEY and BACKEND_SECRET_KEY, and that this machine's clock is within 15 minutes \
                 of the manager's"
                    .into(),
            ),
            Self::Api { status: 400, problem, .. } if problem.kind() == "invalid-auth-params" => {
                Some("this machine's clock must be within 15 minutes of the manager's".into())
            }
            Self::Api { status: 429, .. } => Some("the keypair's rate limit is reached; wait a few minutes".into()),
            Self::Api { status: 404, path, .. } if path.starts_with("/session/") => {
                Some("`bai session ls` lists your sessions; use the name or the id it shows".into())
            }
            Self::Api { status: 404, path, .. } if path.starts_with("/folders/") => {
                Some("`bai vfolder ls` lists the folders you can use".into())
            }
            Self::Api { status: 412, .. } => {
                Some("a resource limit is reached; `bai preset check` shows what is left".into())
            }
            Self::Api { status: 401 | 403, .. } => Some("this needs a keypair with more privileges".into()),
            _ => None,
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_error(path: impl AsRef<std::path::Path>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.as_ref().display().to_string();
    move |source| Error::Io { path, source }
}

pub(crate) fn protocol(what: impl Into<String>, reason: impl std::fmt::Display) -> Error {
    Error::Protocol { what: what.into(), reason: reason.to_string() }
}

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidInput { field: field.into(), reason: reason.into() }
}

/// A 404 `object-not-found` found out on the client side (e.g. no session has that name).
pub(crate) fn not_found(path: &str, title: &str, name: &str) -> Error {
    let body = serde_json::json!({
        "type": "https://api.backend.ai/probs/object-not-found",
        "title": title,
        "msg": format!("nothing is named {name:?}"),
    });
    Error::Api {
        status: 404,
        method: "GET".into(),
        path: path.to_string(),
        problem: Box::new(Problem::from_body(body.to_string().as_bytes())),
    }
}
