//! Request authentication: keypairs, the signature-checking middleware and the extractors that
//! hand its result to handlers.
//!
//! A signed request carries `Date`, `X-BackendAI-Version` and
//! `Authorization: BackendAI signMethod=HMAC-SHA256, credential=<AK>:<hex signature>`
//! (spec §4.1). [`authenticate`] checks it exactly as the original does (§4.3), in the
//! original's order:
//!
//! 1. the date (`Date`, else `X-BackendAI-Date`, else `X-Sorna-Date`) must be present,
//!    parsable and within ±15 minutes of [`ApiState::clock`], else
//!    400 `invalid-auth-params` "Date/time sync error";
//! 2. no `Authorization` header: 401 `auth-failed` "Unauthorized access"; a malformed one:
//!    400 `invalid-auth-params`;
//! 3. the access key must name an active keypair, else 401 `auth-failed` "Access key not found";
//! 4. the signature must match (constant time), else 401 `auth-failed` "Signature mismatch";
//! 5. the keypair's rate limit is counted (429 `rate-limit-exceeded` when exceeded).
//!
//! The request body is not part of the signature (the body hash is always that of the empty
//! string), so the middleware never reads it: handlers get the body untouched. On success the
//! request carries an [`AuthContext`], which handlers take as an extractor.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{FromRequestParts, OptionalFromRequestParts, OriginalUri, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bai_core::signing::{self, RequestToSign};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::version::{version_header, ApiVersion};
use super::ApiState;

/// A user's role, as the original names it on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `user`: a regular user.
    User,
    /// `admin`: a domain admin.
    Admin,
    /// `superadmin`: administers the whole cluster.
    Superadmin,
}

impl Role {
    /// The wire name: `user`, `admin` or `superadmin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Superadmin => "superadmin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ApiError;

    fn from_str(s: &str) -> Result<Self, ApiError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            "superadmin" => Ok(Role::Superadmin),
            _ => Err(ApiError::invalid("role", format!("{s:?} is not one of user, admin, superadmin"))),
        }
    }
}

/// A keypair and what the API needs to know about its user.
///
/// `Debug` does not print the secret key.
#[derive(Clone)]
pub struct Credential {
    /// The public access key, e.g. `AKIAIOSFODNN7EXAMPLE`.
    pub access_key: String,
    /// The secret key the client signs with.
    pub secret_key: String,
    /// The owning user's id.
    pub user_id: uuid::Uuid,
    /// The owning user's email.
    pub email: String,
    /// The owning user's role.
    pub role: Role,
    /// The user's domain.
    pub domain_name: String,
    /// Whether the keypair may be used; an inactive one is refused like an unknown one.
    pub is_active: bool,
    /// The name of the keypair's resource policy.
    pub resource_policy: String,
    /// Requests allowed per rate-limit window; 0 or less means unlimited.
    pub rate_limit: i64,
}

impl Credential {
    /// An active keypair of a new user with the given role, in domain `default`, policy
    /// `default`, without a rate limit and with the email `<access key>@bai.local` (embedded
    /// mode and tests; adjust the public fields as needed).
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>, role: Role) -> Self {
        let access_key = access_key.into();
        Credential {
            email: format!("{}@bai.local", access_key.to_ascii_lowercase()),
            access_key,
            secret_key: secret_key.into(),
            user_id: uuid::Uuid::new_v4(),
            role,
            domain_name: "default".into(),
            is_active: true,
            resource_policy: "default".into(),
            rate_limit: 0,
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("domain_name", &self.domain_name)
            .field("is_active", &self.is_active)
            .field("resource_policy", &self.resource_policy)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// Where the API looks keypairs up; the manager's database implements it.
#[async_trait]
pub trait KeypairStore: Send + Sync + 'static {
    /// The keypair with this access key, active or not; `None` when there is none.
    async fn lookup(&self, access_key: &str) -> Result<Option<Credential>, ApiError>;

    /// Forgets anything remembered about `access_key`, after the keypair or its user changed
    /// (a cache drops its entry; a store without one does nothing).
    fn invalidate(&self, _access_key: &str) {}
}

#[async_trait]
impl<T: KeypairStore + ?Sized> KeypairStore for Arc<T> {
    async fn lookup(&self, access_key: &str) -> Result<Option<Credential>, ApiError> {
        (**self).lookup(access_key).await
    }

    fn invalidate(&self, access_key: &str) {
        (**self).invalidate(access_key)
    }
}

/// Keypairs held in memory (tests, the embedded mode).
#[derive(Debug, Default)]
pub struct StaticKeypairs {
    keypairs: RwLock<HashMap<String, Credential>>,
}

impl StaticKeypairs {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a keypair (builder style).
    pub fn with(self, credential: Credential) -> Self {
        self.insert(credential);
        self
    }

    /// Adds or replaces a keypair.
    pub fn insert(&self, credential: Credential) {
        let mut map = self.keypairs.write().unwrap_or_else(|e| e.into_inner());
        map.insert(credential.access_key.clone(), credential);
    }

    /// Removes a keypair, returning it.
    pub fn remove(&self, access_key: &str) -> Option<Credential> {
        self.keypairs.write().unwrap_or_else(|e| e.into_inner()).remove(access_key)
    }
}

impl FromIterator<Credential> for StaticKeypairs {
    fn from_iter<I: IntoIterator<Item = Credential>>(iter: I) -> Self {
        let store = StaticKeypairs::new();
        for credential in iter {
            store.insert(credential);
        }
        store
    }
}

#[async_trait]
impl KeypairStore for StaticKeypairs {
    async fn lookup(&self, access_key: &str) -> Result<Option<Credential>, ApiError> {
        Ok(self.keypairs.read().unwrap_or_else(|e| e.into_inner()).get(access_key).cloned())
    }
}

/// How long [`CachedKeypairs`] keeps a found keypair by default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// How long [`CachedKeypairs`] remembers that a key does not exist by default.
pub const DEFAULT_NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(5);
/// The most entries [`CachedKeypairs`] holds before it drops expired ones (and, if that is not
/// enough, everything).
const MAX_CACHE_ENTRIES: usize = 100_000;

/// A [`KeypairStore`] in front of another that remembers answers for a while, so the
/// database is not asked on every request.
///
/// Found keypairs are kept for `ttl` (60 s by default), unknown keys for a shorter
/// `negative_ttl` (5 s) so a new keypair becomes usable quickly; errors are not cached.
/// Call [`invalidate`](Self::invalidate) after changing or deleting a keypair to make the
/// change effective at once.
pub struct CachedKeypairs<S> {
    inner: S,
    ttl: Duration,
    negative_ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Option<Credential>)>>,
}

impl<S> fmt::Debug for CachedKeypairs<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedKeypairs")
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative_ttl)
            .finish_non_exhaustive()
    }
}

impl<S: KeypairStore> CachedKeypairs<S> {
    /// A cache with the default lifetimes.
    pub fn new(inner: S) -> Self {
        Self::with_ttl(inner, DEFAULT_CACHE_TTL)
    }

    /// A cache keeping found keypairs for `ttl`.
    pub fn with_ttl(inner: S, ttl: Duration) -> Self {
        CachedKeypairs { inner, ttl, negative_ttl: DEFAULT_NEGATIVE_CACHE_TTL.min(ttl), entries: Mutex::default() }
    }

    /// Sets how long an unknown key is remembered (zero: never).
    pub fn negative_ttl(mut self, negative_ttl: Duration) -> Self {
        self.negative_ttl = negative_ttl;
        self
    }

    /// Forgets one access key.
    pub fn invalidate(&self, access_key: &str) {
        self.lock().remove(access_key);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<Credential>)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl<S: KeypairStore> KeypairStore for CachedKeypairs<S> {
    async fn lookup(&self, access_key: &str) -> Result<Option<Credential>, ApiError> {
        let now = Instant::now();
        if let Some((expires, found)) = self.lock().get(access_key) {
            if *expires > now {
                return Ok(found.clone());
            }
        }
        let found = self.inner.lookup(access_key).await?;
        let ttl = if found.is_some() { self.ttl } else { self.negative_ttl };
        if !ttl.is_zero() {
            let mut entries = self.lock();
            if entries.len() >= MAX_CACHE_ENTRIES {
                entries.retain(|_, (expires, _)| *expires > now);
                if entries.len() >= MAX_CACHE_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(access_key.to_string(), (now + ttl, found.clone()));
        }
        Ok(found)
    }

    fn invalidate(&self, access_key: &str) {
        self.lock().remove(access_key);
        self.inner.invalidate(access_key);
    }
}

/// Who made a signed request, put into the request's extensions by [`authenticate`].
///
/// As an extractor it answers 401 `auth-failed` "Unauthorized access" when the request was not
/// authenticated (for instance on a route that is not behind [`authenticate`]), so a handler
/// that takes it can never run anonymously. `Option<AuthContext>` never fails.
#[derive(Clone, Debug)]
pub struct AuthContext {
    /// The verified keypair and its user.
    pub credential: Credential,
    /// The API version the request named.
    pub api_version: ApiVersion,
}

impl AuthContext {
    /// The request's access key.
    pub fn access_key(&self) -> &str {
        &self.credential.access_key
    }

    /// The user's role.
    pub fn role(&self) -> Role {
        self.credential.role
    }

    /// Whether the user is an admin or a superadmin.
    pub fn is_admin(&self) -> bool {
        self.credential.role >= Role::Admin
    }

    /// Whether the user is a superadmin.
    pub fn is_superadmin(&self) -> bool {
        self.credential.role == Role::Superadmin
    }

    /// Ok when the user's role is at least `role`; else 401 `auth-failed` "Unauthorized access"
    /// (the original answers privilege failures on REST routes with 401, not 403).
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.credential.role >= role {
            Ok(())
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<AuthContext>().cloned().ok_or_else(ApiError::unauthorized)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AuthContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<AuthContext>().cloned())
    }
}

/// Extractor for admin-only routes: an [`AuthContext`] whose role is admin or superadmin,
/// else 401 `auth-failed` "Unauthorized access".
#[derive(Clone, Debug)]
pub struct AdminContext(pub AuthContext);

impl<S: Send + Sync> FromRequestParts<S> for AdminContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ctx = <AuthContext as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        ctx.require(Role::Admin)?;
        Ok(AdminContext(ctx))
    }
}

/// Extractor for superadmin-only routes, else 401 `auth-failed` "Unauthorized access".
#[derive(Clone, Debug)]
pub struct SuperadminContext(pub AuthContext);

impl<S: Send + Sync> FromRequestParts<S> for SuperadminContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ctx = <AuthContext as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        ctx.require(Role::Superadmin)?;
        Ok(SuperadminContext(ctx))
    }
}

/// The message of every date failure, as the original words it.
const DATE_SYNC_ERROR: &str = "Date/time sync error";

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|s| Some(s.trim()).filter(|s| !s.is_empty()))
            .map_err(|_| ApiError::invalid_auth(format!("the {name} header is not visible ASCII"))),
    }
}

fn core_reason(err: bai_core::Error) -> String {
    match err {
        bai_core::Error::InvalidAuthParams { reason } => reason,
        other => other.to_string(),
    }
}

/// Verifies a request's signature and finds its keypair (steps 1–4 of the module docs).
///
/// `path_and_query` is the raw request target the client signed; [`authenticate`] takes it
/// from [`OriginalUri`] so routers nested under a prefix verify the full path.
pub async fn verify_request(
    state: &ApiState,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    api_version: Option<ApiVersion>,
) -> Result<AuthContext, ApiError> {
    // 1. the date
    let raw_date = match header_str(headers, "date")? {
        Some(d) => Some(d),
        None => match header_str(headers, "x-backendai-date")? {
            Some(d) => Some(d),
            None => header_str(headers, "x-sorna-date")?,
        },
    };
    let raw_date =
        raw_date.ok_or_else(|| ApiError::invalid_auth(format!("{DATE_SYNC_ERROR}: the request has no Date header")))?;
    let date = signing::parse_request_date(raw_date)
        .map_err(|e| ApiError::invalid_auth(format!("{DATE_SYNC_ERROR}: {}", core_reason(e))))?;
    signing::check_clock_skew(&date, state.clock().now()).map_err(|e| ApiError::invalid_auth(core_reason(e)))?;

    // 2. the Authorization header
    let Some(authorization) = header_str(headers, "authorization")? else {
        return Err(ApiError::unauthorized());
    };
    let auth = signing::parse_authorization(authorization).map_err(|e| ApiError::invalid_auth(core_reason(e)))?;
    let version_value = match version_header(headers) {
        Some(v) => v.to_str().map_err(|_| ApiError::invalid_auth("the API version header is not visible ASCII"))?,
        None => return Err(ApiError::invalid_auth("API version missing in request headers")),
    };
    let api_version = match api_version {
        Some(v) => v,
        None => match version_value.trim().parse::<ApiVersion>() {
            Ok(v) if v.is_supported() => v,
            _ => return Err(ApiError::bad_request("Unsupported API version.")),
        },
    };

    // 3. the keypair
    let access_key = auth.access_key.as_str();
    let credential = match state.keypairs().lookup(access_key).await? {
        Some(c) if c.is_active => c,
        Some(_) => {
            tracing::info!(access_key, "refused a request signed with an inactive keypair");
            return Err(ApiError::auth_failed("Access key not found"));
        }
        None => {
            tracing::info!(access_key, "refused a request signed with an unknown access key");
            return Err(ApiError::auth_failed("Access key not found"));
        }
    };

    // 4. the signature
    let host: &str = header_str(headers, "host")?.unwrap_or_default();
    let content_type = header_str(headers, header::CONTENT_TYPE.as_str())?.unwrap_or(signing::DEFAULT_CONTENT_TYPE);
    let to_sign =
        RequestToSign { method, path_and_query, date: raw_date, host, content_type, api_version: version_value };
    let valid = signing::verify(&credential.secret_key, &to_sign, &auth.signature)
        .map_err(|e| ApiError::invalid_auth(core_reason(e)))?;
    if !valid {
        tracing::info!(access_key, method, path = path_and_query, "refused a request with a signature mismatch");
        return Err(ApiError::auth_failed("Signature mismatch"));
    }
    Ok(AuthContext { credential, api_version })
}

/// Middleware for every route that needs a signed request: verifies it (see the module docs),
/// counts it against the keypair's rate limit, puts the [`AuthContext`] into the request's
/// extensions and adds the `X-RateLimit-*` headers to the response.
///
/// Layer it with `axum::middleware::from_fn_with_state(state, authenticate)`;
/// [`ApiRouter::signed`](super::ApiRouter::signed) does that for you.
pub async fn authenticate(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let path_and_query = match req.extensions().get::<OriginalUri>() {
        Some(OriginalUri(uri)) => uri.path_and_query().map(|p| p.as_str().to_string()),
        None => req.uri().path_and_query().map(|p| p.as_str().to_string()),
    }
    .unwrap_or_else(|| "/".to_string());
    let host_fallback = req.uri().authority().map(|a| a.as_str().to_string());
    let mut headers_owned;
    let headers = if req.headers().contains_key(header::HOST) {
        req.headers()
    } else {
        // HTTP/2 carries the authority in the URI instead of a Host header.
        headers_owned = req.headers().clone();
        if let Some(value) = host_fallback.and_then(|h| h.parse().ok()) {
            headers_owned.insert(header::HOST, value);
        }
        &headers_owned
    };
    let api_version = req.extensions().get::<ApiVersion>().copied();
    // The web console's cookie stands in for a signature (see `super::console`).
    let ctx = match super::console::authenticate(&state, headers, api_version).await {
        Ok(Some(ctx)) => ctx,
        Ok(None) => match verify_request(&state, req.method().as_str(), &path_and_query, headers, api_version).await {
            Ok(ctx) => ctx,
            Err(err) => return err.into_response(),
        },
        Err(err) => return err.into_response(),
    };

    // The request's span (see `super::telemetry`) and every log line in it name the caller.
    let span = tracing::Span::current();
    span.record("access_key", ctx.access_key());
    span.record("user_id", tracing::field::display(ctx.credential.user_id));

    // 5. the rate limit
    let limit_status = if ctx.credential.rate_limit > 0 {
        match state.rate_limiter().check(ctx.access_key(), ctx.credential.rate_limit).await {
            Ok(status) => Some(status),
            Err(err) => return err.into_response(),
        }
    } else {
        None
    };
    if let Some(status) = limit_status {
        if !status.allowed {
            tracing::info!(access_key = ctx.access_key(), limit = status.limit, "rate limit exceeded");
            let mut response = ApiError::rate_limited().into_response();
            response.headers_mut().extend(status.headers());
            return response;
        }
    }

    req.extensions_mut().insert(ctx);
    let mut response = next.run(req).await;
    if let Some(status) = limit_status {
        response.headers_mut().extend(status.headers());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(ak: &str) -> Credential {
        Credential::new(ak, "s3cr3t-value", Role::User)
    }

    #[test]
    fn roles_round_trip_and_order() {
        for role in [Role::User, Role::Admin, Role::Superadmin] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        assert!(Role::User < Role::Admin && Role::Admin < Role::Superadmin);
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        let text = format!("{:?}", cred("AK1"));
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    struct Counting {
        inner: StaticKeypairs,
        calls: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl KeypairStore for Counting {
        async fn lookup(&self, access_key: &str) -> Result<Option<Credential>, ApiError> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.lookup(access_key).await
        }
    }

    #[tokio::test]
    async fn cache_keeps_answers_for_their_ttl() {
        let store = Arc::new(Counting { inner: StaticKeypairs::new().with(cred("AK1")), calls: Default::default() });
        let cache =
            CachedKeypairs::with_ttl(store.clone(), Duration::from_millis(200)).negative_ttl(Duration::from_millis(50));
        let calls = || store.calls.load(std::sync::atomic::Ordering::SeqCst);
        assert!(cache.lookup("AK1").await.unwrap().is_some());
        assert!(cache.lookup("AK1").await.unwrap().is_some());
        assert_eq!(calls(), 1);
        assert!(cache.lookup("NOPE").await.unwrap().is_none());
        assert!(cache.lookup("NOPE").await.unwrap().is_none());
        assert_eq!(calls(), 2);
        // a key created after a miss becomes visible once the negative entry expires
        store.inner.insert(cred("NOPE"));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(cache.lookup("NOPE").await.unwrap().is_some());
        assert_eq!(calls(), 3);
        // invalidation takes effect at once
        store.inner.remove("AK1");
        assert!(cache.lookup("AK1").await.unwrap().is_some());
        cache.invalidate("AK1");
        assert!(cache.lookup("AK1").await.unwrap().is_none());
        assert_eq!(calls(), 4);
    }
}
