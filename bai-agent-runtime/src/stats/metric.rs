//! [`MetricValue`]: one measured value with its capacity, in the original's wire format.

use std::fmt;

use bai_core::Decimal;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One metric of a container or of the node: what is used, out of how much.
///
/// The JSON form is the original's `MetricValue` without its optional `unit_hint` and
/// `stats.*` keys:
///
/// ```json
/// {"current": "1536.25", "capacity": "4096", "pct": "37.51"}
/// ```
///
/// - `current` and `capacity` are rounded to 3 decimal places (half to even, like Python's
///   `Decimal.quantize`), then printed without trailing zeros or an exponent, as the original's
///   `remove_exponent` does: `5.000` prints as `"5"`, `1.500` as `"1.5"`.
/// - `capacity` is `null` when the metric has none (a counter, a rate).
/// - `pct` is `current / capacity × 100` rounded to 2 places and printed the same way, or the
///   literal `"0.00"` when there is no capacity or it is not positive.
///
/// ```
/// use bai_agent_runtime::bai_core::Decimal;
/// use bai_agent_runtime::stats::MetricValue;
///
/// let mem = MetricValue::new(Decimal::from(1536), Some(Decimal::from(4096)));
/// assert_eq!(
///     serde_json::to_string(&mem).unwrap(),
///     r#"{"current":"1536","capacity":"4096","pct":"37.5"}"#,
/// );
/// let counter = MetricValue::new(Decimal::new(12_3456, 4), None);
/// assert_eq!(
///     serde_json::to_string(&counter).unwrap(),
///     r#"{"current":"12.346","capacity":null,"pct":"0.00"}"#,
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricValue {
    /// The measured value, unrounded (rounding happens when it is printed).
    pub current: Decimal,
    /// What `current` is measured against, if anything.
    pub capacity: Option<Decimal>,
    /// `current / capacity × 100`, rounded to 2 places; zero without a positive capacity.
    pub pct: Decimal,
}

impl MetricValue {
    /// A value with its percentage computed from `current` and `capacity`.
    pub fn new(current: Decimal, capacity: Option<Decimal>) -> Self {
        let pct = match capacity {
            Some(cap) if cap > Decimal::ZERO => current
                .checked_div(cap)
                .and_then(|ratio| ratio.checked_mul(Decimal::ONE_HUNDRED))
                .map(|p| p.round_dp(2))
                .unwrap_or(Decimal::ZERO),
            _ => Decimal::ZERO,
        };
        Self { current, capacity, pct }
    }

    /// A value without capacity (a counter or a rate).
    pub fn uncapped(current: Decimal) -> Self {
        Self::new(current, None)
    }

    /// Whether `pct` means anything: the capacity is known and positive.
    pub fn has_capacity(&self) -> bool {
        matches!(self.capacity, Some(cap) if cap > Decimal::ZERO)
    }

    /// `current` as printed on the wire.
    pub fn current_str(&self) -> String {
        wire_decimal(self.current, 3)
    }

    /// `capacity` as printed on the wire.
    pub fn capacity_str(&self) -> Option<String> {
        self.capacity.map(|c| wire_decimal(c, 3))
    }

    /// `pct` as printed on the wire: `"0.00"` without a positive capacity.
    pub fn pct_str(&self) -> String {
        if self.has_capacity() {
            wire_decimal(self.pct, 2)
        } else {
            "0.00".to_owned()
        }
    }
}

impl fmt::Display for MetricValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.capacity_str() {
            Some(cap) => write!(f, "{} / {} ({} %)", self.current_str(), cap, self.pct_str()),
            None => f.write_str(&self.current_str()),
        }
    }
}

/// Rounds to `places` (half to even) and prints without trailing zeros or an exponent.
pub(crate) fn wire_decimal(value: Decimal, places: u32) -> String {
    value.round_dp(places).normalize().to_string()
}

#[derive(Serialize, Deserialize)]
struct Wire {
    current: String,
    capacity: Option<String>,
    pct: String,
}

impl Serialize for MetricValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Wire { current: self.current_str(), capacity: self.capacity_str(), pct: self.pct_str() }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MetricValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        let parse = |field: &str, s: &str| {
            s.parse::<Decimal>()
                .map_err(|e| D::Error::custom(format!("invalid metric {field} {s:?}: expected a decimal string ({e})")))
        };
        Ok(Self {
            current: parse("current", &wire.current)?,
            capacity: wire.capacity.as_deref().map(|c| parse("capacity", c)).transpose()?,
            pct: parse("pct", &wire.pct)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn printing_follows_quantize_then_remove_exponent() {
        assert_eq!(wire_decimal(d("5.000"), 3), "5");
        assert_eq!(wire_decimal(d("1.5"), 3), "1.5");
        assert_eq!(wire_decimal(d("0.0004"), 3), "0");
        assert_eq!(wire_decimal(d("1.0005"), 3), "1"); // half to even
        assert_eq!(wire_decimal(d("1.0015"), 3), "1.002");
        assert_eq!(wire_decimal(d("12345678901234567890"), 3), "12345678901234567890");
        assert_eq!(wire_decimal(d("33.3333"), 2), "33.33");
    }

    #[test]
    fn pct_is_zero_point_zero_zero_only_without_capacity() {
        let none = MetricValue::new(d("10"), None);
        assert_eq!(none.pct_str(), "0.00");
        let zero_cap = MetricValue::new(d("10"), Some(Decimal::ZERO));
        assert_eq!(zero_cap.pct_str(), "0.00");
        // With a capacity, a zero percentage prints like any other number.
        let idle = MetricValue::new(Decimal::ZERO, Some(d("400")));
        assert_eq!(idle.pct_str(), "0");
        let third = MetricValue::new(d("1"), Some(d("3")));
        assert_eq!(third.pct_str(), "33.33");
        assert_eq!(third.pct, d("33.33"));
    }

    #[test]
    fn json_round_trip() {
        let v = MetricValue::new(d("150.1234"), Some(d("200")));
        let json = serde_json::to_value(v).unwrap();
        assert_eq!(json, serde_json::json!({"current": "150.123", "capacity": "200", "pct": "75.06"}));
        let back: MetricValue = serde_json::from_value(json).unwrap();
        assert_eq!(back.current_str(), "150.123");
        assert_eq!(back.capacity, Some(d("200")));
        assert_eq!(back.pct, d("75.06"));
        let bad =
            serde_json::from_value::<MetricValue>(serde_json::json!({"current": "x", "capacity": null, "pct": "0"}));
        assert!(bad.unwrap_err().to_string().contains("invalid metric current"));
    }
}
