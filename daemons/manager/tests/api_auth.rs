//! The API foundation end to end: requests signed as the official client signs them
//! (`bai_core::signing`, spec `client-wire.md` §4) go through the real router, middleware and
//! error rendering, in process (`tower::ServiceExt::oneshot`) and once over a real socket.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::http::{Request, Response, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use bai_core::ids::AccessKey;
use bai_core::signing::{self, RequestToSign, API_VERSION};
use bai_manager::api::{
    self, AdminContext, ApiJson, ApiRouter, ApiState, AuthContext, CachedKeypairs, Credential, InMemoryRateLimiter,
    ManualClock, Role, StaticKeypairs,
};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

// The spec's §4.4 test-vector credentials.
const AK: &str = "AKIAIOSFODNN7EXAMPLE";
const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const HOST: &str = "127.0.0.1:8081";
const VECTOR_DATE: &str = "2024-01-02T03:04:05.678901+00:00";

const ADMIN_AK: &str = "AKADMIN0000000000001";
const INACTIVE_AK: &str = "AKINACTIVE0000000001";
const LIMITED_AK: &str = "AKLIMITED00000000001";
const OTHER_SK: &str = "another-secret-key-of-forty-characters-x";

const MANAGER_VERSION: &str = "23.09.10-bai-test";

struct Harness {
    app: Router,
    clock: Arc<ManualClock>,
}

fn credentials() -> StaticKeypairs {
    let user = Credential { email: "user@example.com".into(), ..Credential::new(AK, SK, Role::User) };
    let admin = Credential::new(ADMIN_AK, OTHER_SK, Role::Admin);
    let inactive = Credential { is_active: false, ..Credential::new(INACTIVE_AK, OTHER_SK, Role::User) };
    let limited = Credential { rate_limit: 3, ..Credential::new(LIMITED_AK, OTHER_SK, Role::User) };
    [user, admin, inactive, limited].into_iter().collect()
}

/// Extra signed routes, as a later endpoint would add them.
fn extra_routes() -> Router<ApiState> {
    async fn echo_path(ctx: AuthContext, req: Request<Body>) -> Json<Value> {
        let path = req.uri().path_and_query().map(|p| p.to_string());
        let body = to_bytes(req.into_body(), usize::MAX).await.unwrap();
        Json(json!({
            "access_key": ctx.access_key(),
            "role": ctx.role(),
            "path": path,
            "body": String::from_utf8_lossy(&body),
        }))
    }
    async fn admin_only(AdminContext(ctx): AdminContext) -> Json<Value> {
        Json(json!({ "admin": ctx.access_key() }))
    }
    async fn typed(ApiJson(body): ApiJson<Vec<u32>>) -> Json<Value> {
        Json(json!({ "sum": body.iter().sum::<u32>() }))
    }
    async fn plain_axum_json(Json(body): Json<Vec<u32>>) -> Json<Value> {
        Json(json!({ "len": body.len() }))
    }
    async fn boom() -> &'static str {
        panic!("deliberate test panic")
    }
    Router::new()
        .route("/folders/_/hosts", get(echo_path))
        .route("/admin/gql", post(echo_path))
        .route("/events/session", get(echo_path))
        .route("/admin-only", get(admin_only))
        .route("/typed", post(typed))
        .route("/plain-axum-json", post(plain_axum_json))
        .route("/boom", get(boom))
}

fn harness_at(now: DateTime<Utc>) -> Harness {
    let clock = Arc::new(ManualClock::new(now));
    let limiter = InMemoryRateLimiter::with_clock(Duration::from_secs(900), clock.clone());
    let state = ApiState::new(Arc::new(CachedKeypairs::new(credentials())), Arc::new(limiter))
        .with_clock(clock.clone())
        .with_manager_version(MANAGER_VERSION);
    let app = ApiRouter::new().signed(extra_routes()).build(state);
    Harness { app, clock }
}

fn harness() -> Harness {
    harness_at(Utc::now())
}

/// A request as the official client builds it (§2, §4.1); fields can be altered to break it.
#[derive(Clone)]
struct ClientRequest {
    method: &'static str,
    path: String,
    body: Option<String>,
    content_type: Option<&'static str>,
    access_key: String,
    secret_key: String,
    date: Option<String>,
    date_header: &'static str,
    version: Option<String>,
    host: String,
    sign_host: Option<String>,
    signature: Option<String>,
    authorization: Option<String>,
}

impl ClientRequest {
    fn new(h: &Harness, method: &'static str, path: &str) -> Self {
        ClientRequest {
            method,
            path: path.to_string(),
            body: None,
            content_type: Some("text/plain"),
            access_key: AK.to_string(),
            secret_key: SK.to_string(),
            date: Some(signing::format_request_date(api::Clock::now(&*h.clock))),
            date_header: "Date",
            version: Some(API_VERSION.to_string()),
            host: HOST.to_string(),
            sign_host: None,
            signature: None,
            authorization: None,
        }
    }

    fn json(mut self, body: &str) -> Self {
        self.body = Some(body.to_string());
        self.content_type = Some("application/json");
        self
    }

    fn key(mut self, access_key: &str, secret_key: &str) -> Self {
        self.access_key = access_key.to_string();
        self.secret_key = secret_key.to_string();
        self
    }

    fn build(&self) -> Request<Body> {
        let mut b = Request::builder()
            .method(self.method)
            .uri(&self.path)
            .header("Host", &self.host)
            .header("User-Agent", "Backend.AI Client for Python 23.09.10")
            .header("X-BackendAI-Domain", "default");
        if let Some(v) = &self.version {
            b = b.header("X-BackendAI-Version", v);
        }
        if let Some(d) = &self.date {
            b = b.header(self.date_header, d);
        }
        if let Some(ct) = self.content_type {
            b = b.header("Content-Type", ct);
        }
        let authorization = match (&self.authorization, &self.date) {
            (Some(a), _) => Some(a.clone()),
            (None, Some(date)) => {
                let signature = self.signature.clone().unwrap_or_else(|| {
                    let req = RequestToSign {
                        method: self.method,
                        path_and_query: &self.path,
                        date,
                        host: self.sign_host.as_deref().unwrap_or(&self.host),
                        content_type: self.content_type.unwrap_or(signing::DEFAULT_CONTENT_TYPE),
                        api_version: self.version.as_deref().unwrap_or(API_VERSION),
                    };
                    signing::sign(&self.secret_key, &req).unwrap()
                });
                Some(signing::authorization_header(&AccessKey::new(self.access_key.as_str()).unwrap(), &signature))
            }
            (None, None) => None,
        };
        if let Some(a) = authorization.filter(|a| !a.is_empty()) {
            b = b.header("Authorization", a);
        }
        let body = self.body.clone().unwrap_or_default();
        b.header("Content-Length", body.len()).body(Body::from(body)).unwrap()
    }
}

async fn send(h: &Harness, req: Request<Body>) -> (StatusCode, Response<()>, Value) {
    let resp = h.app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
    };
    (parts.status, Response::from_parts(parts, ()), value)
}

fn content_type(resp: &Response<()>) -> &str {
    resp.headers().get("content-type").map(|v| v.to_str().unwrap()).unwrap_or("")
}

/// Asserts a problem document of the spec's format (§5.1) and returns its `msg`.
fn assert_problem(
    status: StatusCode,
    resp: &Response<()>,
    body: &Value,
    want: StatusCode,
    suffix: &str,
    title: &str,
) -> String {
    assert_eq!(status, want, "{body}");
    assert_eq!(content_type(resp), "application/problem+json");
    assert_eq!(body["type"], format!("https://api.backend.ai/probs/{suffix}"), "{body}");
    assert_eq!(body["title"], title, "{body}");
    body.get("msg").and_then(Value::as_str).unwrap_or("").to_string()
}

fn assert_auth_failed(status: StatusCode, resp: &Response<()>, body: &Value, msg: &str) {
    let got =
        assert_problem(status, resp, body, StatusCode::UNAUTHORIZED, "auth-failed", "Credential/signature mismatch.");
    assert_eq!(got, msg);
}

fn assert_invalid_auth(status: StatusCode, resp: &Response<()>, body: &Value) -> String {
    assert_problem(
        status,
        resp,
        body,
        StatusCode::BAD_REQUEST,
        "invalid-auth-params",
        "Missing or invalid authorization parameters.",
    )
}

#[tokio::test]
async fn version_probe_is_public_and_exact() {
    let h = harness();
    // the unsigned probe carries only User-Agent (§3)
    let probe =
        Request::get("/").header("User-Agent", "Backend.AI Client for Python 23.09.10").body(Body::empty()).unwrap();
    let resp = h.app.clone().oneshot(probe).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    assert_eq!(std::str::from_utf8(&bytes).unwrap(), r#"{"version":"v7.20230615","manager":"23.09.10-bai-test"}"#);

    // `backend.ai config` sends it signed
    let (status, resp, body) = send(&h, ClientRequest::new(&h, "GET", "/").build()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type(&resp), "application/json");
    assert_eq!(body, json!({"version": "v7.20230615", "manager": MANAGER_VERSION}));

    // the probe is public: its signature is not checked at all
    let stale = ClientRequest {
        date: Some(VECTOR_DATE.into()),
        signature: Some("00".into()),
        ..ClientRequest::new(&h, "GET", "/")
    };
    assert_eq!(send(&h, stale.build()).await.0, StatusCode::OK);
}

#[tokio::test]
async fn valid_signature_reaches_the_handler_with_its_context() {
    let h = harness();
    let (status, resp, body) = send(&h, ClientRequest::new(&h, "GET", "/bai/whoami").build()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(content_type(&resp), "application/json");
    assert_eq!(body["access_key"], AK);
    assert_eq!(body["email"], "user@example.com");
    assert_eq!(body["role"], "user");
    assert_eq!(body["domain_name"], "default");
    assert_eq!(body["api_version"], "v7.20230615");
    // no rate limit on this keypair, so no rate-limit headers
    assert!(resp.headers().get("x-ratelimit-limit").is_none());

    // the legacy scheme and header names work too
    let mut legacy = ClientRequest::new(&h, "GET", "/bai/whoami").build();
    let auth = legacy.headers()["authorization"].to_str().unwrap().replacen("BackendAI", "Sorna", 1);
    legacy.headers_mut().insert("authorization", auth.parse().unwrap());
    assert_eq!(send(&h, legacy).await.0, StatusCode::OK);

    let (status, _, body) =
        send(&h, ClientRequest::new(&h, "GET", "/admin-only").key(ADMIN_AK, OTHER_SK).build()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["admin"], ADMIN_AK);
}

#[tokio::test]
async fn spec_test_vectors_pass_end_to_end() {
    // The vectors' date is 2024-01-02T03:04:05Z; pin the server clock a few minutes later.
    let vector_time = DateTime::parse_from_rfc3339(VECTOR_DATE).unwrap().with_timezone(&Utc);
    let h = harness_at(vector_time + TimeDelta::minutes(5));
    let cases = [
        (
            "GET",
            "/folders/_/hosts",
            Some("text/plain"),
            None,
            "45ee43f01f31d0735bbf5cd87ca4a10c122a42164eb3298a518e79467243a132",
        ),
        (
            "POST",
            "/admin/gql",
            Some("application/json"),
            Some(r#"{"query": "query { keypair { access_key } }", "variables": {}}"#),
            "b2c10152d1c788b0790bde66c57c008cad2625156689e7f80f2290d38931e0ec",
        ),
        (
            "GET",
            "/events/session?sessionName=mysess01&scope=*",
            None,
            None,
            "672208551832e17b579c3d18c3ec7553970f2e20bf9ce91d911211744d2e7b9f",
        ),
    ];
    for (method, path, ctype, body, signature) in cases {
        let req = ClientRequest {
            body: body.map(str::to_string),
            content_type: ctype,
            date: Some(VECTOR_DATE.to_string()),
            signature: Some(signature.to_string()),
            ..ClientRequest::new(&h, method, path)
        };
        let built = req.build();
        assert_eq!(
            built.headers()["authorization"],
            format!("BackendAI signMethod=HMAC-SHA256, credential={AK}:{signature}").as_str()
        );
        let (status, _, got) = send(&h, built).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {got}");
        assert_eq!(got["access_key"], AK);
        assert_eq!(got["path"], path);
        // the body is still there for the handler after verification
        assert_eq!(got["body"], body.unwrap_or(""), "{method} {path}");

        // one changed hex digit is a mismatch
        let mut bad = signature.to_string();
        bad.replace_range(0..1, if bad.starts_with('0') { "1" } else { "0" });
        let (status, resp, got) = send(&h, ClientRequest { signature: Some(bad), ..req.clone() }.build()).await;
        assert_auth_failed(status, &resp, &got, "Signature mismatch");
    }

    // with the real clock, the vectors' 2024 date is far outside the ±15-minute window
    let real = harness();
    let req = ClientRequest {
        date: Some(VECTOR_DATE.to_string()),
        signature: Some(cases[0].4.to_string()),
        ..ClientRequest::new(&real, "GET", "/folders/_/hosts")
    };
    let (status, resp, body) = send(&real, req.build()).await;
    assert!(assert_invalid_auth(status, &resp, &body).starts_with("Date/time sync error"));
}

#[tokio::test]
async fn bad_signatures_are_refused() {
    let h = harness();
    let base = ClientRequest::new(&h, "GET", "/bai/whoami");

    let wrong_secret = base.clone().key(AK, OTHER_SK);
    let (status, resp, body) = send(&h, wrong_secret.build()).await;
    assert_auth_failed(status, &resp, &body, "Signature mismatch");

    // the host, the path with its query and the content type are all signed
    let other_host = ClientRequest { sign_host: Some("127.0.0.1:9999".into()), ..base.clone() };
    let (status, resp, body) = send(&h, other_host.build()).await;
    assert_auth_failed(status, &resp, &body, "Signature mismatch");

    let mut tampered_path = base.clone().build();
    *tampered_path.uri_mut() = "/bai/whoami?x=1".parse().unwrap();
    let (status, resp, body) = send(&h, tampered_path).await;
    assert_auth_failed(status, &resp, &body, "Signature mismatch");

    let mut tampered_ctype = base.clone().build();
    tampered_ctype.headers_mut().insert("content-type", "application/json".parse().unwrap());
    let (status, resp, body) = send(&h, tampered_ctype).await;
    assert_auth_failed(status, &resp, &body, "Signature mismatch");

    // a charset parameter is not signed (the client strips it)
    let mut with_charset = base.clone().build();
    with_charset.headers_mut().insert("content-type", "text/plain; charset=utf-8".parse().unwrap());
    assert_eq!(send(&h, with_charset).await.0, StatusCode::OK);
}

#[tokio::test]
async fn unknown_and_inactive_keys_are_refused() {
    let h = harness();
    let unknown = ClientRequest::new(&h, "GET", "/bai/whoami").key("AKUNKNOWN00000000000", SK);
    let (status, resp, body) = send(&h, unknown.build()).await;
    assert_auth_failed(status, &resp, &body, "Access key not found");

    let inactive = ClientRequest::new(&h, "GET", "/bai/whoami").key(INACTIVE_AK, OTHER_SK);
    let (status, resp, body) = send(&h, inactive.build()).await;
    assert_auth_failed(status, &resp, &body, "Access key not found");

    // a user's keypair on an admin route: 401 as in the original, not 403
    let (status, resp, body) = send(&h, ClientRequest::new(&h, "GET", "/admin-only").build()).await;
    assert_auth_failed(status, &resp, &body, "Unauthorized access");
}

#[tokio::test]
async fn dates_must_be_present_and_within_fifteen_minutes() {
    let h = harness();
    let now = Utc::now();
    h.clock.set(now);
    for minutes in [20, -20] {
        let req = ClientRequest {
            date: Some(signing::format_request_date(now + TimeDelta::minutes(minutes))),
            ..ClientRequest::new(&h, "GET", "/bai/whoami")
        };
        let (status, resp, body) = send(&h, req.build()).await;
        let msg = assert_invalid_auth(status, &resp, &body);
        assert!(msg.starts_with("Date/time sync error"), "{minutes}: {msg}");
    }
    for minutes in [14, -14] {
        let req = ClientRequest {
            date: Some(signing::format_request_date(now + TimeDelta::minutes(minutes))),
            ..ClientRequest::new(&h, "GET", "/bai/whoami")
        };
        assert_eq!(send(&h, req.build()).await.0, StatusCode::OK, "{minutes}");
    }

    // no date at all (the Authorization header is still sent)
    let signed = ClientRequest::new(&h, "GET", "/bai/whoami").build();
    let mut no_date = signed;
    no_date.headers_mut().remove("date");
    let (status, resp, body) = send(&h, no_date).await;
    assert!(assert_invalid_auth(status, &resp, &body).starts_with("Date/time sync error"));

    // an unparsable date
    let garbage = ClientRequest {
        date: Some("yesterday".into()),
        signature: Some("ab".into()),
        ..ClientRequest::new(&h, "GET", "/bai/whoami")
    };
    let (status, resp, body) = send(&h, garbage.build()).await;
    assert!(assert_invalid_auth(status, &resp, &body).starts_with("Date/time sync error"));

    // X-BackendAI-Date instead of Date, and an RFC 1123 date, are accepted
    let alt = ClientRequest { date_header: "X-BackendAI-Date", ..ClientRequest::new(&h, "GET", "/bai/whoami") };
    assert_eq!(send(&h, alt.build()).await.0, StatusCode::OK);
    let rfc1123 = ClientRequest {
        date: Some(now.format("%a, %d %b %Y %H:%M:%S GMT").to_string()),
        ..ClientRequest::new(&h, "GET", "/bai/whoami")
    };
    assert_eq!(send(&h, rfc1123.build()).await.0, StatusCode::OK);
}

#[tokio::test]
async fn missing_or_malformed_authorization() {
    let h = harness();
    // dated but anonymous: the route needs a signature
    let anonymous =
        ClientRequest { authorization: Some(String::new()), ..ClientRequest::new(&h, "GET", "/bai/whoami") };
    let (status, resp, body) = send(&h, anonymous.build()).await;
    assert_auth_failed(status, &resp, &body, "Unauthorized access");

    // nothing at all: the original checks the date first
    let bare = Request::get("/bai/whoami").header("Host", HOST).body(Body::empty()).unwrap();
    let (status, resp, body) = send(&h, bare).await;
    assert!(assert_invalid_auth(status, &resp, &body).starts_with("Date/time sync error"));

    for header in [
        "Bearer abc",
        "BackendAI",
        "BackendAI signMethod=HMAC-SHA1, credential=AKIAIOSFODNN7EXAMPLE:abcd",
        "BackendAI signMethod=HMAC-SHA256, credential=AKIAIOSFODNN7EXAMPLE",
        "BackendAI signMethod=HMAC-SHA256, credential=AKIAIOSFODNN7EXAMPLE:not-hex",
    ] {
        let req =
            ClientRequest { authorization: Some(header.to_string()), ..ClientRequest::new(&h, "GET", "/bai/whoami") };
        let (status, resp, body) = send(&h, req.build()).await;
        assert_invalid_auth(status, &resp, &body);
    }

    // a signed request must name its API version; an unknown version is refused
    let no_version = ClientRequest { version: None, ..ClientRequest::new(&h, "GET", "/bai/whoami") };
    let mut req = no_version.build();
    req.headers_mut().remove("x-backendai-version");
    let (status, resp, body) = send(&h, req).await;
    assert_eq!(assert_invalid_auth(status, &resp, &body), "API version missing in request headers");

    let future = ClientRequest { version: Some("v8.20250101".into()), ..ClientRequest::new(&h, "GET", "/bai/whoami") };
    let (status, resp, body) = send(&h, future.build()).await;
    let msg = assert_problem(status, &resp, &body, StatusCode::BAD_REQUEST, "generic-bad-request", "Bad request.");
    assert_eq!(msg, "Unsupported API version.");

    // an older supported version is accepted and reported
    let older = ClientRequest { version: Some("v6.20220615".into()), ..ClientRequest::new(&h, "GET", "/bai/whoami") };
    let (status, _, body) = send(&h, older.build()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["api_version"], "v6.20220615");
}

#[tokio::test]
async fn bodies_are_parsed_with_errors_naming_the_problem() {
    let h = harness();
    let ok = ClientRequest::new(&h, "POST", "/bai/echo").json(r#"{"echo": "hello"}"#);
    let (status, _, body) = send(&h, ok.build()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"authorized": "yes", "access_key": AK, "echo": "hello"}));

    // without a body the parameters come from the query
    let (status, _, body) = send(&h, ClientRequest::new(&h, "GET", "/bai/echo?echo=from+query").build()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["echo"], "from query");

    let malformed = ClientRequest::new(&h, "POST", "/bai/echo").json(r#"{"echo": "hello""#);
    let (status, resp, body) = send(&h, malformed.build()).await;
    let msg = assert_problem(
        status,
        &resp,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid-api-params",
        "Missing or invalid API parameters.",
    );
    assert!(msg.starts_with("body: malformed JSON"), "{msg}");
    assert!(body["data"]["body"].as_str().unwrap().contains("EOF"), "{body}");

    let wrong_type = ClientRequest::new(&h, "POST", "/bai/echo").json(r#"{"echo": 5}"#);
    let (status, resp, body) = send(&h, wrong_type.build()).await;
    let msg = assert_problem(
        status,
        &resp,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid-api-params",
        "Missing or invalid API parameters.",
    );
    assert_eq!(msg, "echo: invalid type: integer `5`, expected a string");
    assert_eq!(body["data"], json!({"echo": "invalid type: integer `5`, expected a string"}));

    let missing = ClientRequest::new(&h, "POST", "/bai/echo").json("{}");
    let (status, resp, body) = send(&h, missing.build()).await;
    assert_problem(
        status,
        &resp,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid-api-params",
        "Missing or invalid API parameters.",
    );
    assert!(body["data"]["echo"].as_str().unwrap().contains("missing field"), "{body}");

    let typed = ClientRequest::new(&h, "POST", "/typed").json(r#"[1, 2, "x"]"#);
    let (status, resp, body) = send(&h, typed.build()).await;
    assert_problem(
        status,
        &resp,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid-api-params",
        "Missing or invalid API parameters.",
    );
    assert!(body["data"].get("[2]").is_some(), "{body}");

    // a route using axum's own Json extractor still answers the spec's format, never 415/422
    for (ctype, payload) in [("application/json", "{not json"), ("application/json", r#"["x"]"#), ("text/plain", "[1]")]
    {
        let mut req = ClientRequest::new(&h, "POST", "/plain-axum-json").json(payload);
        req.content_type = Some(ctype);
        let (status, resp, body) = send(&h, req.build()).await;
        let msg = assert_problem(
            status,
            &resp,
            &body,
            StatusCode::BAD_REQUEST,
            "invalid-api-params",
            "Missing or invalid API parameters.",
        );
        assert!(!msg.is_empty(), "{body}");
    }
}

#[tokio::test]
async fn rate_limit_refuses_with_429_and_headers() {
    let h = harness();
    let req = || ClientRequest::new(&h, "GET", "/bai/whoami").key(LIMITED_AK, OTHER_SK).build();
    for remaining in ["2", "1", "0"] {
        let (status, resp, _) = send(&h, req()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(resp.headers()["x-ratelimit-limit"], "3");
        assert_eq!(resp.headers()["x-ratelimit-remaining"], remaining);
        assert_eq!(resp.headers()["x-ratelimit-window"], "900");
    }
    let (status, resp, body) = send(&h, req()).await;
    assert_problem(
        status,
        &resp,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limit-exceeded",
        "You have reached your API query rate limit.",
    );
    assert_eq!(resp.headers()["x-ratelimit-limit"], "3");
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(resp.headers()["x-ratelimit-window"], "900");
    assert_eq!(resp.headers()["retry-after"], "900");

    // other keypairs are not affected; the window rolls on
    assert_eq!(send(&h, ClientRequest::new(&h, "GET", "/bai/whoami").build()).await.0, StatusCode::OK);
    h.clock.advance(TimeDelta::seconds(901));
    let (status, resp, _) = send(&h, req()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "2");
}

#[tokio::test]
async fn every_error_is_a_problem_document() {
    let h = harness();
    let (status, resp, body) = send(&h, Request::get("/no/such/path").body(Body::empty()).unwrap()).await;
    assert_problem(status, &resp, &body, StatusCode::NOT_FOUND, "url-not-found", "Unknown URL path.");

    let (status, resp, body) = send(&h, ClientRequest::new(&h, "DELETE", "/bai/whoami").build()).await;
    assert_problem(
        status,
        &resp,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "HTTP Method Not Allowed.",
    );

    let bad_version = Request::get("/").header("X-BackendAI-Version", "v9.2025").body(Body::empty()).unwrap();
    let (status, resp, body) = send(&h, bad_version).await;
    assert_problem(status, &resp, &body, StatusCode::BAD_REQUEST, "generic-bad-request", "Bad request.");

    let (status, resp, body) = send(&h, ClientRequest::new(&h, "GET", "/boom").build()).await;
    let msg = assert_problem(
        status,
        &resp,
        &body,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal-server-error",
        "Internal server error.",
    );
    assert!(msg.contains("deliberate test panic"), "{msg}");
}

#[tokio::test]
async fn signed_paths_include_a_mount_prefix() {
    let h = harness();
    let nested = Harness { app: Router::new().nest("/api", h.app.clone()), clock: h.clock.clone() };
    let (status, _, body) = send(&nested, ClientRequest::new(&nested, "GET", "/api/bai/whoami").build()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["access_key"], AK);
}

/// One HTTP/1.1 exchange over a fresh connection (`Connection: close`).
async fn raw_http(addr: std::net::SocketAddr, request: String) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn serves_over_a_real_socket_and_shuts_down() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let host = addr.to_string();
    let h = harness();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, h.app.clone(), async {
        let _ = stopped.await;
    }));

    let (status, head, body) = raw_http(
        addr,
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Backend.AI Client for Python 23.09.10\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(body, r#"{"version":"v7.20230615","manager":"23.09.10-bai-test"}"#);

    // signed over the wire with the real Host header, a JSON body and a raw query string
    let date = signing::format_request_date(api::Clock::now(&*h.clock));
    let path = "/bai/echo?unused=a%20b";
    let payload = r#"{"echo": "over the wire"}"#;
    let to_sign = RequestToSign {
        method: "POST",
        path_and_query: path,
        date: &date,
        host: &host,
        content_type: "application/json",
        api_version: API_VERSION,
    };
    let authorization =
        signing::authorization_header(&AccessKey::new(AK).unwrap(), &signing::sign(SK, &to_sign).unwrap());
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nDate: {date}\r\nX-BackendAI-Version: {API_VERSION}\r\n\
         X-BackendAI-Domain: default\r\nContent-Type: application/json\r\nAuthorization: {authorization}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    let (status, _, body) = raw_http(addr, request).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["echo"], "over the wire");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn public_and_signed_routes_can_share_a_path() {
    let state = ApiState::new(Arc::new(credentials()), Arc::new(InMemoryRateLimiter::default()));
    let app = ApiRouter::new()
        .public(Router::new().route("/shared", get(|| async { "public" })))
        .signed(Router::new().route("/shared", post(|ctx: AuthContext| async move { ctx.access_key().to_string() })))
        .build(state);
    let h = Harness { app, clock: Arc::new(ManualClock::new(Utc::now())) };
    let resp = h.app.clone().oneshot(Request::get("/shared").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let anonymous =
        Request::post("/shared").header("Date", signing::format_request_date(Utc::now())).body(Body::empty()).unwrap();
    let (status, resp, body) = send(&h, anonymous).await;
    assert_auth_failed(status, &resp, &body, "Unauthorized access");
    let resp = h.app.clone().oneshot(ClientRequest::new(&h, "POST", "/shared").build()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&to_bytes(resp.into_body(), usize::MAX).await.unwrap()[..], AK.as_bytes());
}
