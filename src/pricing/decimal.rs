//! Exact decimal helpers: rounding onto a tick grid and fixed-point formatting.

use rust_decimal::{Decimal, RoundingStrategy};

/// The largest price the service accepts (inclusive). Bounding prices keeps every intermediate
/// value of the margin engine far inside `Decimal`'s 96-bit range.
pub const MAX_PRICE: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0); // 1e12

/// Powers of ten that fit an `i128` together with a 96-bit mantissa.
const POW10: [i128; 13] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
];

/// `a.cmp(&b)`, exact, without `rust_decimal`'s general rescaling in the common case: both
/// mantissas are brought to the larger scale in an `i128`; when that would overflow (only for
/// values far outside the price range) it falls back to `Decimal::cmp`.
#[inline]
pub fn cmp(a: Decimal, b: Decimal) -> std::cmp::Ordering {
    let (sa, sb) = (a.scale(), b.scale());
    let diff = sa.abs_diff(sb) as usize;
    let (ma, mb) = (a.mantissa(), b.mantissa());
    let scaled = if diff >= POW10.len() {
        None
    } else if sa >= sb {
        mb.checked_mul(POW10[diff]).map(|mb| (ma, mb))
    } else {
        ma.checked_mul(POW10[diff]).map(|ma| (ma, mb))
    };
    match scaled {
        Some((ma, mb)) => ma.cmp(&mb),
        None => a.cmp(&b),
    }
}

#[inline]
pub fn min(a: Decimal, b: Decimal) -> Decimal {
    if cmp(a, b).is_le() { a } else { b }
}

#[inline]
pub fn max(a: Decimal, b: Decimal) -> Decimal {
    if cmp(a, b).is_ge() { a } else { b }
}

/// A tick size, with a fast path for powers of ten (0.00001, 0.01, 1) where rounding is a
/// digit truncation instead of a division.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickSize {
    size: Decimal,
    /// `Some(dp)` when `size == 10^-dp`.
    decimal_places: Option<u32>,
}

impl TickSize {
    /// `size` must be positive; callers validate that.
    pub fn new(size: Decimal) -> Self {
        let size = size.normalize();
        let decimal_places = (size.mantissa() == 1).then(|| size.scale());
        Self {
            size,
            decimal_places,
        }
    }

    pub fn size(&self) -> Decimal {
        self.size
    }

    /// The largest multiple of the tick that is `<= x` (rounds toward −∞).
    pub fn floor(&self, x: Decimal) -> Option<Decimal> {
        if let Some(dp) = self.decimal_places {
            return Some(x.round_dp_with_strategy(dp, RoundingStrategy::ToNegativeInfinity));
        }
        let mut q = x.checked_div(self.size)?.floor();
        // The quotient was rounded to 28 significant digits; repair the last unit exactly.
        while cmp(q.checked_mul(self.size)?, x).is_gt() {
            q -= Decimal::ONE;
        }
        while cmp((q + Decimal::ONE).checked_mul(self.size)?, x).is_le() {
            q += Decimal::ONE;
        }
        q.checked_mul(self.size).map(|v| v.normalize())
    }

    /// The smallest multiple of the tick that is `>= x` (rounds toward +∞).
    pub fn ceil(&self, x: Decimal) -> Option<Decimal> {
        self.floor(-x).map(|v| -v)
    }

    /// True when `x` lies exactly on the grid.
    pub fn is_multiple(&self, x: Decimal) -> bool {
        x.checked_rem(self.size).is_some_and(|r| r.is_zero())
    }
}

/// Appends `value` with exactly `precision` decimal places ("1.0841" at precision 5 is "1.08410").
/// `value` must not carry more than `precision` decimal places (tick multiples never do: the
/// config validator checks the tick fits the precision); extra places are rounded half-even.
pub fn write_fixed(out: &mut Vec<u8>, value: Decimal, precision: u32) {
    // Fast path: the mantissa brought to `precision` places fits a u64 (every realistic price).
    let scale = value.scale();
    let small = (scale <= precision)
        .then(|| u64::try_from(value.mantissa().unsigned_abs()).ok())
        .flatten()
        .and_then(|m| m.checked_mul(10u64.checked_pow(precision - scale)?));
    let mut buf = itoa::Buffer::new();
    let digits = match small {
        Some(m) => {
            if value.is_sign_negative() && m != 0 {
                out.push(b'-');
            }
            buf.format(m).as_bytes()
        }
        None => {
            let mut v = value;
            if v.scale() > precision {
                v = v.round_dp(precision);
            }
            v.rescale(precision);
            if v.scale() != precision {
                // Not representable at this precision inside 96 bits: fall back to Display.
                out.extend_from_slice(value.to_string().as_bytes());
                return;
            }
            let mantissa = v.mantissa();
            if mantissa < 0 {
                out.push(b'-');
            }
            buf.format(mantissa.unsigned_abs()).as_bytes()
        }
    };
    let p = precision as usize;
    if p == 0 {
        out.extend_from_slice(digits);
    } else if digits.len() > p {
        let (int, frac) = digits.split_at(digits.len() - p);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', p - digits.len()));
        out.extend_from_slice(digits);
    }
}

/// `write_fixed` into a new `String`.
pub fn to_fixed(value: Decimal, precision: u32) -> String {
    let mut out = Vec::with_capacity(24);
    write_fixed(&mut out, value, precision);
    String::from_utf8(out).expect("ascii digits")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn fast_cmp_agrees_with_decimal_cmp() {
        let values = [
            "0",
            "-0",
            "1",
            "-1",
            "1.0",
            "1.00000000000000000000000001",
            "0.99999",
            "1.08412",
            "1.084120",
            "-1.08412",
            "79228162514264337593543950335",
            "-79228162514264337593543950335",
            "0.0000000000000000000000000001",
            "6000.25",
            "6000.250000000001",
            "97005",
        ];
        for a in values {
            for b in values {
                let (x, y) = (d(a), d(b));
                assert_eq!(cmp(x, y), x.cmp(&y), "{a} vs {b}");
                assert_eq!(min(x, y), x.min(y), "min {a} {b}");
                assert_eq!(max(x, y), x.max(y), "max {a} {b}");
            }
        }
    }

    #[test]
    fn max_price_is_one_trillion() {
        assert_eq!(MAX_PRICE, d("1000000000000"));
    }

    #[test]
    fn floor_and_ceil_on_power_of_ten_ticks() {
        let t = TickSize::new(d("0.00001"));
        assert_eq!(t.floor(d("1.084129")), Some(d("1.08412")));
        assert_eq!(t.ceil(d("1.084121")), Some(d("1.08413")));
        assert_eq!(t.ceil(d("1.08412")), Some(d("1.08412")));
        assert_eq!(t.floor(d("-0.000001")), Some(d("-0.00001")));
    }

    #[test]
    fn floor_and_ceil_on_quarter_ticks() {
        let t = TickSize::new(d("0.25"));
        assert_eq!(t.floor(d("5012.37")), Some(d("5012.25")));
        assert_eq!(t.ceil(d("5012.37")), Some(d("5012.50")));
        assert_eq!(t.floor(d("5012.50")), Some(d("5012.5")));
        assert_eq!(t.ceil(d("5012.5")), Some(d("5012.5")));
    }

    #[test]
    fn rounding_is_exact_for_ticks_with_non_terminating_quotients() {
        let t = TickSize::new(d("0.03"));
        assert_eq!(t.floor(d("0.09")), Some(d("0.09")));
        assert_eq!(t.floor(d("0.0899999999999999999")), Some(d("0.06")));
        assert_eq!(t.ceil(d("0.0900000000000000001")), Some(d("0.12")));
    }

    #[test]
    fn fixed_formatting_pads_and_places_the_point() {
        assert_eq!(to_fixed(d("1.0841"), 5), "1.08410");
        assert_eq!(to_fixed(d("0.001"), 5), "0.00100");
        assert_eq!(to_fixed(d("151"), 3), "151.000");
        assert_eq!(to_fixed(d("42"), 0), "42");
        assert_eq!(to_fixed(d("-1.5"), 2), "-1.50");
        assert_eq!(to_fixed(d("0"), 2), "0.00");
        assert_eq!(to_fixed(d("-0.00"), 2), "0.00");
        assert_eq!(to_fixed(d("1.2345678"), 4), "1.2346");
        assert_eq!(
            to_fixed(d("79228162514264337593543950335"), 2),
            "79228162514264337593543950335"
        );
        assert_eq!(
            to_fixed(d("123456789012.5"), 12),
            "123456789012.500000000000"
        );
    }
}
