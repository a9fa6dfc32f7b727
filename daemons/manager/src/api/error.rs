//! API errors, rendered as the original's problem documents.
//!
//! Every error leaves the manager as `application/problem+json` with a body
//! `{"type": "https://api.backend.ai/probs/<suffix>", "title": …, "msg"?: …, "data"?: …}`
//! (spec `client-wire.md` §5.1). The official client parses that body itself and crashes when
//! `type` or `title` is missing, so nothing in this API answers an error any other way:
//! [`normalize_errors`] rewrites the plain-text errors axum produces on its own (unknown
//! method, failed extractors, oversized bodies) and turns a panicking handler into a 500.

use std::borrow::Cow;
use std::fmt;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use serde_json::{json, Map, Value};

/// The URL prefix of every error `type`.
pub const PROBLEM_TYPE_PREFIX: &str = "https://api.backend.ai/probs/";

/// The content type of error responses.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// The kinds of error the API answers with: status, `type` suffix and default title of the
/// original's exceptions (spec §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 400 `generic-bad-request`: "Bad request."
    GenericBadRequest,
    /// 400 `invalid-auth-params`: a malformed `Authorization` header, a missing, unparsable or
    /// skewed date, a missing version header on a signed request.
    InvalidAuthParameters,
    /// 400 `invalid-api-params`: a request parameter or body is missing or wrong.
    InvalidApiParameters,
    /// 400 `session-already-exists`; its `data` carries `existingSessionId`.
    SessionAlreadyExists,
    /// 400 `vfolder-already-exists`.
    VFolderAlreadyExists,
    /// 400 `vfolder-creation-failed`.
    VFolderCreationFailed,
    /// 400 `vfolder-operation-failed`.
    VFolderOperationFailed,
    /// 400 `graphql-error` (legacy `/admin/graphql` only; `/admin/gql` answers 200).
    GraphQlError,
    /// 401 `auth-failed`: unknown or inactive access key, signature mismatch, anonymous access
    /// to a signed route, and (as in the original) insufficient privilege on REST routes.
    AuthorizationFailed,
    /// 401 `password-expired`.
    PasswordExpired,
    /// 403 `generic-forbidden`.
    GenericForbidden,
    /// 403 `insufficient-privilege`.
    InsufficientPrivilege,
    /// 404 `url-not-found`: no route has this path.
    UrlNotFound,
    /// 404 `object-not-found`: title `No such <object>.`
    ObjectNotFound,
    /// 404 `too-many-sessions-matched`; its `data.matches` lists `{id, name, status}`.
    TooManySessionsMatched,
    /// 405 `method-not-allowed`.
    MethodNotAllowed,
    /// 409 `generic-conflict` (bai only: the original has no 409; the client treats it as any
    /// other error).
    Conflict,
    /// 412 `quota-exceeded`.
    QuotaExceeded,
    /// 413 `request-too-large` (bai only: the original lets aiohttp answer in plain text).
    PayloadTooLarge,
    /// 429 `rate-limit-exceeded`.
    RateLimitExceeded,
    /// 500 `internal-server-error`.
    InternalServerError,
    /// 500 `server-misconfigured`.
    ServerMisconfigured,
    /// 501 `not-implemented`.
    NotImplemented,
    /// 502 `bad-gateway` (bai only): a service the manager called on the caller's behalf (an
    /// agent's watcher) answered with an error.
    BadGateway,
    /// 503 `service-unavailable`.
    ServiceUnavailable,
    /// 503 `server-frozen`.
    ServerFrozen,
    /// 503 `instance-not-available`: no agent can take the session.
    InstanceNotAvailable,
}

impl ErrorKind {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        use ErrorKind::*;
        match self {
            GenericBadRequest
            | InvalidAuthParameters
            | InvalidApiParameters
            | SessionAlreadyExists
            | VFolderAlreadyExists
            | VFolderCreationFailed
            | VFolderOperationFailed
            | GraphQlError => StatusCode::BAD_REQUEST,
            AuthorizationFailed | PasswordExpired => StatusCode::UNAUTHORIZED,
            GenericForbidden | InsufficientPrivilege => StatusCode::FORBIDDEN,
            UrlNotFound | ObjectNotFound | TooManySessionsMatched => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Conflict => StatusCode::CONFLICT,
            QuotaExceeded => StatusCode::PRECONDITION_FAILED,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RateLimitExceeded => StatusCode::TOO_MANY_REQUESTS,
            InternalServerError | ServerMisconfigured => StatusCode::INTERNAL_SERVER_ERROR,
            NotImplemented => StatusCode::NOT_IMPLEMENTED,
            BadGateway => StatusCode::BAD_GATEWAY,
            ServiceUnavailable | ServerFrozen | InstanceNotAvailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The last segment of the `type` URL, e.g. `auth-failed`.
    pub fn type_suffix(self) -> &'static str {
        use ErrorKind::*;
        match self {
            GenericBadRequest => "generic-bad-request",
            InvalidAuthParameters => "invalid-auth-params",
            InvalidApiParameters => "invalid-api-params",
            SessionAlreadyExists => "session-already-exists",
            VFolderAlreadyExists => "vfolder-already-exists",
            VFolderCreationFailed => "vfolder-creation-failed",
            VFolderOperationFailed => "vfolder-operation-failed",
            GraphQlError => "graphql-error",
            AuthorizationFailed => "auth-failed",
            PasswordExpired => "password-expired",
            GenericForbidden => "generic-forbidden",
            InsufficientPrivilege => "insufficient-privilege",
            UrlNotFound => "url-not-found",
            ObjectNotFound => "object-not-found",
            TooManySessionsMatched => "too-many-sessions-matched",
            MethodNotAllowed => "method-not-allowed",
            Conflict => "generic-conflict",
            QuotaExceeded => "quota-exceeded",
            PayloadTooLarge => "request-too-large",
            RateLimitExceeded => "rate-limit-exceeded",
            InternalServerError => "internal-server-error",
            ServerMisconfigured => "server-misconfigured",
            NotImplemented => "not-implemented",
            BadGateway => "bad-gateway",
            ServiceUnavailable => "service-unavailable",
            ServerFrozen => "server-frozen",
            InstanceNotAvailable => "instance-not-available",
        }
    }

    /// The full `type` URL.
    pub fn type_url(self) -> String {
        format!("{PROBLEM_TYPE_PREFIX}{}", self.type_suffix())
    }

    /// The original's title for this kind.
    pub fn default_title(self) -> &'static str {
        use ErrorKind::*;
        match self {
            GenericBadRequest => "Bad request.",
            InvalidAuthParameters => "Missing or invalid authorization parameters.",
            InvalidApiParameters => "Missing or invalid API parameters.",
            SessionAlreadyExists => "The session already exists but you requested not to reuse existing one.",
            VFolderAlreadyExists => "The virtual folder already exists with the same name.",
            VFolderCreationFailed => "Virtual folder creation has failed.",
            VFolderOperationFailed => "Virtual folder operation has failed.",
            GraphQlError => "GraphQL-generated error.",
            AuthorizationFailed => "Credential/signature mismatch.",
            PasswordExpired => "Password has expired.",
            GenericForbidden => "Forbidden operation.",
            InsufficientPrivilege => "Insufficient privilege.",
            UrlNotFound => "Unknown URL path.",
            ObjectNotFound => "No such object.",
            TooManySessionsMatched => "Too many sessions matched.",
            MethodNotAllowed => "HTTP Method Not Allowed.",
            Conflict => "Conflicting operation.",
            QuotaExceeded => "You have reached your resource limit.",
            PayloadTooLarge => "The request body is too large.",
            RateLimitExceeded => "You have reached your API query rate limit.",
            InternalServerError => "Internal server error.",
            ServerMisconfigured => "Service misconfigured.",
            NotImplemented => "This API query is not implemented.",
            BadGateway => "The upstream service answered with an error.",
            ServiceUnavailable => "Service unavailable.",
            ServerFrozen => "The server is frozen due to maintenance. Please try again later.",
            InstanceNotAvailable => "There is no available instance.",
        }
    }
}

/// An error answered by the API: a kind, a title, an optional message and optional data,
/// plus any extra response headers (e.g. the rate-limit headers of a 429).
///
/// ```
/// use bai_manager::api::error::{ApiError, ErrorKind};
///
/// let err = ApiError::invalid("config.resources.mem", "expected a size such as \"4g\"");
/// assert_eq!(err.kind(), ErrorKind::InvalidApiParameters);
/// assert_eq!(err.body()["data"]["config.resources.mem"], "expected a size such as \"4g\"");
/// ```
///
/// The error is one pointer wide, so `Result<T, ApiError>` stays small.
#[derive(Debug, Clone)]
pub struct ApiError(Box<Inner>);

#[derive(Debug, Clone)]
struct Inner {
    kind: ErrorKind,
    title: Cow<'static, str>,
    msg: Option<String>,
    data: Option<Value>,
    headers: HeaderMap,
}

impl ApiError {
    /// An error of `kind` with its default title and no message.
    pub fn new(kind: ErrorKind) -> Self {
        ApiError(Box::new(Inner {
            kind,
            title: Cow::Borrowed(kind.default_title()),
            msg: None,
            data: None,
            headers: HeaderMap::new(),
        }))
    }

    /// An error of `kind` with a message (`msg`, printed by the CLI as `➜ Message:`).
    pub fn with_kind_msg(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Self::new(kind).with_msg(msg)
    }

    /// Sets the message.
    pub fn with_msg(mut self, msg: impl Into<String>) -> Self {
        self.0.msg = Some(msg.into());
        self
    }

    /// Sets the `data` member.
    pub fn with_data(mut self, data: Value) -> Self {
        self.0.data = Some(data);
        self
    }

    /// Replaces the title.
    pub fn with_title(mut self, title: impl Into<Cow<'static, str>>) -> Self {
        self.0.title = title.into();
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.insert(name, value);
        self
    }

    /// 400 `invalid-api-params` naming the offending field: `msg` is `<field>: <reason>` and
    /// `data` is `{<field>: <reason>}`, the shape the CLI prints.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let (field, reason) = (field.into(), reason.into());
        let mut data = Map::new();
        data.insert(field.clone(), Value::String(reason.clone()));
        Self::new(ErrorKind::InvalidApiParameters).with_msg(format!("{field}: {reason}")).with_data(Value::Object(data))
    }

    /// 400 `generic-bad-request`.
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::with_kind_msg(ErrorKind::GenericBadRequest, msg)
    }

    /// 400 `invalid-auth-params`, e.g. "Date/time sync error".
    pub fn invalid_auth(msg: impl Into<String>) -> Self {
        Self::with_kind_msg(ErrorKind::InvalidAuthParameters, msg)
    }

    /// 401 `auth-failed`, e.g. "Access key not found", "Signature mismatch".
    pub fn auth_failed(msg: impl Into<String>) -> Self {
        Self::with_kind_msg(ErrorKind::AuthorizationFailed, msg)
    }

    /// 401 `auth-failed` "Unauthorized access": anonymous access to a signed route, or a role
    /// below the route's (the original answers 401 there too, not 403).
    pub fn unauthorized() -> Self {
        Self::auth_failed("Unauthorized access")
    }

    /// 403 `generic-forbidden`.
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::with_kind_msg(ErrorKind::GenericForbidden, msg)
    }

    /// 404 `object-not-found` titled `No such <object>.`, e.g. `not_found("session")`.
    pub fn not_found(object: &str) -> Self {
        Self::new(ErrorKind::ObjectNotFound).with_title(format!("No such {object}."))
    }

    /// 404 `object-not-found` "No such session.".
    pub fn session_not_found() -> Self {
        Self::not_found("session")
    }

    /// 404 `url-not-found`.
    pub fn url_not_found() -> Self {
        Self::new(ErrorKind::UrlNotFound)
    }

    /// 404 `too-many-sessions-matched`; `matches` are objects with at least `id`, `name` and
    /// `status` (the CLI indexes them).
    pub fn too_many_sessions_matched(matches: Vec<Value>) -> Self {
        Self::new(ErrorKind::TooManySessionsMatched).with_data(json!({ "matches": matches }))
    }

    /// 400 `session-already-exists` with `data.existingSessionId`.
    pub fn session_already_exists(existing_session_id: impl fmt::Display) -> Self {
        Self::new(ErrorKind::SessionAlreadyExists)
            .with_data(json!({ "existingSessionId": existing_session_id.to_string() }))
    }

    /// 409 `generic-conflict` (bai only).
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::with_kind_msg(ErrorKind::Conflict, msg)
    }

    /// 412 `quota-exceeded`.
    pub fn quota_exceeded(msg: impl Into<String>) -> Self {
        Self::with_kind_msg(ErrorKind::QuotaExceeded, msg)
    }

    /// 429 `rate-limit-exceeded`.
    pub fn rate_limited() -> Self {
        Self::new(ErrorKind::RateLimitExceeded)
    }

    /// 500 `internal-server-error`; the message is logged and sent.
    pub fn internal(msg: impl Into<String>) -> Self {
        let msg = msg.into();
        tracing::error!(error = %msg, "internal server error");
        Self::with_kind_msg(ErrorKind::InternalServerError, msg)
    }

    /// 500 `server-misconfigured`.
    pub fn misconfigured(msg: impl Into<String>) -> Self {
        Self::with_kind_msg(ErrorKind::ServerMisconfigured, msg)
    }

    /// 502 `bad-gateway` (bai only): an upstream service answered with an error.
    pub fn bad_gateway(msg: impl Into<String>) -> Self {
        Self::with_kind_msg(ErrorKind::BadGateway, msg)
    }

    /// 503 `service-unavailable`.
    pub fn service_unavailable(msg: impl Into<String>) -> Self {
        Self::with_kind_msg(ErrorKind::ServiceUnavailable, msg)
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.kind.status()
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.0.title
    }

    /// The message, if any.
    pub fn msg(&self) -> Option<&str> {
        self.0.msg.as_deref()
    }

    /// The `data` member, if any.
    pub fn data(&self) -> Option<&Value> {
        self.0.data.as_ref()
    }

    /// The response body: `type` and `title` always, `msg` and `data` when set, in that order.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("type".into(), Value::String(self.0.kind.type_url()));
        body.insert("title".into(), Value::String(self.0.title.to_string()));
        if let Some(msg) = &self.0.msg {
            body.insert("msg".into(), Value::String(msg.clone()));
        }
        if let Some(data) = &self.0.data {
            body.insert("data".into(), data.clone());
        }
        Value::Object(body)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status().as_u16(), self.0.kind.type_suffix(), self.0.title)?;
        if let Some(msg) = &self.0.msg {
            write!(f, " ({msg})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.extend(self.0.headers);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        response.extensions_mut().insert(ProblemMarker);
        response
    }
}

impl From<bai_core::Error> for ApiError {
    /// Auth parameter errors become `invalid-auth-params`, a bad spec field names the field,
    /// and every other core error (all of them are about user input) is `invalid-api-params`.
    fn from(err: bai_core::Error) -> Self {
        match err {
            bai_core::Error::InvalidAuthParams { reason } => ApiError::invalid_auth(reason),
            bai_core::Error::InvalidSpec { field, reason } => ApiError::invalid(field, reason),
            other => ApiError::with_kind_msg(ErrorKind::InvalidApiParameters, other.to_string()),
        }
    }
}

/// Marks a response produced by [`ApiError`], so [`normalize_errors`] leaves it alone.
#[derive(Debug, Clone, Copy)]
struct ProblemMarker;

/// The most of a foreign error body that [`normalize_errors`] reads to build a message.
const MAX_FOREIGN_ERROR_BODY: usize = 16 * 1024;

/// Middleware: every error response leaves as a problem document, and a panicking handler
/// becomes a 500 `internal-server-error` instead of a dropped connection.
///
/// Error responses that did not come from [`ApiError`] and are not JSON (axum's plain-text
/// extractor rejections, the empty 405 of a method router, 413 from a body limit) are
/// rewritten: 400, 415 and 422 become 400 `invalid-api-params` with axum's text as `msg`
/// (the client must never see 422), 404 `url-not-found`, 405 `method-not-allowed`, 413
/// `request-too-large`, other statuses the nearest kind. Headers such as `Allow` are kept.
pub async fn normalize_errors(req: Request, next: Next) -> Response {
    let response = match std::panic::AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "handler panicked".to_string());
            return ApiError::internal(format!("the request handler panicked: {what}")).into_response();
        }
    };
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || response.extensions().get::<ProblemMarker>().is_some()
    {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
        })
        .unwrap_or(false);
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_FOREIGN_ERROR_BODY).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let kind = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::UNPROCESSABLE_ENTITY => {
            ErrorKind::InvalidApiParameters
        }
        StatusCode::UNAUTHORIZED => ErrorKind::AuthorizationFailed,
        StatusCode::FORBIDDEN => ErrorKind::GenericForbidden,
        StatusCode::NOT_FOUND => ErrorKind::UrlNotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorKind::MethodNotAllowed,
        StatusCode::CONFLICT => ErrorKind::Conflict,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::PayloadTooLarge,
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::RateLimitExceeded,
        StatusCode::NOT_IMPLEMENTED => ErrorKind::NotImplemented,
        StatusCode::SERVICE_UNAVAILABLE => ErrorKind::ServiceUnavailable,
        s if s.is_client_error() => ErrorKind::GenericBadRequest,
        _ => ErrorKind::InternalServerError,
    };
    let mut err = ApiError::new(kind);
    if !text.is_empty() {
        err = err.with_msg(text);
    }
    let mut rewritten = err.into_response();
    // Keep the original status for kinds that were only the nearest match (e.g. 408, 502),
    // except 415/422, which the client must see as 400.
    if !matches!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::UNPROCESSABLE_ENTITY) {
        *rewritten.status_mut() = status;
    }
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_type_title_msg_data_in_order() {
        let err = ApiError::invalid("name", "must be 4 to 64 characters");
        let text = serde_json::to_string(&err.body()).unwrap();
        assert_eq!(
            text,
            r#"{"type":"https://api.backend.ai/probs/invalid-api-params","title":"Missing or invalid API parameters.","msg":"name: must be 4 to 64 characters","data":{"name":"must be 4 to 64 characters"}}"#
        );
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn object_not_found_title_names_the_object() {
        let err = ApiError::session_not_found();
        assert_eq!(err.title(), "No such session.");
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        assert_eq!(err.body().get("msg"), None);
    }

    #[test]
    fn special_data_shapes() {
        let err = ApiError::session_already_exists("6f1a3d8e-2b1c-4a9e-9f7a-0123456789ab");
        assert_eq!(err.body()["data"]["existingSessionId"], "6f1a3d8e-2b1c-4a9e-9f7a-0123456789ab");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let err = ApiError::too_many_sessions_matched(vec![json!({"id": "x", "name": "n", "status": "RUNNING"})]);
        assert_eq!(err.body()["data"]["matches"][0]["status"], "RUNNING");
    }

    #[test]
    fn core_errors_convert() {
        let err: ApiError = bai_core::Error::InvalidAuthParams { reason: "bad".into() }.into();
        assert_eq!(err.kind(), ErrorKind::InvalidAuthParameters);
        let err: ApiError = bai_core::Error::InvalidSpec { field: "mounts[0]".into(), reason: "bad".into() }.into();
        assert_eq!(err.body()["data"]["mounts[0]"], "bad");
    }
}
