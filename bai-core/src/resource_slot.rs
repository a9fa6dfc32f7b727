//! Resource slots: named, exact decimal amounts of CPU, memory, accelerators, ….

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Add, AddAssign, Mul, Sub, SubAssign};
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::binary_size::BinarySize;
use crate::error::{Error, Hint, Result};

/// How a slot's amounts are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotType {
    /// A count that may be fractional: `cpu`, `cuda.shares`, `cuda.device`.
    Count,
    /// A number of bytes: `mem`. User input may use [`BinarySize`] strings such as `"4g"`.
    Bytes,
    /// A device that is allocated whole and exclusively, e.g. `cuda.device:1g.5gb-mig`.
    Unique,
}

impl SlotType {
    /// The name used in configuration and JSON: `count`, `bytes` or `unique`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Bytes => "bytes",
            Self::Unique => "unique",
        }
    }
}

impl FromStr for SlotType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "count" => Ok(Self::Count),
            "bytes" => Ok(Self::Bytes),
            "unique" => Ok(Self::Unique),
            _ => Err(Error::UnknownVariant {
                kind: "slot type",
                input: s.to_string(),
                expected: "count, bytes, unique".into(),
            }),
        }
    }
}

/// The slots a cluster knows, with their types.
///
/// The default set is `{cpu: count, mem: bytes}`; accelerator plugins add theirs (the manager
/// learns them from agent heartbeats).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KnownSlots(BTreeMap<String, SlotType>);

impl Default for KnownSlots {
    fn default() -> Self {
        let mut map = BTreeMap::new();
        map.insert("cpu".to_string(), SlotType::Count);
        map.insert("mem".to_string(), SlotType::Bytes);
        Self(map)
    }
}

impl KnownSlots {
    /// Only `cpu` and `mem`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or retypes) a slot, validating its name.
    pub fn insert(&mut self, name: &str, slot_type: SlotType) -> Result<()> {
        validate_slot_name(name)?;
        self.0.insert(name.to_string(), slot_type);
        Ok(())
    }

    /// Builder form of [`KnownSlots::insert`].
    pub fn with(mut self, name: &str, slot_type: SlotType) -> Result<Self> {
        self.insert(name, slot_type)?;
        Ok(self)
    }

    /// The type of a slot, if known.
    pub fn get(&self, name: &str) -> Option<SlotType> {
        self.0.get(name).copied()
    }

    /// Iterates over the slots in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, SlotType)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

/// Checks a slot name: `<device>[.<kind>][:<profile>]`, lowercase ASCII letters, digits and
/// `.`, `_`, `-`, `:`; starting with a letter; at most 64 characters.
pub fn validate_slot_name(name: &str) -> Result<()> {
    let err = |reason: &str| Error::InvalidSlotName { name: name.to_string(), reason: reason.to_string() };
    if name.is_empty() || name.len() > 64 {
        return Err(err("expected 1 to 64 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(err("must start with a lowercase letter"));
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | ':')) {
        return Err(err("expected lowercase letters, digits, '.', '_', '-' or ':'"));
    }
    Ok(())
}

/// A set of resource amounts by slot name, e.g. `{cpu: 2, mem: 4294967296, cuda.shares: 0.5}`.
///
/// Amounts are exact decimals, never floats. **A missing slot means zero** in every operation:
/// `{cpu: 1} == {cpu: 1, mem: 0}`, and subtracting `{mem: 5}` from `{cpu: 1}` gives
/// `{cpu: 1, mem: -5}`. Comparisons form a partial order: `a <= b` holds when every slot of `a`
/// is at most the same slot of `b`, so `{cpu: 3, mem: 200}` and `{cpu: 4, mem: 100}` are not
/// comparable (`partial_cmp` is `None`).
///
/// The JSON form is the original's: an object whose values are exponent-free decimal strings.
///
/// ```
/// use bai_core::ResourceSlot;
/// use rust_decimal::Decimal;
///
/// let free: ResourceSlot = serde_json::from_str(r#"{"cpu": "4", "mem": "8589934592"}"#)?;
/// let want = ResourceSlot::from_pairs([("cpu", Decimal::from(2)), ("mem", Decimal::from(4u64 << 30))])?;
/// assert!(want.fits_in(&free));
/// let left = free.checked_sub(&want)?;
/// assert_eq!(serde_json::to_string(&left)?, r#"{"cpu":"2","mem":"4294967296"}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ResourceSlot(BTreeMap<String, Decimal>);

impl ResourceSlot {
    /// An empty slot set (all zeros).
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a slot set from pairs, validating each name.
    pub fn from_pairs<K: AsRef<str>>(pairs: impl IntoIterator<Item = (K, Decimal)>) -> Result<Self> {
        let mut slot = Self::new();
        for (name, value) in pairs {
            validate_slot_name(name.as_ref())?;
            slot.0.insert(name.as_ref().to_string(), value);
        }
        Ok(slot)
    }

    /// The amount of a slot; zero when absent.
    pub fn get(&self, name: &str) -> Decimal {
        self.0.get(name).copied().unwrap_or(Decimal::ZERO)
    }

    /// Whether the slot is present (even with a zero amount).
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Sets the amount of a slot, validating its name.
    pub fn set(&mut self, name: &str, value: Decimal) -> Result<()> {
        validate_slot_name(name)?;
        self.0.insert(name.to_string(), value);
        Ok(())
    }

    /// Removes a slot, returning its amount.
    pub fn remove(&mut self, name: &str) -> Option<Decimal> {
        self.0.remove(name)
    }

    /// The present slots in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Decimal)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// The number of present slots (zeros included).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no slot is present.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every amount is zero (an empty set is zero).
    pub fn is_zero(&self) -> bool {
        self.0.values().all(|v| v.is_zero())
    }

    /// Whether any amount is negative.
    pub fn has_negative(&self) -> bool {
        self.0.values().any(|v| v.is_sign_negative() && !v.is_zero())
    }

    /// The same amounts without the zero entries.
    pub fn without_zeros(&self) -> Self {
        Self(self.0.iter().filter(|(_, v)| !v.is_zero()).map(|(k, v)| (k.clone(), *v)).collect())
    }

    fn union_keys<'a>(&'a self, other: &'a Self) -> impl Iterator<Item = &'a str> {
        let mut keys: Vec<&str> = self.0.keys().chain(other.0.keys()).map(String::as_str).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
    }

    fn zip_with(&self, other: &Self, op: impl Fn(Decimal, Decimal) -> Option<Decimal>) -> Result<Self> {
        let mut out = BTreeMap::new();
        for key in self.union_keys(other) {
            let value = op(self.get(key), other.get(key)).ok_or_else(|| Error::Overflow { slot: key.to_string() })?;
            out.insert(key.to_string(), value);
        }
        Ok(Self(out))
    }

    /// `self + other` per slot; an error instead of overflowing.
    pub fn checked_add(&self, other: &Self) -> Result<Self> {
        self.zip_with(other, Decimal::checked_add)
    }

    /// `self - other` per slot (the result may be negative); an error instead of overflowing.
    pub fn checked_sub(&self, other: &Self) -> Result<Self> {
        self.zip_with(other, Decimal::checked_sub)
    }

    /// Every amount times `factor`; an error instead of overflowing.
    pub fn checked_mul(&self, factor: Decimal) -> Result<Self> {
        let mut out = BTreeMap::new();
        for (key, value) in &self.0 {
            let v = value.checked_mul(factor).ok_or_else(|| Error::Overflow { slot: key.clone() })?;
            out.insert(key.clone(), v);
        }
        Ok(Self(out))
    }

    /// Whether this request fits in `capacity`: every slot is at most the capacity's amount,
    /// a missing slot on either side counting as zero. The same as `self <= capacity`.
    pub fn fits_in(&self, capacity: &Self) -> bool {
        self.union_keys(capacity).all(|k| self.get(k) <= capacity.get(k))
    }

    /// The slots where this request exceeds `capacity`, with the amount missing in each;
    /// empty exactly when [`ResourceSlot::fits_in`] holds.
    pub fn shortfall(&self, capacity: &Self) -> Self {
        let mut out = BTreeMap::new();
        for key in self.union_keys(capacity) {
            let (want, have) = (self.get(key), capacity.get(key));
            if want > have {
                // saturating: a shortfall beyond Decimal::MAX is still reported as huge
                out.insert(key.to_string(), want.saturating_sub(have));
            }
        }
        Self(out)
    }

    /// Keeps the known slots, sets the missing known slots to zero, and rejects slots the
    /// cluster does not know (with a hint when `shmem` was put among the slots).
    pub fn normalize(&self, known: &KnownSlots) -> Result<Self> {
        for key in self.0.keys() {
            if known.get(key).is_none() {
                return Err(unknown_slot(key));
            }
        }
        let mut out = self.0.clone();
        for (name, _) in known.iter() {
            out.entry(name.to_string()).or_insert(Decimal::ZERO);
        }
        Ok(Self(out))
    }

    /// Like [`ResourceSlot::normalize`] but silently drops unknown slots.
    pub fn normalize_ignoring_unknown(&self, known: &KnownSlots) -> Self {
        let mut out: BTreeMap<String, Decimal> =
            self.0.iter().filter(|(k, _)| known.get(k).is_some()).map(|(k, v)| (k.clone(), *v)).collect();
        for (name, _) in known.iter() {
            out.entry(name.to_string()).or_insert(Decimal::ZERO);
        }
        Self(out)
    }

    /// Converts a user's resource request, as the API receives it, into slots.
    ///
    /// Values may be JSON numbers or strings. `bytes` slots accept [`BinarySize`] strings
    /// (`"4g"`); `count` and `unique` slots are rounded to three decimals. Zero values are
    /// dropped, negative values and unknown slots are errors. With `known`, the result is
    /// [normalized](ResourceSlot::normalize); without it, a slot whose name contains `mem` is
    /// taken as bytes and any other as a count.
    ///
    /// ```
    /// use bai_core::{KnownSlots, ResourceSlot};
    ///
    /// let req = serde_json::json!({"cpu": 2, "mem": "4g"});
    /// let slots = ResourceSlot::from_user_input(req.as_object().unwrap(), Some(&KnownSlots::new()))?;
    /// assert_eq!(slots.get("mem"), (4u64 << 30).into());
    /// let bad = serde_json::json!({"gpu": 1});
    /// let err = ResourceSlot::from_user_input(bad.as_object().unwrap(), Some(&KnownSlots::new()));
    /// assert!(err.unwrap_err().to_string().contains("unknown resource slot \"gpu\""));
    /// # Ok::<(), bai_core::Error>(())
    /// ```
    pub fn from_user_input(
        input: &serde_json::Map<String, serde_json::Value>,
        known: Option<&KnownSlots>,
    ) -> Result<Self> {
        let mut out = BTreeMap::new();
        for (name, raw) in input {
            validate_slot_name(name)?;
            let slot_type = match known {
                Some(known) => known.get(name).ok_or_else(|| unknown_slot(name))?,
                None if name.contains("mem") => SlotType::Bytes,
                None => SlotType::Count,
            };
            let value = convert_user_value(name, raw, slot_type)?;
            if value.is_sign_negative() && !value.is_zero() {
                return Err(Error::InvalidSlotValue {
                    slot: name.clone(),
                    reason: format!("{value} is negative; resource amounts must be zero or more"),
                });
            }
            if !value.is_zero() {
                out.insert(name.clone(), value);
            }
        }
        let slots = Self(out);
        match known {
            Some(known) => slots.normalize(known),
            None => Ok(slots),
        }
    }

    /// A compact human form, `bytes` slots printed as sizes: `cpu=2 mem=4g`.
    pub fn to_humanized(&self, known: &KnownSlots) -> String {
        self.0
            .iter()
            .map(|(k, v)| match (known.get(k), u64::try_from(*v)) {
                (Some(SlotType::Bytes), Ok(bytes)) => {
                    format!("{k}={}", BinarySize::new(bytes).to_short_string())
                }
                _ => format!("{k}={}", v.normalize()),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn unknown_slot(name: &str) -> Error {
    let hint = if name == "shmem" {
        Some("shared memory is not a slot: request it as resource_opts.shmem".to_string())
    } else {
        None
    };
    Error::UnknownSlot { slot: name.to_string(), hint: Hint(hint) }
}

fn parse_decimal(slot: &str, text: &str) -> Result<Decimal> {
    let text = text.trim();
    Decimal::from_str(text).or_else(|_| Decimal::from_scientific(text)).map_err(|_| Error::InvalidSlotValue {
        slot: slot.to_string(),
        reason: format!("{text:?} is not a decimal number"),
    })
}

fn convert_user_value(slot: &str, raw: &serde_json::Value, slot_type: SlotType) -> Result<Decimal> {
    use serde_json::Value;
    let err = |reason: String| Error::InvalidSlotValue { slot: slot.to_string(), reason };
    match (slot_type, raw) {
        (SlotType::Bytes, Value::String(s)) => {
            let trimmed = s.trim();
            if let Some(rest) = trimmed.strip_prefix('-') {
                return Err(err(format!("-{rest} is negative; resource amounts must be zero or more")));
            }
            BinarySize::parse(trimmed).map(Decimal::from).map_err(|e| err(e.to_string()))
        }
        (SlotType::Bytes, Value::Number(n)) => {
            let d = parse_decimal(slot, &n.to_string())?;
            if !d.fract().is_zero() {
                return Err(err(format!("{n} is not a whole number of bytes")));
            }
            Ok(d)
        }
        (_, Value::String(s)) => Ok(quantize(parse_decimal(slot, s)?)),
        (_, Value::Number(n)) => Ok(quantize(parse_decimal(slot, &n.to_string())?)),
        (_, other) => Err(err(format!("expected a number or a string, got {other}"))),
    }
}

/// Rounds a count to three decimals (half to even), as the original quantizes to `0.000`.
fn quantize(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(3, RoundingStrategy::MidpointNearestEven).normalize()
}

impl PartialEq for ResourceSlot {
    fn eq(&self, other: &Self) -> bool {
        self.union_keys(other).all(|k| self.get(k) == other.get(k))
    }
}

impl PartialOrd for ResourceSlot {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        let (mut le, mut ge) = (true, true);
        for k in self.union_keys(other) {
            match self.get(k).cmp(&other.get(k)) {
                Ordering::Less => ge = false,
                Ordering::Greater => le = false,
                Ordering::Equal => {}
            }
        }
        match (le, ge) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            (false, false) => None,
        }
    }
}

/// Saturating at `Decimal::MAX`/`MIN`; use [`ResourceSlot::checked_add`] to detect overflow.
impl Add<&ResourceSlot> for &ResourceSlot {
    type Output = ResourceSlot;
    fn add(self, rhs: &ResourceSlot) -> ResourceSlot {
        let mut out = self.clone();
        out += rhs;
        out
    }
}

/// Saturating at `Decimal::MAX`/`MIN`; use [`ResourceSlot::checked_sub`] to detect overflow.
impl Sub<&ResourceSlot> for &ResourceSlot {
    type Output = ResourceSlot;
    fn sub(self, rhs: &ResourceSlot) -> ResourceSlot {
        let mut out = self.clone();
        out -= rhs;
        out
    }
}

impl AddAssign<&ResourceSlot> for ResourceSlot {
    fn add_assign(&mut self, rhs: &ResourceSlot) {
        for (k, v) in &rhs.0 {
            match self.0.get_mut(k) {
                Some(entry) => *entry = entry.saturating_add(*v),
                None => {
                    self.0.insert(k.clone(), *v);
                }
            }
        }
    }
}

impl SubAssign<&ResourceSlot> for ResourceSlot {
    fn sub_assign(&mut self, rhs: &ResourceSlot) {
        for (k, v) in &rhs.0 {
            match self.0.get_mut(k) {
                Some(entry) => *entry = entry.saturating_sub(*v),
                None => {
                    self.0.insert(k.clone(), Decimal::ZERO.saturating_sub(*v));
                }
            }
        }
    }
}

/// Saturating; use [`ResourceSlot::checked_mul`] to detect overflow.
impl Mul<Decimal> for &ResourceSlot {
    type Output = ResourceSlot;
    fn mul(self, factor: Decimal) -> ResourceSlot {
        ResourceSlot(self.0.iter().map(|(k, v)| (k.clone(), v.saturating_mul(factor))).collect())
    }
}

impl<'a> std::iter::Sum<&'a ResourceSlot> for ResourceSlot {
    fn sum<I: Iterator<Item = &'a ResourceSlot>>(mut iter: I) -> Self {
        let mut total = iter.next().cloned().unwrap_or_default();
        for slot in iter {
            total += slot;
        }
        total
    }
}

impl fmt::Display for ResourceSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}: {}", v.normalize())?;
        }
        f.write_str("}")
    }
}

impl Serialize for ResourceSlot {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, &v.normalize().to_string())?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ResourceSlot {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct SlotVisitor;
        impl<'de> Visitor<'de> for SlotVisitor {
            type Value = ResourceSlot;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of slot names to decimal strings or numbers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> std::result::Result<ResourceSlot, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((name, raw)) = access.next_entry::<String, serde_json::Value>()? {
                    validate_slot_name(&name).map_err(de::Error::custom)?;
                    let value = match &raw {
                        serde_json::Value::String(s) => parse_decimal(&name, s),
                        serde_json::Value::Number(n) => parse_decimal(&name, &n.to_string()),
                        other => Err(Error::InvalidSlotValue {
                            slot: name.clone(),
                            reason: format!("expected a decimal string or a number, got {other}"),
                        }),
                    }
                    .map_err(de::Error::custom)?;
                    out.insert(name, value);
                }
                Ok(ResourceSlot(out))
            }
        }
        deserializer.deserialize_map(SlotVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rs(json: serde_json::Value) -> ResourceSlot {
        serde_json::from_value(json).unwrap()
    }

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn json_form_matches_the_original() {
        let slot = rs(serde_json::json!({"cpu": "2", "mem": "4294967296", "cuda.shares": "0.5"}));
        assert_eq!(slot.get("cuda.shares"), d("0.5"));
        assert_eq!(serde_json::to_string(&slot).unwrap(), r#"{"cpu":"2","cuda.shares":"0.5","mem":"4294967296"}"#);
        // numbers are accepted too, and trailing zeros are dropped on output
        let slot = rs(serde_json::json!({"cpu": 2.50, "mem": "1024.000"}));
        assert_eq!(serde_json::to_string(&slot).unwrap(), r#"{"cpu":"2.5","mem":"1024"}"#);
        let big = rs(serde_json::json!({"mem": "2E+1"}));
        assert_eq!(serde_json::to_string(&big).unwrap(), r#"{"mem":"20"}"#);
    }

    #[test]
    fn json_rejects_bad_values_and_names() {
        let e = serde_json::from_value::<ResourceSlot>(serde_json::json!({"cpu": "two"})).unwrap_err();
        assert!(e.to_string().contains("\"cpu\"") && e.to_string().contains("\"two\""), "{e}");
        let e = serde_json::from_value::<ResourceSlot>(serde_json::json!({"CPU": "1"})).unwrap_err();
        assert!(e.to_string().contains("invalid slot name \"CPU\""), "{e}");
        let e = serde_json::from_value::<ResourceSlot>(serde_json::json!({"cpu": true})).unwrap_err();
        assert!(e.to_string().contains("expected a decimal"), "{e}");
    }

    #[test]
    fn missing_keys_are_zero() {
        let a = rs(serde_json::json!({"a": "1"}));
        let b = rs(serde_json::json!({"a": "1", "b": "0"}));
        assert_eq!(a, b);
        let diff = a.checked_sub(&rs(serde_json::json!({"b": "5"}))).unwrap();
        assert_eq!(diff.get("a"), d("1"));
        assert_eq!(diff.get("b"), d("-5"));
        assert!(diff.has_negative());
    }

    #[test]
    // the negated and redundant comparisons are the point: they show the partial order
    #[allow(clippy::neg_cmp_op_on_partial_ord, clippy::nonminimal_bool)]
    fn comparisons_are_a_partial_order() {
        let x = rs(serde_json::json!({"a": "3", "b": "200"}));
        let y = rs(serde_json::json!({"a": "4", "b": "100"}));
        assert_eq!(x.partial_cmp(&y), None);
        assert!(!(x <= y) && !(x >= y) && !(x < y) && !(x > y));
        let small = rs(serde_json::json!({"a": "1"}));
        assert!(small < x && small <= y && x > small);
        // a request without GPU keys fits anywhere the GPU slot is non-negative
        let gpu_agent = rs(serde_json::json!({"cpu": "4", "cuda.shares": "4"}));
        let cpu_req = rs(serde_json::json!({"cpu": "2"}));
        assert!(cpu_req.fits_in(&gpu_agent));
        assert!(!gpu_agent.fits_in(&cpu_req));
        assert_eq!(gpu_agent.shortfall(&cpu_req), rs(serde_json::json!({"cpu": "2", "cuda.shares": "4"})));
    }

    #[test]
    fn arithmetic_and_sum() {
        let a = rs(serde_json::json!({"cpu": "1.5", "mem": "1024"}));
        let b = rs(serde_json::json!({"cpu": "0.5", "cuda.shares": "0.25"}));
        let sum = &a + &b;
        assert_eq!(sum, rs(serde_json::json!({"cpu": "2", "mem": "1024", "cuda.shares": "0.25"})));
        assert_eq!(&sum - &b, a);
        assert_eq!(&a * Decimal::from(3), rs(serde_json::json!({"cpu": "4.5", "mem": "3072"})));
        let total: ResourceSlot = [a.clone(), b.clone(), a.clone()].iter().sum();
        assert_eq!(total.get("cpu"), d("3.5"));
        let huge = ResourceSlot::from_pairs([("cpu", Decimal::MAX)]).unwrap();
        assert_eq!(huge.checked_add(&huge).unwrap_err(), Error::Overflow { slot: "cpu".into() });
        assert_eq!(huge.checked_mul(Decimal::from(2)).unwrap_err(), Error::Overflow { slot: "cpu".into() });
        assert_eq!((&huge + &huge).get("cpu"), Decimal::MAX);
    }

    #[test]
    fn normalization_against_known_slots() {
        let known = KnownSlots::new().with("cuda.shares", SlotType::Count).unwrap();
        let req = rs(serde_json::json!({"cpu": "1"}));
        let norm = req.normalize(&known).unwrap();
        assert_eq!(norm.len(), 3);
        assert!(norm.contains("cuda.shares") && norm.get("mem").is_zero());
        let bad = rs(serde_json::json!({"cpu": "1", "tpu.device": "1"}));
        let err = bad.normalize(&known).unwrap_err();
        assert_eq!(err.to_string(), "unknown resource slot \"tpu.device\"");
        assert_eq!(bad.normalize_ignoring_unknown(&known).len(), 3);
        let shmem = rs(serde_json::json!({"shmem": "1"}));
        assert!(shmem.normalize(&known).unwrap_err().to_string().contains("resource_opts.shmem"));
    }

    #[test]
    fn user_input_conversion() {
        let known = KnownSlots::new().with("cuda.shares", SlotType::Count).unwrap();
        let input = serde_json::json!({"cpu": "1.23456", "mem": "2g", "cuda.shares": 0});
        let slots = ResourceSlot::from_user_input(input.as_object().unwrap(), Some(&known)).unwrap();
        assert_eq!(slots.get("cpu"), d("1.235"));
        assert_eq!(slots.get("mem"), Decimal::from(2u64 << 30));
        assert!(slots.contains("cuda.shares") && slots.get("cuda.shares").is_zero());
        assert_eq!(slots.to_humanized(&known), "cpu=1.235 cuda.shares=0 mem=2g");

        let untyped = serde_json::json!({"cuda.smem": "2g", "cuda.smp": "2g"});
        let err = ResourceSlot::from_user_input(untyped.as_object().unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("\"cuda.smp\""), "{err}");

        for (input, needle) in [
            (serde_json::json!({"cpu": -1}), "negative"),
            (serde_json::json!({"mem": "-1g"}), "negative"),
            (serde_json::json!({"mem": 1.5}), "whole number"),
            (serde_json::json!({"mem": "4x"}), "unknown unit"),
            (serde_json::json!({"cpu": [1]}), "expected a number"),
            (serde_json::json!({"gpu": 1}), "unknown resource slot \"gpu\""),
        ] {
            let err = ResourceSlot::from_user_input(input.as_object().unwrap(), Some(&known)).unwrap_err();
            assert!(err.to_string().contains(needle), "{input}: {err}");
        }
    }

    fn slot_strategy() -> impl Strategy<Value = ResourceSlot> {
        let names = prop::sample::select(vec!["cpu", "mem", "cuda.shares", "cuda.device", "tpu.device"]);
        let amount =
            (-1_000_000_000_000i64..1_000_000_000_000i64, 0u32..4).prop_map(|(m, scale)| Decimal::new(m, scale));
        prop::collection::btree_map(names, amount, 0..5).prop_map(|m| ResourceSlot::from_pairs(m).expect("valid names"))
    }

    proptest! {
        #[test]
        fn add_then_sub_is_identity(a in slot_strategy(), b in slot_strategy()) {
            prop_assert_eq!(a.checked_add(&b).unwrap().checked_sub(&b).unwrap(), a);
        }

        #[test]
        fn fits_in_agrees_with_subtraction(req in slot_strategy(), cap in slot_strategy()) {
            let left = cap.checked_sub(&req).unwrap();
            prop_assert_eq!(req.fits_in(&cap), !left.has_negative());
            prop_assert_eq!(req.fits_in(&cap), req <= cap);
            prop_assert_eq!(req.fits_in(&cap), req.shortfall(&cap).is_empty());
            // whatever is short, adding the shortfall makes it fit
            let topped = cap.checked_add(&req.shortfall(&cap)).unwrap();
            prop_assert!(req.fits_in(&topped));
        }

        #[test]
        fn json_round_trips(a in slot_strategy()) {
            let text = serde_json::to_string(&a).unwrap();
            let values: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
            for v in values.values() {
                let v = v.as_str().expect("values are strings");
                prop_assert!(!v.contains(['e', 'E']), "exponent in {}", v);
            }
            let back: ResourceSlot = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back, a);
        }

        #[test]
        fn scalar_multiplication_distributes(a in slot_strategy(), b in slot_strategy(), k in -100i64..100) {
            let k = Decimal::from(k);
            let lhs = a.checked_add(&b).unwrap().checked_mul(k).unwrap();
            let rhs = a.checked_mul(k).unwrap().checked_add(&b.checked_mul(k).unwrap()).unwrap();
            prop_assert_eq!(lhs, rhs);
        }
    }
}
