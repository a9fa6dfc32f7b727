//! `GET /openapi.json`: an OpenAPI 3.0 document of the manager's HTTP API, for API explorers,
//! client generators and fuzzers (scripts/test runs schemathesis against it).
//!
//! The document is built from [`operations`], one entry per route and method the API modules
//! register. Two tests keep it true to the handlers: every `.route("…")` written in the API
//! modules' sources has an entry here, and every entry reaches a handler of the built router
//! (neither 404 `url-not-found` nor 405). Request bodies and query parameters describe what the
//! handlers read; the original accepts extra keys, so objects stay open.
//!
//! Security: the signed routes declare the `BackendAI` scheme (an HMAC signature in
//! `Authorization`, `client-wire.md` §4); the storage side channel takes its token in the
//! query; the console routes take the console cookie. Streaming routes (server-sent events,
//! WebSockets, the app proxy) carry `x-bai-streaming: true` so a fuzzer can leave them out.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::ApiState;

/// How a route authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// A signed request (or the console cookie with its header).
    Signed,
    /// A storage token in the query (`token`).
    Token,
}

/// One documented operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// `GET`, `POST`, …
    pub method: &'static str,
    /// The path as the router spells it (`{name}` parameters; `{*rest}` tails).
    pub path: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Query parameters: (name, JSON schema, required).
    pub query: Vec<(&'static str, Value, bool)>,
    /// The request body.
    pub body: Body,
    /// Whether the response is a stream (SSE, WebSocket, proxied app traffic).
    pub streaming: bool,
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// None.
    None,
    /// A JSON object with this schema.
    Json(Value),
    /// `multipart/form-data` files.
    Multipart,
    /// Raw bytes (`application/offset+octet-stream`, TUS chunks).
    Bytes,
}

fn op(method: &'static str, path: &'static str, summary: &'static str) -> Operation {
    Operation { method, path, summary, access: Access::Signed, query: Vec::new(), body: Body::None, streaming: false }
}

impl Operation {
    fn public(mut self) -> Self {
        self.access = Access::Public;
        self
    }
    fn token(mut self) -> Self {
        self.access = Access::Token;
        self.query.push(("token", string(), true));
        self
    }
    fn query(mut self, name: &'static str, schema: Value) -> Self {
        self.query.push((name, schema, false));
        self
    }
    fn required_query(mut self, name: &'static str, schema: Value) -> Self {
        self.query.push((name, schema, true));
        self
    }
    fn json(mut self, properties: Value, required: &[&str]) -> Self {
        self.body = Body::Json(object(properties, required));
        self
    }
    fn multipart(mut self) -> Self {
        self.body = Body::Multipart;
        self
    }
    fn bytes(mut self) -> Self {
        self.body = Body::Bytes;
        self
    }
    fn streaming(mut self) -> Self {
        self.streaming = true;
        self
    }
}

fn string() -> Value {
    json!({"type": "string"})
}
fn boolean() -> Value {
    json!({"type": "boolean"})
}
fn integer() -> Value {
    json!({"type": "integer"})
}
fn open_object() -> Value {
    json!({"type": "object", "additionalProperties": true})
}
fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}
fn string_or_strings() -> Value {
    json!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})
}
fn object(properties: Value, required: &[&str]) -> Value {
    let mut schema = json!({"type": "object", "properties": properties, "additionalProperties": true});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

/// What `POST /session` reads (the official client's create body, §6.1).
fn session_create_body() -> Value {
    json!({
        "name": string(), "sessionName": string(), "clientSessionToken": string(), "image": string(),
        "lang": string(), "architecture": string(), "type": {"type": "string", "enum": ["interactive", "batch", "inference"]},
        "sessionType": string(), "tag": {"type": "string", "nullable": true}, "group": string(), "domain": string(),
        "clusterSize": integer(), "clusterMode": {"type": "string", "enum": ["single-node", "multi-node"]},
        "enqueueOnly": boolean(), "maxWaitSeconds": integer(), "reuseIfExists": boolean(),
        "startupCommand": {"type": "string", "nullable": true}, "bootstrap_script": {"type": "string", "nullable": true},
        "owner_access_key": {"type": "string", "nullable": true}, "starts_at": {"type": "string", "nullable": true},
        "dependencies": strings(), "callback_url": {"type": "string", "nullable": true},
        "config": object(json!({
            "resources": open_object(), "resource_opts": open_object(), "environ": open_object(),
            "mounts": strings(), "mount_map": open_object(), "scalingGroup": {"type": "string", "nullable": true},
            "preopen_ports": {"type": "array", "items": {"type": "integer"}, "nullable": true},
        }), &[]),
    })
}

/// Every operation of the API, in the order of the modules that register them.
pub fn operations() -> Vec<Operation> {
    let session = "/session/{reference}";
    let mut ops = vec![
        // version, bai
        op("GET", "/", "The API version (the client's version probe).").public(),
        op("GET", "/openapi.json", "This document.").public(),
        op("GET", "/bai/whoami", "The caller's keypair and user."),
        op("GET", "/bai/echo", "Echoes `echo` with the caller's access key.").required_query("echo", string()),
        op("POST", "/bai/echo", "Echoes `echo` with the caller's access key.").json(json!({"echo": string()}), &["echo"]),
        // sessions
        op("POST", "/session", "Creates a compute session.").json(session_create_body(), &["image"]),
        op("POST", "/session/_/create", "Creates a compute session (legacy path).").json(session_create_body(), &["image"]),
        op("GET", session, "A session's information.").query("owner_access_key", string()),
        op("POST", session, "Executes code in a session.").json(
            json!({"mode": {"type": "string", "enum": ["query", "batch", "input", "continue", "complete"]},
                   "runId": string(), "code": string(), "options": open_object()}),
            &[],
        ),
        op("DELETE", session, "Destroys a session.").query("forced", boolean()).query("owner_access_key", string()),
        op("PATCH", session, "Restarts a session.").query("owner_access_key", string()),
        op("GET", "/session/{reference}/logs", "A session's container logs.").query("owner_access_key", string()),
        op("GET", "/session/{reference}/status-history", "A session's status changes.")
            .query("owner_access_key", string()),
        op("POST", "/session/{reference}/rename", "Renames a session.").required_query("name", string()),
        op("POST", "/session/{reference}/interrupt", "Interrupts a running execution."),
        op("POST", "/session/{reference}/complete", "Code completion.")
            .json(json!({"code": string(), "options": open_object()}), &[]),
        op("GET", "/session/{reference}/files", "Lists files in a session's container.").query("path", string()),
        op("POST", "/session/{reference}/upload", "Uploads files into a session's work directory.").multipart(),
        op("GET", "/session/{reference}/download", "Downloads files from a session (a tar).")
            .query("files", string_or_strings()),
        op("GET", "/stream/session/{reference}/execute", "Code execution over a WebSocket.").streaming(),
        op("GET", "/stream/session/{reference}/apps", "The session's service ports."),
        op("GET", "/stream/session/{reference}/tcpproxy", "A TCP tunnel to a service port (WebSocket).")
            .query("app", string())
            .streaming(),
        op("GET", "/stream/session/{reference}/httpproxy", "An HTTP tunnel to a service port.")
            .query("app", string())
            .streaming(),
        op("POST", "/stream/session/{reference}/apps/{app}/link", "A link to a service port through the app proxy."),
        op("GET", "/app-proxy/{token}", "A service port through the app proxy.").public().streaming(),
        op("GET", "/app-proxy/{token}/", "A service port through the app proxy.").public().streaming(),
        op("GET", "/app-proxy/{token}/{*path}", "A service port through the app proxy.").public().streaming(),
        op("GET", "/events/session", "Session and kernel events (server-sent events).")
            .query("sessionName", string())
            .query("ownerAccessKey", string())
            .query("sessionId", string())
            .query("group", string())
            .query("scope", string())
            .streaming(),
        op("GET", "/events/background-task", "A background task's progress (server-sent events).")
            .query("taskId", string())
            .query("task_id", string())
            .streaming(),
        // GraphQL
        op("POST", "/admin/gql", "GraphQL.").json(
            json!({"query": string(), "variables": open_object(), "operation_name": string(), "operationName": string()}),
            &["query"],
        ),
        op("POST", "/admin/graphql", "GraphQL (legacy envelope).")
            .json(json!({"query": string(), "variables": open_object()}), &["query"]),
        // resources
        op("GET", "/resource/presets", "Resource presets."),
        op("POST", "/resource/check-presets", "What the caller can still launch.")
            .json(json!({"scaling_group": string(), "group": string()}), &[]),
        op("POST", "/resource/recalculate-usage", "Recomputes every agent's and keypair's usage (superadmin)."),
        op("GET", "/resource/watcher", "An agent watcher's status (superadmin).").required_query("agent_id", string()),
        op("POST", "/resource/watcher/agent/start", "Starts an agent through its watcher (superadmin).")
            .json(json!({"agent_id": string()}), &["agent_id"]),
        op("POST", "/resource/watcher/agent/stop", "Stops an agent through its watcher (superadmin).")
            .json(json!({"agent_id": string()}), &["agent_id"]),
        op("POST", "/resource/watcher/agent/restart", "Restarts an agent through its watcher (superadmin).")
            .json(json!({"agent_id": string()}), &["agent_id"]),
        // cluster-wide settings the CLI reads
        op("GET", "/config/resource-slots", "The cluster's resource slots and their units."),
        op("GET", "/config/vfolder-types", "The kinds of virtual folders."),
        op("GET", "/config/docker-registries", "The registries images come from."),
        op("GET", "/manager/announcement", "The operators' announcement, if any."),
        // virtual folders
        op("POST", "/folders", "Creates a virtual folder.").json(
            json!({"name": string(), "host": {"type": "string", "nullable": true}, "group": {"type": "string", "nullable": true},
                   "usage_mode": string(), "permission": string(), "quota": string(), "cloneable": boolean(),
                   "unmanaged_path": {"type": "string", "nullable": true}}),
            &["name"],
        ),
        op("GET", "/folders", "The folders the caller may use.").query("all", boolean()).query("group_id", string()),
        op("GET", "/folders/_/hosts", "Storage hosts the caller may use."),
        op("GET", "/folders/_/all_hosts", "Every storage host (legacy path)."),
        op("GET", "/folders/_/all-hosts", "Every storage host."),
        op("GET", "/folders/{name}", "A folder's information."),
        op("DELETE", "/folders/{name}", "Deletes a folder."),
        op("POST", "/folders/{name}/rename", "Renames a folder.").json(json!({"new_name": string()}), &["new_name"]),
        op("POST", "/folders/{name}/mkdir", "Creates directories.")
            .json(json!({"path": string_or_strings(), "parents": boolean(), "exist_ok": boolean()}), &["path"]),
        op("GET", "/folders/{name}/files", "Lists a directory.").query("path", string()),
        op("POST", "/folders/{name}/rename-file", "Renames a file or directory.")
            .json(json!({"target_path": string(), "new_name": string()}), &["target_path", "new_name"]),
        op("POST", "/folders/{name}/move-file", "Moves a file or directory.")
            .json(json!({"src": string(), "dst": string()}), &["src", "dst"]),
        op("DELETE", "/folders/{name}/delete-files", "Deletes files.")
            .json(json!({"files": string_or_strings(), "recursive": boolean()}), &["files"]),
        op("POST", "/folders/{name}/delete-files", "Deletes files (POST form).")
            .json(json!({"files": string_or_strings(), "recursive": boolean()}), &["files"]),
        op("POST", "/folders/{name}/request-upload", "A token and URL for a TUS upload.")
            .json(json!({"path": string(), "size": integer()}), &["path", "size"]),
        op("POST", "/folders/{name}/request-download", "A token and URL for a download.")
            .json(json!({"path": string(), "archive": boolean()}), &["path"]),
        op("POST", "/folders/{name}/share", "Shares a folder with users.")
            .json(json!({"permission": string(), "emails": strings()}), &["emails"]),
        op("DELETE", "/folders/{name}/unshare", "Stops sharing a folder.").json(json!({"emails": strings()}), &["emails"]),
        op("POST", "/folders/{name}/unshare", "Stops sharing a folder (POST form).")
            .json(json!({"emails": strings()}), &["emails"]),
        op("POST", "/folders/{name}/invite", "Invites users to a folder.")
            .json(json!({"perm": string(), "user_ids": strings()}), &["user_ids"]),
        op("POST", "/folders/{name}/leave", "Leaves a folder shared with the caller.")
            .json(json!({"shared_user_uuid": string()}), &[]),
        op("GET", "/folders/invitations/list", "Invitations sent to the caller."),
        op("POST", "/folders/invitations/accept", "Accepts an invitation.").json(json!({"inv_id": string()}), &["inv_id"]),
        op("DELETE", "/folders/invitations/delete", "Rejects or cancels an invitation.")
            .json(json!({"inv_id": string()}), &["inv_id"]),
        op("POST", "/folders/invitations/delete", "Rejects or cancels an invitation (POST form).")
            .json(json!({"inv_id": string()}), &["inv_id"]),
        // the storage side channel
        op("PATCH", super::vfolder::UPLOAD_PATH, "Uploads a chunk (TUS 1.0).").token().bytes(),
        op("HEAD", super::vfolder::UPLOAD_PATH, "An upload's offset (TUS 1.0).").token(),
        op("OPTIONS", super::vfolder::UPLOAD_PATH, "TUS capabilities.").token(),
        op("GET", super::vfolder::DOWNLOAD_PATH, "Downloads a file.").token(),
        // the web console
        op("GET", "/console", "Redirects to the console.").public(),
        op("GET", "/graphql-ui", "Redirects to the console's GraphQL page.").public(),
        op("GET", "/console/", "The web console.").public(),
        op("GET", "/console/app.js", "The console's script.").public(),
        op("GET", "/console/style.css", "The console's style sheet.").public(),
        op("POST", "/console/login", "Signs in to the console (sets its cookie).")
            .public()
            .json(json!({"access_key": string(), "secret_key": string()}), &["access_key", "secret_key"]),
        op("POST", "/console/logout", "Signs out of the console.").public(),
    ];
    for op in &mut ops {
        // The signed routes also answer to the console cookie; documenting one scheme keeps
        // explorers simple.
        if op.path.starts_with("/console") {
            op.access = Access::Public;
        }
    }
    ops
}

/// The OpenAPI path of a router path: `{*rest}` becomes `{rest}`.
fn openapi_path(path: &str) -> String {
    path.replace("{*", "{")
}

/// The OpenAPI 3.0 document.
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for op in operations() {
        let path = openapi_path(op.path);
        let mut parameters: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        for (name, schema, required) in &op.query {
            parameters.push(json!({"name": name, "in": "query", "required": required, "schema": schema}));
        }
        let mut operation = json!({
            "summary": op.summary,
            "operationId": format!("{} {}", op.method, op.path),
            "responses": {
                "default": {"description": "A problem document (`application/problem+json`) on errors.",
                            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
                "200": {"description": "Success."},
            },
        });
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        match &op.body {
            Body::None => {}
            Body::Json(schema) => {
                operation["requestBody"] =
                    json!({"required": false, "content": {"application/json": {"schema": schema}}});
            }
            Body::Multipart => {
                operation["requestBody"] = json!({"required": true, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "properties": {"src": {"type": "string", "format": "binary"}}}}}});
            }
            Body::Bytes => {
                operation["requestBody"] = json!({"required": true, "content": {"application/offset+octet-stream": {
                    "schema": {"type": "string", "format": "binary"}}}});
            }
        }
        match op.access {
            Access::Signed => operation["security"] = json!([{"BackendAI": []}]),
            Access::Public | Access::Token => operation["security"] = json!([]),
        }
        if op.streaming {
            operation["x-bai-streaming"] = json!(true);
        }
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[op.method.to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "bai manager API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The Backend.AI client protocol as bai's manager serves it. Signed requests carry \
                `Authorization: BackendAI signMethod=HMAC-SHA256, credential=<access key>:<signature>`, `Date` and \
                `X-BackendAI-Version`.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "BackendAI": {"type": "apiKey", "in": "header", "name": "Authorization",
                              "description": "HMAC-SHA256 request signature (see the description)."},
            },
            "schemas": {
                "Problem": {"type": "object", "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"}, "msg": {"type": "string"},
                    "data": {}}, "required": ["type", "title"]},
            },
        },
        "security": [{"BackendAI": []}],
    })
}

/// The public route serving [`document`].
pub fn routes() -> Router<ApiState> {
    Router::new().route("/openapi.json", get(|| async { Json(document()) }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The API modules' sources, as compiled.
    const SOURCES: &[(&str, &str)] = &[
        ("mod.rs", include_str!("mod.rs")),
        ("apps.rs", include_str!("apps.rs")),
        ("config.rs", include_str!("config.rs")),
        ("console.rs", include_str!("console.rs")),
        ("events.rs", include_str!("events.rs")),
        ("gql/mod.rs", include_str!("gql/mod.rs")),
        ("openapi.rs", include_str!("openapi.rs")),
        ("resource.rs", include_str!("resource.rs")),
        ("session.rs", include_str!("session.rs")),
        ("stream.rs", include_str!("stream.rs")),
        ("version.rs", include_str!("version.rs")),
        ("vfolder.rs", include_str!("vfolder.rs")),
    ];

    /// The literal paths of every `.route("…", …)` in the sources.
    fn registered_paths() -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (_, text) in SOURCES {
            // Code only: not the module docs (they show example routes), not the tests.
            let text = text.split("#[cfg(test)]").next().unwrap_or(text);
            let code: String =
                text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
            for (i, _) in code.match_indices(".route(") {
                let rest = code[i + ".route(".len()..].trim_start();
                if let Some(literal) = rest.strip_prefix('"') {
                    if let Some(end) = literal.find('"') {
                        out.insert(literal[..end].to_string());
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_registered_route_is_documented() {
        let documented: BTreeSet<String> = operations().iter().map(|o| o.path.to_string()).collect();
        let paths = registered_paths();
        assert!(paths.len() > 50, "the scan found too few routes: {paths:?}");
        let missing: Vec<&String> = paths.iter().filter(|p| !documented.contains(*p)).collect();
        assert!(missing.is_empty(), "routes without an entry in api::openapi::operations: {missing:?}");
    }

    #[test]
    fn the_document_is_well_formed() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.0.3");
        let ops = operations();
        let mut ids = BTreeSet::new();
        for op in &ops {
            assert!(ids.insert((op.method, op.path)), "{} {} is listed twice", op.method, op.path);
            let entry = &doc["paths"][openapi_path(op.path)][op.method.to_ascii_lowercase()];
            assert_eq!(entry["summary"], op.summary);
            let declared: BTreeSet<String> = entry["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            let in_path: BTreeSet<String> = openapi_path(op.path)
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(String::from)
                .collect();
            assert_eq!(declared, in_path, "{} {}", op.method, op.path);
        }
        let session = &doc["paths"]["/session"]["post"];
        assert_eq!(session["requestBody"]["content"]["application/json"]["schema"]["required"], json!(["image"]));
        assert_eq!(doc["paths"]["/events/session"]["get"]["x-bai-streaming"], true);
    }
}
