//! The custom scalars of the original's schema, with its exact names and value conventions
//! (spec §7.2): `UUID`, `DateTime`, `JSONString` and `BigInt`.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{DateTime as ChronoDateTime, NaiveDate, NaiveDateTime, Timelike, Utc};

/// `UUID`: a UUID as a canonical, lower-case, hyphenated string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Uuid(pub uuid::Uuid);

#[Scalar(name = "UUID")]
impl ScalarType for Uuid {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => uuid::Uuid::parse_str(s.trim())
                .map(Uuid)
                .map_err(|_| InputValueError::custom(format!("{s:?} is not a UUID"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.hyphenated().to_string())
    }
}

impl From<uuid::Uuid> for Uuid {
    fn from(id: uuid::Uuid) -> Self {
        Uuid(id)
    }
}

/// `DateTime`: a point in time, written as the original writes it (Python's
/// `datetime.isoformat()` of an aware UTC time: `2024-05-01T12:34:56.123456+00:00`, the
/// fraction only when it is not zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateTime(pub ChronoDateTime<Utc>);

impl DateTime {
    /// The wire form.
    pub fn isoformat(&self) -> String {
        let at = self.0;
        let micros = at.nanosecond() % 1_000_000_000 / 1_000;
        if micros == 0 {
            at.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
        } else {
            format!("{}.{micros:06}+00:00", at.format("%Y-%m-%dT%H:%M:%S"))
        }
    }
}

#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => parse_datetime(s).map(DateTime).map_err(InputValueError::custom),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.isoformat())
    }
}

impl From<ChronoDateTime<Utc>> for DateTime {
    fn from(at: ChronoDateTime<Utc>) -> Self {
        DateTime(at)
    }
}

/// Parses a date and time leniently: RFC 3339 / ISO 8601 with or without an offset (none
/// means UTC), a space instead of the `T`, or a bare date (midnight UTC).
pub fn parse_datetime(text: &str) -> Result<ChronoDateTime<Utc>, String> {
    let s = text.trim();
    if let Ok(at) = ChronoDateTime::parse_from_rfc3339(s) {
        return Ok(at.with_timezone(&Utc));
    }
    let t = s.replacen(' ', "T", 1);
    for format in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%:z"] {
        if let Ok(at) = ChronoDateTime::parse_from_str(&t, format) {
            return Ok(at.with_timezone(&Utc));
        }
    }
    let naive = t.strip_suffix('Z').unwrap_or(&t);
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(naive, format) {
            return Ok(at.and_utc());
        }
    }
    if let Ok(day) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(at) = day.and_hms_opt(0, 0, 0) {
            return Ok(at.and_utc());
        }
    }
    Err(format!("{text:?} is not a date and time (expected ISO 8601, e.g. 2024-05-01T12:34:56+00:00)"))
}

/// `JSONString`: a JSON document encoded as a string (the client calls `json.loads` on it).
/// Absent values are GraphQL `null`, never the string `"null"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonString(pub String);

impl JsonString {
    /// The encoding of `value`.
    pub fn of(value: &serde_json::Value) -> Self {
        JsonString(value.to_string())
    }

    /// The encoding of `value`, or `None` when it is absent or JSON `null`.
    pub fn of_opt(value: Option<&serde_json::Value>) -> Option<Self> {
        value.filter(|v| !v.is_null()).map(Self::of)
    }

    /// The encoding of `value` when it is a JSON object, else `None` (the CLI's formatters of
    /// `status_data` and statistics iterate an object).
    pub fn of_object(value: Option<&serde_json::Value>) -> Option<Self> {
        value.filter(|v| v.is_object()).map(Self::of)
    }

    /// The encoding of any serialisable value (resource slots, lists), `"{}"` if it cannot be
    /// serialised (plain data always can).
    pub fn serialize<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        JsonString(serde_json::to_string(value).unwrap_or_else(|_| "{}".into()))
    }
}

#[Scalar(name = "JSONString")]
impl ScalarType for JsonString {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => match serde_json::from_str::<serde_json::Value>(s) {
                Ok(_) => Ok(JsonString(s.clone())),
                Err(e) => Err(InputValueError::custom(format!("not a JSON document: {e}"))),
            },
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// `BigInt`: an integer beyond the 32 bits of `Int`, written as a JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BigInt(pub i64);

#[Scalar(name = "BigInt")]
impl ScalarType for BigInt {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Ok(BigInt(i)),
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => Ok(BigInt(f as i64)),
                _ => Err(InputValueError::custom(format!("{n} is not an integer in the safe range"))),
            },
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(BigInt)
                .map_err(|_| InputValueError::custom(format!("{s:?} is not an integer"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::Number(self.0.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn datetimes_are_written_like_python_isoformat() {
        let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 34, 56).unwrap();
        assert_eq!(DateTime(at).isoformat(), "2024-05-01T12:34:56+00:00");
        let at = at + chrono::Duration::nanoseconds(123_456_789);
        assert_eq!(DateTime(at).isoformat(), "2024-05-01T12:34:56.123456+00:00");
    }

    #[test]
    fn datetimes_parse_leniently() {
        let want = Utc.with_ymd_and_hms(2024, 5, 1, 12, 34, 56).unwrap();
        for text in [
            "2024-05-01T12:34:56+00:00",
            "2024-05-01T12:34:56Z",
            "2024-05-01 12:34:56",
            "2024-05-01T21:34:56+09:00",
            "2024-05-01T12:34:56.000",
        ] {
            assert_eq!(parse_datetime(text).unwrap(), want, "{text}");
        }
        assert_eq!(parse_datetime("2024-05-01").unwrap(), Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap());
        assert!(parse_datetime("yesterday").is_err());
    }

    #[test]
    fn json_strings_are_never_the_string_null() {
        assert_eq!(JsonString::of_opt(Some(&serde_json::Value::Null)), None);
        assert_eq!(JsonString::of_object(Some(&serde_json::json!([1]))), None);
        assert_eq!(JsonString::of_object(Some(&serde_json::json!({"a": 1}))).unwrap().0, r#"{"a":1}"#);
    }
}
