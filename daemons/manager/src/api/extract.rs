//! Request-parameter extractors whose failures are 400 `invalid-api-params` naming the field.
//!
//! Use these instead of `axum::Json`/`axum::extract::Query`: a body that is not JSON, a field of
//! the wrong type or a missing field becomes
//! `400 {"type": ".../invalid-api-params", "msg": "<field>: <problem>", "data": {"<field>": "<problem>"}}`.
//! (Routes that use axum's own extractors still answer a problem document, through
//! [`normalize_errors`](super::error::normalize_errors), but without the field name.)

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorKind};

/// A JSON request body, whatever the `Content-Type` (the original parses bodies as JSON without
/// looking at it).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

/// Parameters from the query string.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

/// Parameters as the original's `check_api_params` reads them (spec §2): from the JSON body
/// when the request has a non-empty body, else from the query string (so body-less GET,
/// DELETE and PATCH requests such as `DELETE /session/x?forced=true` work).
#[derive(Debug, Clone)]
pub struct ApiParams<T>(pub T);

fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => &message[..i],
        _ => message,
    }
}

/// The field a deserialization error is about: the error's path, extended by the name of a
/// missing field; `root` when the error is about the whole document.
fn field_of(path: &str, message: &str, root: &str) -> String {
    let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')).map(|(name, _)| name);
    let path = if path == "." || path.is_empty() { None } else { Some(path) };
    match (path, missing) {
        (Some(p), Some(m)) => format!("{p}.{m}"),
        (None, Some(m)) => m.to_string(),
        (Some(p), None) => p.to_string(),
        (None, None) => root.to_string(),
    }
}

/// Parses a JSON document into `T`, naming the offending field on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::invalid("body", "expected a JSON document, got an empty body"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid("body", format!("malformed JSON: {inner}"))
        } else {
            let message = inner.to_string();
            let message = strip_position(&message);
            ApiError::invalid(field_of(&path, message, "body"), message)
        }
    })?;
    de.end().map_err(|e| ApiError::invalid("body", format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Parses a query string (`a=1&b=x`) into `T`, naming the offending parameter on failure.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        ApiError::invalid(field_of(&path, &message, "query"), message)
    })
}

/// The whole body; one over the limit is 413 `request-too-large`, any other failure 400 naming
/// `body`.
pub(crate) async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::with_kind_msg(ErrorKind::PayloadTooLarge, rejection.body_text())
        } else {
            ApiError::invalid("body", rejection.body_text())
        }
    })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(ApiQuery)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiParams<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let query = req.uri().query().unwrap_or("").to_string();
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            parse_query(&query).map(ApiParams)
        } else {
            parse_json(&bytes).map(ApiParams)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        cpu: String,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Params {
        name: String,
        #[serde(default)]
        forced: bool,
        #[serde(default)]
        resources: Option<Inner>,
    }

    fn data_key(err: &ApiError) -> String {
        err.data().and_then(|d| d.as_object()).and_then(|o| o.keys().next().cloned()).unwrap_or_default()
    }

    #[test]
    fn json_errors_name_the_field() {
        let err = parse_json::<Params>(br#"{"name": 5}"#).unwrap_err();
        assert_eq!(data_key(&err), "name");
        assert!(err.msg().unwrap().contains("invalid type: integer `5`, expected a string"), "{err}");
        let err = parse_json::<Params>(br#"{"name": "x", "resources": {}}"#).unwrap_err();
        assert_eq!(data_key(&err), "resources.cpu");
        let err = parse_json::<Params>(br#"{}"#).unwrap_err();
        assert_eq!(data_key(&err), "name");
        let err = parse_json::<Params>(br#"{"name": "x""#).unwrap_err();
        assert_eq!(data_key(&err), "body");
        assert!(err.msg().unwrap().contains("malformed JSON"), "{err}");
        let err = parse_json::<Params>(br#"{"name": "x"} trailing"#).unwrap_err();
        assert_eq!(data_key(&err), "body");
        assert!(parse_json::<Params>(b"").is_err());
        assert_eq!(parse_json::<Params>(br#"{"name": "x", "forced": true}"#).unwrap().name, "x");
    }

    #[test]
    fn query_parses_and_names_the_parameter() {
        let p: Params = parse_query("name=x&forced=true").unwrap();
        assert!(p.forced);
        let err = parse_query::<Params>("name=x&forced=maybe").unwrap_err();
        assert_eq!(data_key(&err), "forced");
        let err = parse_query::<Params>("forced=true").unwrap_err();
        assert_eq!(data_key(&err), "name");
    }
}
