//! Human-readable byte sizes in powers of 1024 (`"4g"`, `"512m"`, `"1.5T"`, `"4GiB"`).

use std::fmt;
use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Unit letters in increasing powers of 1024, starting at KiB.
const UNITS: [char; 6] = ['k', 'm', 'g', 't', 'p', 'e'];

/// Endings accepted after the scale letter, tried in this order (all lowercase).
const ENDINGS: [&str; 6] = ["ibytes", "ibyte", "ib", "bytes", "byte", "b"];

/// A size in bytes that parses and prints the way Backend.AI users write sizes.
///
/// Parsing is case-insensitive and uses powers of 1024 whether or not the unit has an `i`:
/// `"4g"`, `"4G"`, `"4GB"` and `"4GiB"` are all 2³² bytes. Fractions are allowed with a unit and
/// truncated to whole bytes (`"1.1k"` is 1126); `_` separators and surrounding whitespace are
/// ignored. Negative numbers, unknown units, fractional plain byte counts and values beyond
/// `u64::MAX` are errors that name the input.
///
/// ```
/// use bai_core::BinarySize;
///
/// let size: BinarySize = "1.5T".parse()?;
/// assert_eq!(size.bytes(), 1_649_267_441_664);
/// assert_eq!("4GiB".parse::<BinarySize>()?.bytes(), 4 << 30);
/// assert_eq!(BinarySize::new(512 << 20).to_string(), "512 MiB");
/// assert_eq!(BinarySize::new(512 << 20).to_short_string(), "512m");
/// assert!("-1g".parse::<BinarySize>().is_err());
/// # Ok::<(), bai_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BinarySize(u64);

impl BinarySize {
    /// A size of `bytes` bytes.
    pub const fn new(bytes: u64) -> Self {
        Self(bytes)
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// Parses a size; the same as [`str::parse`].
    pub fn parse(input: &str) -> Result<Self> {
        input.parse()
    }

    /// The compact lowercase form without a space, as in `"930"`, `"1k"`, `"512k"`, `"1.5g"`.
    ///
    /// Values are rounded to two decimals (half to even), so this form is exact only for sizes
    /// that are a whole or two-decimal multiple of their unit. It parses back with
    /// [`BinarySize::parse`].
    pub fn to_short_string(self) -> String {
        match self.scaled() {
            None => self.0.to_string(),
            Some((value, unit)) => format!("{value}{unit}"),
        }
    }

    /// The size in a fixed unit: `'k'`, `'m'`, `'g'`, `'t'`, `'p'`, `'e'` or `' '` for bytes,
    /// e.g. `1024k` for 1 MiB, `0.5m` for 512 KiB.
    pub fn to_unit_string(self, unit: char) -> Result<String> {
        let unit = unit.to_ascii_lowercase();
        if unit == ' ' {
            return Ok(self.0.to_string());
        }
        let Some(power) = UNITS.iter().position(|u| *u == unit) else {
            return Err(Error::InvalidSize {
                input: unit.to_string(),
                reason: "unknown unit for formatting: expected one of k, m, g, t, p, e or a space".into(),
            });
        };
        Ok(format!("{}{unit}", self.in_unit(power)))
    }

    /// The value divided by the largest power of 1024 not above it, rounded to two decimals,
    /// with its unit letter; `None` below 1024.
    fn scaled(self) -> Option<(Decimal, char)> {
        if self.0 < 1024 {
            return None;
        }
        let mut power = 0usize;
        let mut rest = self.0;
        while rest >= 1024 * 1024 && power + 1 < UNITS.len() {
            rest /= 1024;
            power += 1;
        }
        Some((self.in_unit(power), UNITS[power]))
    }

    /// The value in unit `UNITS[power]`, rounded half-even to two decimals; rounded down
    /// instead when rounding up would print a size beyond `u64::MAX` (which could not be parsed
    /// back).
    fn in_unit(self, power: usize) -> Decimal {
        let divisor = Decimal::from(1u64 << (10 * (power + 1)));
        let exact = Decimal::from(self.0) / divisor;
        let rounded = exact.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven);
        let fits = rounded.checked_mul(divisor).is_some_and(|b| b <= Decimal::from(u64::MAX));
        let value = if fits { rounded } else { exact.trunc_with_scale(2) };
        value.normalize()
    }
}

impl From<u64> for BinarySize {
    fn from(bytes: u64) -> Self {
        Self(bytes)
    }
}

impl From<BinarySize> for u64 {
    fn from(size: BinarySize) -> Self {
        size.0
    }
}

impl From<BinarySize> for Decimal {
    fn from(size: BinarySize) -> Self {
        Decimal::from(size.0)
    }
}

/// `1 byte`, `N bytes` below 1 KiB, else `<value> XiB` with up to two decimals
/// (`103.45 KiB`, `1000 MiB`).
impl fmt::Display for BinarySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scaled() {
            None if self.0 == 1 => f.write_str("1 byte"),
            None => write!(f, "{} bytes", self.0),
            Some((value, unit)) => write!(f, "{value} {}iB", unit.to_ascii_uppercase()),
        }
    }
}

impl FromStr for BinarySize {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let err = |reason: &str| Error::InvalidSize { input: input.to_string(), reason: reason.to_string() };
        let cleaned: String = input.trim().chars().filter(|c| *c != '_').collect();
        if cleaned.is_empty() {
            return Err(err("empty size: expected a number with an optional k/m/g/t/p/e suffix"));
        }
        if cleaned.starts_with('-') {
            return Err(err("sizes cannot be negative"));
        }
        if cleaned.bytes().all(|b| b.is_ascii_digit()) {
            return cleaned.parse::<u64>().map(Self).map_err(|_| err("too large: sizes are limited to 16 EiB"));
        }
        let lower = cleaned.to_ascii_lowercase();
        let stem = ENDINGS.iter().find_map(|ending| lower.strip_suffix(ending)).unwrap_or(&lower);
        let (number, scale) = match stem.chars().last() {
            Some(c) if c.is_ascii_digit() || c == '.' => (stem, 1u64),
            Some(c) => {
                let number = &stem[..stem.len() - c.len_utf8()];
                let scale = match c {
                    ' ' => 1,
                    _ => match UNITS.iter().position(|u| *u == c) {
                        Some(power) => 1u64 << (10 * (power + 1)),
                        None if matches!(c, 'z' | 'y') => return Err(err("too large: sizes are limited to 16 EiB")),
                        None => return Err(err("unknown unit: expected a number with an optional k/m/g/t/p/e suffix")),
                    },
                };
                (number, scale)
            }
            None => return Err(err("missing number before the unit")),
        };
        let number = number.trim();
        if number.is_empty() {
            return Err(err("missing number before the unit"));
        }
        if !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(err("expected a number with an optional k/m/g/t/p/e suffix"));
        }
        let value = Decimal::from_str(number).map_err(|_| err("not a number"))?;
        if scale == 1 && !value.fract().is_zero() {
            return Err(err("fractional bytes are not allowed"));
        }
        let bytes = value
            .checked_mul(Decimal::from(scale))
            .ok_or_else(|| err("too large: sizes are limited to 16 EiB"))?
            .trunc();
        bytes.to_u64().map(Self).ok_or_else(|| err("too large: sizes are limited to 16 EiB"))
    }
}

/// Serialises as a plain number of bytes.
impl Serialize for BinarySize {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

/// Accepts a number of bytes or any string [`BinarySize::parse`] accepts.
impl<'de> Deserialize<'de> for BinarySize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bytes(b) => Ok(Self(b)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> u64 {
        s.parse::<BinarySize>().unwrap_or_else(|e| panic!("{s}: {e}")).bytes()
    }

    #[test]
    fn parses_the_reference_vectors() {
        assert_eq!(p("1 byte"), 1);
        assert_eq!(p("12_345 bytes"), 12345);
        assert_eq!(p("12345 B"), 12345);
        assert_eq!(p("1 KiB"), 1024);
        assert_eq!(p("2 KiBytes"), 2048);
        assert_eq!(p("1.1k"), 1126);
        assert_eq!(p("124.32 KiB"), 127303);
        assert_eq!(p("1g"), 1 << 30);
        assert_eq!(p("0.5m"), 524288);
        assert_eq!(p("512k"), 524288);
        assert_eq!(p("1.5T"), 1649267441664);
        assert_eq!(p("4GB"), 1 << 32);
        assert_eq!(p("4GiB"), 1 << 32);
        assert_eq!(p("4g"), 1 << 32);
        assert_eq!(p("512m"), 512 << 20);
        assert_eq!(p(" 42 "), 42);
        assert_eq!(p("0"), 0);
        assert_eq!(p("15e"), 15 << 60);
    }

    #[test]
    fn rejects_bad_input_naming_it() {
        for (input, reason) in [
            ("", "empty"),
            ("-1g", "negative"),
            ("-5", "negative"),
            ("4x", "unknown unit"),
            ("4 xb", "unknown unit"),
            ("1.1", "fractional bytes"),
            ("g", "missing number"),
            ("1z", "too large"),
            ("16e", "too large"),
            ("99999999999999999999", "too large"),
            ("1.2.3k", "not a number"),
            ("1e3k", "expected a number"),
        ] {
            let err = input.parse::<BinarySize>().unwrap_err().to_string();
            assert!(err.contains(&format!("{input:?}")), "{err}");
            assert!(err.contains(reason), "{input}: {err}");
        }
    }

    #[test]
    fn formats_like_the_reference() {
        assert_eq!(BinarySize::new(1).to_string(), "1 byte");
        assert_eq!(BinarySize::new(930).to_string(), "930 bytes");
        assert_eq!(BinarySize::new(105933).to_string(), "103.45 KiB");
        assert_eq!(BinarySize::new(1048576123).to_string(), "1000 MiB");
        assert_eq!(BinarySize::new(1 << 30).to_string(), "1 GiB");
        assert_eq!(BinarySize::new(930).to_short_string(), "930");
        assert_eq!(BinarySize::new(1024).to_short_string(), "1k");
        assert_eq!(BinarySize::new(524288).to_short_string(), "512k");
        assert_eq!(BinarySize::new(1 << 20).to_short_string(), "1m");
        assert_eq!(BinarySize::new(1 << 30).to_short_string(), "1g");
        assert_eq!(BinarySize::new(u64::MAX).to_short_string(), "15.99e");
        // rounding up would print 16e, which does not parse: truncated instead
        assert_eq!(BinarySize::new(18440979466186517382).to_short_string(), "15.99e");
        assert_eq!(BinarySize::new(1 << 20).to_unit_string('k').unwrap(), "1024k");
        assert_eq!(BinarySize::new(524288).to_unit_string('m').unwrap(), "0.5m");
        assert_eq!(BinarySize::new(524288).to_unit_string(' ').unwrap(), "524288");
        assert!(BinarySize::new(1).to_unit_string('q').is_err());
    }

    #[test]
    fn serde_accepts_numbers_and_strings() {
        let n: BinarySize = serde_json::from_str("1024").unwrap();
        let s: BinarySize = serde_json::from_str("\"1k\"").unwrap();
        assert_eq!(n, s);
        assert_eq!(serde_json::to_string(&s).unwrap(), "1024");
        let err = serde_json::from_str::<BinarySize>("\"1q\"").unwrap_err();
        assert!(err.to_string().contains("unknown unit"), "{err}");
    }

    proptest! {
        #[test]
        fn exact_multiples_round_trip(mantissa in 1u64..1024, power in 0u32..6) {
            let size = BinarySize::new(mantissa << (10 * power));
            prop_assert_eq!(BinarySize::parse(&size.to_short_string()).unwrap(), size);
            prop_assert_eq!(BinarySize::parse(&size.to_string()).unwrap(), size);
        }

        #[test]
        fn any_size_round_trips_within_rounding(bytes in any::<u64>()) {
            let size = BinarySize::new(bytes);
            for text in [size.to_short_string(), size.to_string()] {
                let back = BinarySize::parse(&text).unwrap().bytes();
                // two decimals of the chosen unit: at most 0.005 unit (+1 byte of truncation)
                let unit = size.scaled().map_or(1u128, |(_, u)| {
                    1u128 << (10 * (UNITS.iter().position(|x| *x == u).unwrap() + 1))
                });
                let diff = (back as i128 - bytes as i128).unsigned_abs();
                // half a hundredth of the unit when rounding; a whole hundredth when rounding
                // up would pass u64::MAX and the value is truncated instead (+1 byte either way)
                let tolerance = if bytes as u128 + unit / 200 > u64::MAX as u128 { unit / 100 } else { unit / 200 } + 1;
                prop_assert!(diff <= tolerance, "{} -> {} -> {}", bytes, text, back);
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,16}") {
            let _ = BinarySize::parse(&s);
        }
    }
}
