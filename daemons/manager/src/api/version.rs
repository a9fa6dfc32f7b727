//! API version negotiation (spec §3): the `GET /` probe and the `X-BackendAI-Version` check.

use std::fmt;
use std::str::FromStr;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Serialize, Serializer};
use serde_json::json;

use super::error::ApiError;
use super::ApiState;

/// The request header carrying the client's API version.
pub const VERSION_HEADER: &str = "x-backendai-version";
/// The legacy spelling of [`VERSION_HEADER`].
pub const LEGACY_VERSION_HEADER: &str = "x-sorna-version";

/// An API version such as `v7.20230615`: a major number and a revision date (`YYYYMMDD`),
/// ordered as the client compares them (major, then date).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    major: u32,
    date: u32,
}

impl ApiVersion {
    /// The version this manager advertises and the 23.9.10 client sends: `v7.20230615`.
    pub const LATEST: ApiVersion = ApiVersion { major: 7, date: 20230615 };

    /// The version assumed when a request carries no version header: `v5.20191215`.
    pub const DEFAULT: ApiVersion = ApiVersion { major: 5, date: 20191215 };

    /// Every version a request may name (the original's list).
    pub const SUPPORTED: [ApiVersion; 11] = [
        ApiVersion { major: 4, date: 20181215 },
        ApiVersion { major: 4, date: 20190115 },
        ApiVersion { major: 4, date: 20190315 },
        ApiVersion { major: 4, date: 20190615 },
        ApiVersion { major: 5, date: 20191215 },
        ApiVersion { major: 6, date: 20200815 },
        ApiVersion { major: 6, date: 20210815 },
        ApiVersion { major: 6, date: 20220315 },
        ApiVersion { major: 6, date: 20220615 },
        ApiVersion { major: 6, date: 20230315 },
        ApiVersion { major: 7, date: 20230615 },
    ];

    /// A version from its parts.
    pub const fn new(major: u32, date: u32) -> Self {
        ApiVersion { major, date }
    }

    /// The major number, e.g. 7.
    pub fn major(self) -> u32 {
        self.major
    }

    /// The revision date as `YYYYMMDD`, e.g. 20230615.
    pub fn date(self) -> u32 {
        self.date
    }

    /// Whether requests may name this version.
    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{:08}", self.major, self.date)
    }
}

impl FromStr for ApiVersion {
    type Err = ApiError;

    /// Parses `v<major>.<YYYYMMDD>` (the client's `^v\d+\.\d{8}$`).
    fn from_str(s: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::bad_request(format!("invalid API version {s:?}: expected v<major>.<YYYYMMDD>"));
        let (major, date) = s.strip_prefix('v').and_then(|rest| rest.split_once('.')).ok_or_else(bad)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(major) || date.len() != 8 || !digits(date) {
            return Err(bad());
        }
        Ok(ApiVersion { major: major.parse().map_err(|_| bad())?, date: date.parse().map_err(|_| bad())? })
    }
}

impl Serialize for ApiVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ApiVersion {
    type Rejection = std::convert::Infallible;

    /// The version [`negotiate_version`] recorded, or [`ApiVersion::DEFAULT`] outside it.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<ApiVersion>().copied().unwrap_or(ApiVersion::DEFAULT))
    }
}

/// The raw version header of a request (`X-BackendAI-Version`, else `X-Sorna-Version`).
pub(crate) fn version_header(headers: &axum::http::HeaderMap) -> Option<&axum::http::HeaderValue> {
    headers.get(VERSION_HEADER).or_else(|| headers.get(LEGACY_VERSION_HEADER))
}

/// Middleware: records the request's [`ApiVersion`] in its extensions; a request naming a
/// version outside [`ApiVersion::SUPPORTED`] gets 400 `generic-bad-request`
/// "Unsupported API version.". No header means [`ApiVersion::DEFAULT`].
pub async fn negotiate_version(mut req: Request, next: Next) -> Response {
    let version = match version_header(req.headers()) {
        None => ApiVersion::DEFAULT,
        Some(value) => match value.to_str().ok().and_then(|v| v.trim().parse::<ApiVersion>().ok()) {
            Some(v) if v.is_supported() => v,
            _ => return ApiError::bad_request("Unsupported API version.").into_response(),
        },
    };
    req.extensions_mut().insert(version);
    next.run(req).await
}

/// `GET /`: `{"version": "v7.20230615", "manager": "<manager version>"}`, unsigned or signed.
pub async fn version_info(State(state): State<ApiState>) -> Response {
    Json(json!({ "version": ApiVersion::LATEST, "manager": state.manager_version() })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_orders() {
        let v: ApiVersion = "v7.20230615".parse().unwrap();
        assert_eq!(v, ApiVersion::LATEST);
        assert_eq!(v.to_string(), "v7.20230615");
        assert!(ApiVersion::DEFAULT < ApiVersion::LATEST);
        assert!("v6.20230315".parse::<ApiVersion>().unwrap() < ApiVersion::LATEST);
        for bad in ["7.20230615", "v9.2025", "v.20230615", "vx.20230615", "v7.2023061a", ""] {
            assert!(bad.parse::<ApiVersion>().is_err(), "{bad}");
        }
        assert!(!"v8.20240101".parse::<ApiVersion>().unwrap().is_supported());
        assert!(ApiVersion::SUPPORTED.iter().all(|v| v.is_supported()));
        assert_eq!(serde_json::to_string(&ApiVersion::LATEST).unwrap(), "\"v7.20230615\"");
    }
}
