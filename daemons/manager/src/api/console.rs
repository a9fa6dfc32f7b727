//! The web console: a small single-page application served at `/console/`, its assets
//! compiled into the binary (`daemons/manager/console/`; no build step, no CDN).
//!
//! Admins also get a GraphQL explorer page (`/graphql-ui` redirects to `/console/#/graphql`):
//! a query editor with variables, the response as JSON, and the schema's query and mutation
//! roots from introspection, all sent as the signed-in user through `/admin/gql`.
//!
//! # Signing in
//!
//! `POST /console/login` `{"access_key", "secret_key"}` checks the pair against the keypair
//! store and answers `{"access_key", "role", "email"}` with a session cookie ([`COOKIE`]):
//! a token sealed with the manager's token secret ([`Storage::seal`]) that names the access
//! key and expires after [`SESSION_LIFETIME`]. The cookie is `HttpOnly` (the page never
//! sees it), `SameSite=Strict` and `Secure` when the manager serves TLS. The secret key is
//! never stored by the page: it is sent once, over the sign-in request. `POST /console/logout`
//! clears the cookie.
//!
//! # Calling the API
//!
//! The page calls the ordinary API routes (REST, GraphQL, the event stream, the storage side
//! channel) without signing them. [`authenticate`](super::auth::authenticate) takes a console
//! cookie in place of a signature only when the request also carries the [`HEADER`]
//! (`X-BackendAI-Console: 1`) and no `Authorization`, and — when it names one — an `Origin`
//! equal to the request's own host. A cross-site page can neither set that header without a
//! CORS preflight the manager never grants, nor send the `SameSite=Strict` cookie. The
//! credential behind the cookie is looked up on every request, so a deactivated keypair stops
//! working at once; its role decides what the page may do exactly as for a signed request.
//!
//! App links (`/app-proxy/…`, [`super::apps`]) share this origin. Their responses carry
//! `Content-Security-Policy: sandbox …` without `allow-same-origin`, so an app's page runs in
//! an opaque origin: it cannot read the console's storage or frames, and its requests are
//! cross-site (the cookie is not sent, `Origin: null` is refused). The proxy also strips the
//! console cookie from what it forwards, so an app never sees a visitor's console session.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::{ApiError, ApiJson, ApiState, ApiVersion, AuthContext, Credential};
use crate::storage::Storage;

/// The session cookie's name.
pub const COOKIE: &str = "bai_console";

/// The header that marks a request as the console's (value `1`); required with the cookie.
pub const HEADER: &str = "x-backendai-console";

/// How long a console sign-in lasts.
pub const SESSION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

const INDEX_HTML: &str = include_str!("../../console/index.html");
const APP_JS: &str = include_str!("../../console/app.js");
const STYLE_CSS: &str = include_str!("../../console/style.css");

/// The policy of the console's own documents: only its own scripts, styles and API.
const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The claims of a console session cookie.
#[derive(Debug, Serialize, Deserialize)]
struct ConsoleClaims {
    /// The signed-in access key (a field name no other sealed token has).
    console_access_key: String,
    /// Expiry, seconds since the epoch.
    exp: i64,
}

/// The public routes of the console: the page, its assets, sign-in and sign-out.
pub fn public_routes() -> Router<ApiState> {
    Router::new()
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        // The GraphQL explorer is a page of the console (admins only: the page list hides it
        // from users, and the schema's roles apply to every query it sends).
        .route("/graphql-ui", get(|| async { Redirect::temporary("/console/#/graphql") }))
        .route("/console/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/console/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/console/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
        .route("/console/login", post(login))
        .route("/console/logout", post(logout))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONSOLE_CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    access_key: String,
    secret_key: String,
}

/// `POST /console/login`: checks the keypair and sets the session cookie.
async fn login(
    State(state): State<ApiState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, ApiError> {
    require_console_header(&headers)?;
    check_origin(&headers)?;
    let refused = || ApiError::auth_failed("the access key and secret key do not match an active keypair");
    let credential = state.keypairs().lookup(body.access_key.trim()).await?.ok_or_else(refused)?;
    let matches: bool = credential.secret_key.as_bytes().ct_eq(body.secret_key.trim().as_bytes()).into();
    if !matches || !credential.is_active {
        tracing::info!(access_key = body.access_key.trim(), "refused a console sign-in");
        return Err(refused());
    }
    let storage = state.require_service::<Storage>()?;
    let exp = chrono::Utc::now().timestamp() + SESSION_LIFETIME.as_secs() as i64;
    let token = storage.seal(&ConsoleClaims { console_access_key: credential.access_key.clone(), exp });
    let cookie = cookie_header(&state, &token, SESSION_LIFETIME.as_secs())?;
    let mut response = Json(json!({
        "access_key": credential.access_key,
        "role": credential.role,
        "email": credential.email,
        "expires_in": SESSION_LIFETIME.as_secs(),
    }))
    .into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `POST /console/logout`: clears the cookie (204).
async fn logout(State(state): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_console_header(&headers)?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie_header(&state, "", 0)?);
    Ok(response)
}

fn cookie_header(state: &ApiState, value: &str, max_age: u64) -> Result<HeaderValue, ApiError> {
    let secure = state.service::<super::Listener>().is_some_and(|l| l.tls);
    let text = format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).map_err(|e| ApiError::internal(format!("console cookie: {e}")))
}

fn require_console_header(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(HEADER) {
        Some(v) if v.as_bytes() == b"1" => Ok(()),
        _ => Err(ApiError::invalid("X-BackendAI-Console", "the console's requests carry this header with the value 1")),
    }
}

/// A request naming an `Origin` must come from the manager's own host (a sandboxed app page
/// says `null`, another site its own name).
fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().unwrap_or_default();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or_default();
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("a console request from origin {origin:?} is not accepted on {host:?}")))
    }
}

/// The value of the console cookie in `headers`, if any.
pub(crate) fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// `cookie` header values without the console cookie (what the app proxy forwards).
pub(crate) fn strip_cookie(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').is_none_or(|(name, _)| name != COOKIE))
        .map(str::to_string)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// The caller of a console request (see the module docs): `None` when the request is not
/// one (no console header, or an `Authorization` header: it is then verified as signed).
pub(crate) async fn authenticate(
    state: &ApiState,
    headers: &HeaderMap,
    api_version: Option<ApiVersion>,
) -> Result<Option<AuthContext>, ApiError> {
    if !headers.contains_key(HEADER) || headers.contains_key(header::AUTHORIZATION) {
        return Ok(None);
    }
    require_console_header(headers)?;
    check_origin(headers)?;
    let signed_out = || ApiError::auth_failed("the console session has ended; sign in again");
    let token = cookie_value(headers).filter(|t| !t.is_empty()).ok_or_else(signed_out)?;
    let storage: Arc<Storage> = state.require_service::<Storage>()?;
    let claims: ConsoleClaims = storage.open(token).map_err(|_| signed_out())?;
    if claims.exp < chrono::Utc::now().timestamp() {
        return Err(signed_out());
    }
    let credential: Credential = match state.keypairs().lookup(&claims.console_access_key).await? {
        Some(c) if c.is_active => c,
        _ => return Err(signed_out()),
    };
    Ok(Some(AuthContext { credential, api_version: api_version.unwrap_or(ApiVersion::LATEST) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_cookie_is_found_among_others_and_stripped_alone() {
        let mut h = headers(&[("cookie", "a=1; bai_console=tok.en"), ("cookie", "b=2")]);
        assert_eq!(cookie_value(&h), Some("tok.en"));
        strip_cookie(&mut h);
        assert_eq!(h.get(header::COOKIE).unwrap(), "a=1; b=2");
        assert_eq!(cookie_value(&h), None);
        let mut only = headers(&[("cookie", "bai_console=x")]);
        strip_cookie(&mut only);
        assert!(only.get(header::COOKIE).is_none());
    }

    #[test]
    fn origins_must_name_the_managers_host() {
        assert!(check_origin(&headers(&[("host", "m:8081")])).is_ok());
        assert!(check_origin(&headers(&[("host", "m:8081"), ("origin", "http://m:8081")])).is_ok());
        assert!(check_origin(&headers(&[("host", "m:8081"), ("origin", "https://M:8081")])).is_ok());
        for bad in ["null", "http://evil.example", "http://m:8082"] {
            let e = check_origin(&headers(&[("host", "m:8081"), ("origin", bad)])).unwrap_err();
            assert_eq!(e.status(), StatusCode::FORBIDDEN, "{bad}");
        }
    }

    #[test]
    fn the_header_must_say_one() {
        assert!(require_console_header(&headers(&[(HEADER, "1")])).is_ok());
        assert_eq!(require_console_header(&headers(&[(HEADER, "yes")])).unwrap_err().status(), StatusCode::BAD_REQUEST);
        assert!(require_console_header(&HeaderMap::new()).is_err());
    }
}
