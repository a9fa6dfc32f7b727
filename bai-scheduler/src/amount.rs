//! Exact amounts for the planner's inner loop.
//!
//! The planner works on dense vectors of one of two exact representations: `i128` fixed point
//! with one scale for the whole snapshot (fast: one machine comparison per slot), or
//! [`Decimal`] itself when some value does not fit the fixed-point range. Both give the same
//! plan; the choice is made per snapshot.

use std::fmt::Debug;
use std::hash::Hash;

use bai_core::Decimal;

/// Fixed-point values are kept below 2^100 so that sums of many of them stay far from
/// `i128::MAX`.
const FIXED_LIMIT: i128 = 1 << 100;

pub(crate) trait Amount: Copy + Ord + Debug + Hash {
    const ZERO: Self;
    const MAX: Self;
    /// The value in this representation at `scale` decimal places, if exactly representable.
    fn from_decimal(d: Decimal, scale: u32) -> Option<Self>;
    fn to_decimal(self, scale: u32) -> Decimal;
    fn plus(self, other: Self) -> Self;
    fn minus(self, other: Self) -> Self;
    fn negated(self) -> Self;
    fn is_zero(self) -> bool {
        self == Self::ZERO
    }
}

impl Amount for i128 {
    const ZERO: Self = 0;
    const MAX: Self = i128::MAX;

    fn from_decimal(d: Decimal, scale: u32) -> Option<Self> {
        let shift = scale.checked_sub(d.scale())?;
        let v = d.mantissa().checked_mul(10i128.checked_pow(shift)?)?;
        (v.abs() < FIXED_LIMIT).then_some(v)
    }

    fn to_decimal(self, scale: u32) -> Decimal {
        let (mut v, mut s) = (self, scale);
        loop {
            if let Ok(d) = Decimal::try_from_i128_with_scale(v, s) {
                return d.normalize();
            }
            if s == 0 {
                return if v > 0 { Decimal::MAX } else { Decimal::MIN };
            }
            v /= 10;
            s -= 1;
        }
    }

    fn plus(self, other: Self) -> Self {
        self.saturating_add(other)
    }

    fn minus(self, other: Self) -> Self {
        self.saturating_sub(other)
    }

    fn negated(self) -> Self {
        self.saturating_neg()
    }
}

impl Amount for Decimal {
    const ZERO: Self = Decimal::ZERO;
    const MAX: Self = Decimal::MAX;

    fn from_decimal(d: Decimal, _scale: u32) -> Option<Self> {
        Some(d)
    }

    fn to_decimal(self, _scale: u32) -> Decimal {
        self
    }

    fn plus(self, other: Self) -> Self {
        self.saturating_add(other)
    }

    fn minus(self, other: Self) -> Self {
        self.saturating_sub(other)
    }

    fn negated(self) -> Self {
        -self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn fixed_point_round_trips_and_refuses_what_does_not_fit() {
        let d = Decimal::from_str("0.5").unwrap();
        assert_eq!(i128::from_decimal(d, 3), Some(500));
        assert_eq!(500i128.to_decimal(3), d);
        assert_eq!(i128::from_decimal(Decimal::from_str("0.0001").unwrap(), 3), None);
        assert_eq!(i128::from_decimal(Decimal::MAX, 10), None);
        assert_eq!(i128::MAX.to_decimal(0), Decimal::MAX);
        assert_eq!(Decimal::from_decimal(Decimal::MAX, 10), Some(Decimal::MAX));
    }
}
