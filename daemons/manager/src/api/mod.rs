//! The manager's HTTP API: the Backend.AI client protocol (`spec/client-wire.md`).
//!
//! This module is the foundation every endpoint sits on:
//!
//! - [`error`]: [`ApiError`], the original's problem documents (§5), and the
//!   [`normalize_errors`] middleware that keeps every error in that
//!   format;
//! - [`version`]: version negotiation (§3), the public `GET /` probe;
//! - [`auth`]: keypairs ([`KeypairStore`], [`StaticKeypairs`], [`CachedKeypairs`]), the
//!   [`authenticate`] middleware (§4) and the [`AuthContext`] extractor;
//! - [`ratelimit`]: the per-keypair rate limit (§4.5);
//! - [`extract`]: body and query extractors whose errors name the offending field;
//! - [`clock`]: the clock the date-skew check reads, overridable in tests;
//! - [`telemetry`]: the span of each request.
//!
//! # Adding endpoints
//!
//! Build the API with [`ApiRouter`]: routes given to [`ApiRouter::signed`] only run for a
//! correctly signed request (and see its [`AuthContext`]); routes given to
//! [`ApiRouter::public`] run for anyone. Both get version negotiation and problem-document
//! errors, and unknown paths answer 404 `url-not-found`.
//!
//! ```
//! use std::sync::Arc;
//! use axum::{routing::get, Json, Router};
//! use bai_manager::api::{ApiRouter, ApiState, AuthContext, InMemoryRateLimiter, StaticKeypairs};
//!
//! async fn my_sessions(ctx: AuthContext) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "owner": ctx.access_key() }))
//! }
//!
//! let state = ApiState::new(Arc::new(StaticKeypairs::new()), Arc::new(InMemoryRateLimiter::default()));
//! let app: axum::Router = ApiRouter::new()
//!     .signed(Router::new().route("/my/sessions", get(my_sessions)))
//!     .build(state);
//! ```
//!
//! Handlers take `State<ApiState>` for the shared services (see [`ApiState::with_service`]).

pub mod apps;
pub mod auth;
pub mod clock;
pub mod config;
pub mod console;
pub mod error;
pub mod events;
pub mod extract;
pub mod gql;
pub mod keypairs;
pub mod openapi;
pub mod ratelimit;
pub mod resource;
pub mod session;
pub mod stream;
pub mod telemetry;
pub mod version;
pub mod vfolder;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub use auth::{
    authenticate, AdminContext, AuthContext, CachedKeypairs, Credential, KeypairStore, Role, StaticKeypairs,
    SuperadminContext,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{normalize_errors, ApiError, ErrorKind};
pub use extract::{ApiJson, ApiParams, ApiQuery};
pub use ratelimit::{InMemoryRateLimiter, NoRateLimit, RateLimitStatus, RateLimiter};
pub use version::{negotiate_version, ApiVersion};

/// What every handler can reach: keypairs, the rate limiter, the clock, the manager's version
/// and any number of services that later parts of the manager register by type.
///
/// Cloning is cheap (reference counts only).
#[derive(Clone)]
pub struct ApiState {
    keypairs: Arc<dyn KeypairStore>,
    rate_limiter: Arc<dyn RateLimiter>,
    clock: Arc<dyn Clock>,
    manager_version: Arc<str>,
    services: Arc<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl fmt::Debug for ApiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiState")
            .field("manager_version", &self.manager_version)
            .field("services", &self.services.len())
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// A state over these keypairs and rate limiter, on the system clock, reporting this
    /// crate's version as the manager version.
    pub fn new(keypairs: Arc<dyn KeypairStore>, rate_limiter: Arc<dyn RateLimiter>) -> Self {
        ApiState {
            keypairs,
            rate_limiter,
            clock: Arc::new(SystemClock),
            manager_version: Arc::from(crate::VERSION),
            services: Arc::default(),
        }
    }

    /// Replaces the clock (tests: a [`ManualClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the manager version reported by `GET /`.
    pub fn with_manager_version(mut self, version: impl Into<String>) -> Self {
        self.manager_version = Arc::from(version.into());
        self
    }

    /// Registers a service under its type, replacing any earlier one of the same type.
    /// `T` may be a trait object: `with_service::<dyn Registry>(Arc::new(MyRegistry))`.
    pub fn with_service<T: ?Sized + Send + Sync + 'static>(mut self, service: Arc<T>) -> Self {
        Arc::make_mut(&mut self.services).insert(TypeId::of::<Arc<T>>(), Arc::new(service));
        self
    }

    /// The service registered as `T`, if any.
    pub fn service<T: ?Sized + Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.services.get(&TypeId::of::<Arc<T>>()).and_then(|s| s.downcast_ref::<Arc<T>>()).cloned()
    }

    /// The service registered as `T`, or 500 `server-misconfigured` naming the type.
    pub fn require_service<T: ?Sized + Send + Sync + 'static>(&self) -> Result<Arc<T>, ApiError> {
        self.service::<T>().ok_or_else(|| {
            ApiError::misconfigured(format!("the service {} is not configured", std::any::type_name::<T>()))
        })
    }

    /// The keypair store.
    pub fn keypairs(&self) -> &Arc<dyn KeypairStore> {
        &self.keypairs
    }

    /// The rate limiter.
    pub fn rate_limiter(&self) -> &Arc<dyn RateLimiter> {
        &self.rate_limiter
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The manager version reported by `GET /`.
    pub fn manager_version(&self) -> &str {
        &self.manager_version
    }
}

/// How the API is served, registered by the server ([`ApiState::with_service`]): TLS or not.
/// URLs the API hands out (the storage side channel's) and cookies (the console's `Secure`)
/// follow it. Without it the API assumes plain HTTP.
#[derive(Debug, Clone, Copy, Default)]
pub struct Listener {
    /// Whether the listener speaks TLS (`[manager] ssl-enabled`).
    pub tls: bool,
}

/// Extractor for a service registered with [`ApiState::with_service`]; 500
/// `server-misconfigured` when it is missing.
#[derive(Debug)]
pub struct Shared<T: ?Sized>(pub Arc<T>);

impl<T: ?Sized + Send + Sync + 'static> FromRequestParts<ApiState> for Shared<T> {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        state.require_service::<T>().map(Shared)
    }
}

/// Builds the API router from public and signed routes (see the module docs).
#[derive(Debug)]
pub struct ApiRouter {
    public: Router<ApiState>,
    signed: Router<ApiState>,
}

impl Default for ApiRouter {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiRouter {
    /// The built-in routes: `GET /` (public version probe), `GET /bai/whoami` and
    /// `GET|POST /bai/echo` (signed).
    pub fn new() -> Self {
        ApiRouter {
            public: Router::new().route("/", get(version::version_info)),
            signed: Router::new().route("/bai/whoami", get(whoami)).route("/bai/echo", get(echo).post(echo)),
        }
    }

    /// Adds routes that anyone may call (the storage side channel's token-authorized
    /// routes, for instance).
    pub fn public(mut self, routes: Router<ApiState>) -> Self {
        self.public = self.public.merge(routes);
        self
    }

    /// Adds routes that need a signed request.
    pub fn signed(mut self, routes: Router<ApiState>) -> Self {
        self.signed = self.signed.merge(routes);
        self
    }

    /// The finished router: the signed routes behind [`authenticate`], everything behind
    /// [`negotiate_version`] and [`normalize_errors`], unknown paths answering 404
    /// `url-not-found`; outside those, [`crate::metrics::record_api_metrics`] records every
    /// request when the state has a [`crate::metrics::ManagerMetrics`] service, and outermost
    /// [`telemetry::trace_request`] runs each request in its span.
    pub fn build(self, state: ApiState) -> Router {
        let signed = self.signed.route_layer(axum::middleware::from_fn_with_state(state.clone(), authenticate));
        self.public
            .merge(signed)
            .fallback(url_not_found)
            .layer(axum::middleware::from_fn(negotiate_version))
            .layer(axum::middleware::from_fn(normalize_errors))
            .layer(axum::middleware::from_fn_with_state(state.clone(), crate::metrics::record_api_metrics))
            .layer(axum::middleware::from_fn(telemetry::trace_request))
            .with_state(state)
    }
}

/// The API with only the built-in routes (`ApiRouter::new().build(state)`).
pub fn router(state: ApiState) -> Router {
    ApiRouter::new().build(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets in-flight requests
/// finish. Handlers can read the peer address through
/// `axum::extract::ConnectInfo<std::net::SocketAddr>`.
pub async fn serve<F>(listener: tokio::net::TcpListener, router: Router, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// [`serve`] over TLS: every connection of `listener` is a TLS handshake with `tls` (see
/// [`crate::tls::server_config`]) before HTTP. Graceful shutdown, HTTP upgrades (WebSockets)
/// and `ConnectInfo<SocketAddr>` work as with [`serve`]; a connection whose handshake fails is
/// closed without disturbing the others.
pub async fn serve_tls<F>(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    use axum::serve::ListenerExt;
    // `tap_io` only so that axum's `Connected` impl for any listener's address applies (it has
    // one for `TapIo<L, _>`, none for a foreign listener itself).
    let listener = crate::tls::TlsListener::new(listener, tls)?.tap_io(|_| {});
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

async fn url_not_found() -> ApiError {
    ApiError::url_not_found()
}

/// `GET /bai/whoami` (bai only): the caller's keypair and user.
async fn whoami(ctx: AuthContext) -> Json<Value> {
    let c = &ctx.credential;
    Json(json!({
        "access_key": c.access_key,
        "user_id": c.user_id,
        "email": c.email,
        "role": c.role,
        "domain_name": c.domain_name,
        "resource_policy": c.resource_policy,
        "rate_limit": c.rate_limit,
        "api_version": ctx.api_version,
    }))
}

#[derive(Debug, Deserialize)]
struct EchoParams {
    echo: String,
}

/// `GET|POST /bai/echo` (bai only; the original's `/auth/test`): `{"authorized": "yes",
/// "access_key", "echo"}`, with `echo` from the JSON body or the query.
async fn echo(ctx: AuthContext, ApiParams(params): ApiParams<EchoParams>) -> Json<Value> {
    Json(json!({ "authorized": "yes", "access_key": ctx.access_key(), "echo": params.echo }))
}

#[cfg(test)]
mod tests {
    use super::*;

    trait Greeter: Send + Sync {
        fn greet(&self) -> String;
    }
    struct Hello;
    impl Greeter for Hello {
        fn greet(&self) -> String {
            "hello".into()
        }
    }

    #[test]
    fn services_are_found_by_type() {
        let state = ApiState::new(Arc::new(StaticKeypairs::new()), Arc::new(NoRateLimit))
            .with_service::<dyn Greeter>(Arc::new(Hello))
            .with_service(Arc::new(42u32));
        assert_eq!(state.service::<dyn Greeter>().unwrap().greet(), "hello");
        assert_eq!(*state.service::<u32>().unwrap(), 42);
        assert!(state.service::<String>().is_none());
        let err = state.require_service::<String>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ServerMisconfigured);
    }
}
