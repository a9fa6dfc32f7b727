//! The Backend.AI request-signing scheme (HMAC-SHA256), as pure functions.
//!
//! The client signs and the manager verifies with the same code. Nothing here reads a clock:
//! the caller passes the request's `Date` header and, to check clock skew, the current time.
//!
//! The string to sign is seven lines joined by `\n`: the method, the raw request target (path
//! and query, undecoded), the `Date` header value, `host:<host>`, `content-type:<media type>`,
//! `x-backendai-version:<version>` and the SHA-256 of the empty string. The key is derived as
//! `HMAC(HMAC(secret, YYYYMMDD), host)` and the signature is the lowercase hex
//! `HMAC(key, string_to_sign)`.
//!
//! ```
//! use bai_core::signing::{sign, RequestToSign};
//!
//! let req = RequestToSign {
//!     method: "GET",
//!     path_and_query: "/folders/_/hosts",
//!     date: "2024-01-02T03:04:05.678901+00:00",
//!     host: "127.0.0.1:8081",
//!     content_type: "text/plain",
//!     api_version: "v7.20230615",
//! };
//! let sig = sign("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &req)?;
//! assert_eq!(sig, "45ee43f01f31d0735bbf5cd87ca4a10c122a42164eb3298a518e79467243a132");
//! # Ok::<(), bai_core::Error>(())
//! ```

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::ids::AccessKey;

type HmacSha256 = Hmac<Sha256>;

/// The API version the client sends and the manager advertises.
pub const API_VERSION: &str = "v7.20230615";

/// Hex SHA-256 of the empty string: the body hash of every request (bodies are not hashed).
pub const EMPTY_BODY_HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The media type signed when a request has no `Content-Type` header (WebSocket, SSE).
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// How far a request's date may be from the server's clock: ±15 minutes.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(15);

/// The parts of a request that are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestToSign<'a> {
    /// The HTTP method; uppercased when signing.
    pub method: &'a str,
    /// The raw request target as on the request line: path, `?` and query, undecoded.
    pub path_and_query: &'a str,
    /// The exact `Date` header value, e.g. `2024-01-02T03:04:05.678901+00:00`.
    pub date: &'a str,
    /// The `Host` header (the endpoint's authority, e.g. `127.0.0.1:8081`).
    pub host: &'a str,
    /// The `Content-Type` header; parameters are stripped and it is lowercased when signing.
    /// Pass [`DEFAULT_CONTENT_TYPE`] when the request has none.
    pub content_type: &'a str,
    /// The `X-BackendAI-Version` header value.
    pub api_version: &'a str,
}

/// The media type as signed: lowercased, without parameters such as `boundary=` or `charset=`.
pub fn signed_content_type(content_type: &str) -> String {
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media.is_empty() {
        DEFAULT_CONTENT_TYPE.to_string()
    } else {
        media.to_ascii_lowercase()
    }
}

/// The seven-line string to sign.
pub fn string_to_sign(req: &RequestToSign<'_>) -> String {
    [
        req.method.to_ascii_uppercase().as_str(),
        req.path_and_query,
        req.date,
        &format!("host:{}", req.host),
        &format!("content-type:{}", signed_content_type(req.content_type)),
        &format!("x-backendai-version:{}", req.api_version),
        EMPTY_BODY_HASH,
    ]
    .join("\n")
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// The signing key for a secret key, a request date (its `YYYYMMDD` in the date's own offset)
/// and a host.
pub fn derive_signing_key(secret_key: &str, date: &DateTime<FixedOffset>, host: &str) -> [u8; 32] {
    let day = date.format("%Y%m%d").to_string();
    let k1 = hmac(secret_key.as_bytes(), day.as_bytes());
    hmac(&k1, host.as_bytes())
}

/// Signs a request: the lowercase hex signature for the `Authorization` header.
///
/// Fails only when `req.date` is not a date [`parse_request_date`] understands.
pub fn sign(secret_key: &str, req: &RequestToSign<'_>) -> Result<String> {
    let date = parse_request_date(req.date)?;
    let key = derive_signing_key(secret_key, &date, req.host);
    Ok(hex::encode(hmac(&key, string_to_sign(req).as_bytes())))
}

/// Whether `signature` (hex) is the right one for this request, compared in constant time.
pub fn verify(secret_key: &str, req: &RequestToSign<'_>, signature: &str) -> Result<bool> {
    let expected = sign(secret_key, req)?;
    let given = signature.to_ascii_lowercase();
    Ok(expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes())))
}

/// The value of the `Authorization` header for a signature.
pub fn authorization_header(access_key: &AccessKey, signature: &str) -> String {
    format!("BackendAI signMethod=HMAC-SHA256, credential={access_key}:{signature}")
}

/// A parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    /// The signing method, uppercased (only `HMAC-SHA256` is accepted).
    pub sign_method: String,
    /// The access key of the credential.
    pub access_key: AccessKey,
    /// The hex signature of the credential.
    pub signature: String,
}

/// Parses `BackendAI signMethod=HMAC-SHA256, credential=AK:SIG` (the scheme may also be the
/// legacy `Sorna`).
pub fn parse_authorization(header: &str) -> Result<AuthHeader> {
    let bad = |reason: &str| Error::InvalidAuthParams { reason: reason.to_string() };
    let (scheme, rest) = header.trim().split_once(' ').ok_or_else(|| bad("malformed Authorization header"))?;
    if scheme != "BackendAI" && scheme != "Sorna" {
        return Err(bad("the Authorization scheme must be BackendAI"));
    }
    let (mut method, mut credential) = (None, None);
    for part in rest.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            return Err(bad("malformed Authorization parameters: expected key=value pairs"));
        };
        match key.trim() {
            "signMethod" => method = Some(value.trim().to_ascii_uppercase()),
            "credential" => credential = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let method = method.ok_or_else(|| bad("the Authorization header has no signMethod"))?;
    if method != "HMAC-SHA256" {
        return Err(bad("unsupported signMethod: expected HMAC-SHA256"));
    }
    let credential = credential.ok_or_else(|| bad("the Authorization header has no credential"))?;
    let (ak, sig) =
        credential.split_once(':').ok_or_else(|| bad("malformed credential: expected ACCESS_KEY:SIGNATURE"))?;
    if sig.is_empty() || !sig.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad("malformed credential: the signature must be hexadecimal"));
    }
    let access_key = AccessKey::new(ak).map_err(|_| bad("malformed credential: invalid access key"))?;
    Ok(AuthHeader { sign_method: method, access_key, signature: sig.to_ascii_lowercase() })
}

/// Parses a request date leniently: ISO-8601 (with or without fractional seconds and offset;
/// UTC when no offset is given) or RFC 1123 (`Tue, 02 Jan 2024 03:04:05 GMT`).
pub fn parse_request_date(text: &str) -> Result<DateTime<FixedOffset>> {
    let text = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Ok(dt);
    }
    if let Ok(dt) = DateTime::parse_from_rfc2822(text) {
        return Ok(dt);
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, fmt) {
            return Ok(naive.and_utc().fixed_offset());
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%z"] {
        if let Ok(dt) = DateTime::parse_from_str(text, fmt) {
            return Ok(dt);
        }
    }
    Err(Error::InvalidAuthParams { reason: format!("unparsable request date {text:?}: expected ISO-8601 or RFC 1123") })
}

/// Checks that a request's date lies within [`MAX_CLOCK_SKEW`] of `now`.
pub fn check_clock_skew(date: &DateTime<FixedOffset>, now: DateTime<Utc>) -> Result<()> {
    let skew = date.with_timezone(&Utc) - now;
    if skew.abs() > MAX_CLOCK_SKEW {
        return Err(Error::InvalidAuthParams {
            reason: format!(
                "Date/time sync error: the request date is {}s away from the server's clock (at most {}s allowed)",
                skew.num_seconds(),
                MAX_CLOCK_SKEW.num_seconds()
            ),
        });
    }
    Ok(())
}

/// The `Date` header value a client sends for `now`: ISO-8601 with microseconds and `+00:00`.
pub fn format_request_date(now: DateTime<Utc>) -> String {
    now.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "2024-01-02T03:04:05.678901+00:00";
    const HOST: &str = "127.0.0.1:8081";

    fn req<'a>(method: &'a str, path: &'a str, ctype: &'a str) -> RequestToSign<'a> {
        RequestToSign {
            method,
            path_and_query: path,
            date: DATE,
            host: HOST,
            content_type: ctype,
            api_version: API_VERSION,
        }
    }

    #[test]
    fn empty_body_hash_is_sha256_of_nothing() {
        use sha2::Digest;
        assert_eq!(hex::encode(Sha256::digest(b"")), EMPTY_BODY_HASH);
    }

    #[test]
    fn derived_keys_match_the_vectors() {
        let date = parse_request_date(DATE).unwrap();
        let k1 = hmac(SECRET.as_bytes(), b"20240102");
        assert_eq!(hex::encode(k1), "7719b4d3d9c3ca6db0e12e4e68239a415abd410ee820dcd44cea574d538d8093");
        assert_eq!(
            hex::encode(derive_signing_key(SECRET, &date, HOST)),
            "6a2e075c55f1f6848977f98b7222440a007a405d9e407e7fa7eaa7fd1fc7191f"
        );
    }

    #[test]
    fn signatures_match_the_vectors() {
        let cases = [
            (
                "GET",
                "/folders/_/hosts",
                "text/plain",
                "45ee43f01f31d0735bbf5cd87ca4a10c122a42164eb3298a518e79467243a132",
            ),
            (
                "POST",
                "/admin/gql",
                "application/json",
                "b2c10152d1c788b0790bde66c57c008cad2625156689e7f80f2290d38931e0ec",
            ),
            (
                "GET",
                "/events/session?sessionName=mysess01&scope=*",
                DEFAULT_CONTENT_TYPE,
                "672208551832e17b579c3d18c3ec7553970f2e20bf9ce91d911211744d2e7b9f",
            ),
        ];
        for (method, path, ctype, expected) in cases {
            let r = req(method, path, ctype);
            assert_eq!(sign(SECRET, &r).unwrap(), expected, "{method} {path}");
            assert!(verify(SECRET, &r, expected).unwrap());
            assert!(verify(SECRET, &r, &expected.to_ascii_uppercase()).unwrap());
            assert!(!verify("other-secret", &r, expected).unwrap());
            assert!(!verify(SECRET, &r, &expected[..10]).unwrap());
        }
        // parameters of the content type are not signed
        let with_charset = req("POST", "/admin/gql", "Application/JSON; charset=utf-8");
        assert_eq!(
            sign(SECRET, &with_charset).unwrap(),
            "b2c10152d1c788b0790bde66c57c008cad2625156689e7f80f2290d38931e0ec"
        );
        // anything else that changes breaks the signature
        let other_path = req("GET", "/folders/_/hosts?x=1", "text/plain");
        assert!(
            !verify(SECRET, &other_path, "45ee43f01f31d0735bbf5cd87ca4a10c122a42164eb3298a518e79467243a132").unwrap()
        );
    }

    #[test]
    fn string_to_sign_layout() {
        let s = string_to_sign(&req("get", "/x?a=b", "multipart/form-data; boundary=zzz"));
        assert_eq!(
            s,
            format!("GET\n/x?a=b\n{DATE}\nhost:{HOST}\ncontent-type:multipart/form-data\nx-backendai-version:{API_VERSION}\n{EMPTY_BODY_HASH}")
        );
    }

    #[test]
    fn authorization_header_round_trips() {
        let ak = AccessKey::new("AKIAIOSFODNN7EXAMPLE").unwrap();
        let header = authorization_header(&ak, "abcdef01");
        assert_eq!(header, "BackendAI signMethod=HMAC-SHA256, credential=AKIAIOSFODNN7EXAMPLE:abcdef01");
        let parsed = parse_authorization(&header).unwrap();
        assert_eq!(parsed.access_key, ak);
        assert_eq!(parsed.signature, "abcdef01");
        assert!(parse_authorization("Sorna signMethod=hmac-sha256, credential=AK1:ab").is_ok());
        for (bad, needle) in [
            ("", "malformed Authorization header"),
            ("Bearer xyz", "scheme"),
            ("BackendAI credential=AK:ab", "no signMethod"),
            ("BackendAI signMethod=HMAC-SHA1, credential=AK:ab", "unsupported signMethod"),
            ("BackendAI signMethod=HMAC-SHA256", "no credential"),
            ("BackendAI signMethod=HMAC-SHA256, credential=AKab", "ACCESS_KEY:SIGNATURE"),
            ("BackendAI signMethod=HMAC-SHA256, credential=AK:xyz", "hexadecimal"),
            ("BackendAI signMethod=HMAC-SHA256, credential=A/K:ab", "invalid access key"),
            ("BackendAI signMethod", "key=value"),
        ] {
            let err = parse_authorization(bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{bad:?}: {err}");
        }
    }

    #[test]
    fn dates_parse_leniently_and_skew_is_checked() {
        let iso = parse_request_date(DATE).unwrap();
        let rfc = parse_request_date("Tue, 02 Jan 2024 03:04:05 GMT").unwrap();
        let naive = parse_request_date("2024-01-02T03:04:05").unwrap();
        assert_eq!(rfc, naive);
        assert_eq!(iso.timestamp(), rfc.timestamp());
        assert!(parse_request_date("yesterday").unwrap_err().to_string().contains("\"yesterday\""));

        let now = iso.with_timezone(&Utc);
        check_clock_skew(&iso, now + TimeDelta::minutes(14)).unwrap();
        check_clock_skew(&iso, now - TimeDelta::minutes(15)).unwrap();
        let err = check_clock_skew(&iso, now + TimeDelta::minutes(16)).unwrap_err().to_string();
        assert!(err.contains("Date/time sync error"), "{err}");

        assert_eq!(format_request_date(now), DATE);
    }
}
