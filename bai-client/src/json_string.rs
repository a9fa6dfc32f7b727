//! Deserializers for GraphQL `JSONString` fields: a JSON document encoded as a string (or, from
//! lenient servers, the document itself, or null).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Any JSON value; null and the empty string become `Value::Null`.
pub fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) if s.trim().is_empty() => Ok(Value::Null),
        Value::String(s) => serde_json::from_str(&s).map_err(serde::de::Error::custom),
        other => Ok(other),
    }
}

/// A JSON object; null becomes empty.
pub fn object<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Value>, D::Error> {
    match value(d)? {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(map) => Ok(map.into_iter().collect()),
        other => Err(serde::de::Error::custom(format!("expected a JSON object, got {other}"))),
    }
}
