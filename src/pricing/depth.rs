//! One side of a source order book and the source price it gives for a trade size: the worst
//! level needed to fill the size (full amount) or the size-weighted average of the levels
//! needed (VWAP), exactly.

use rust_decimal::Decimal;

use super::decimal::cmp;
use super::margin::QuoteError;

/// The largest size (inclusive) of a book level or a band, in units of the instrument: keeps a
/// band's notional (size × price, at most 10^27) inside `Decimal`'s range.
pub const MAX_SIZE: Decimal = Decimal::from_parts(0xA4C6_8000, 0x38D7E, 0, false, 0); // 1e15

/// One level of a side of the book: `size` available at `price`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub price: Decimal,
    pub size: Decimal,
}

/// What the source says about one side of the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Book<'a> {
    /// Only the top-of-book price, no size: every size is priced at it.
    Top(Decimal),
    /// Levels from the best price outward (the first is the top of book), sizes positive.
    Levels(&'a [Level]),
}

/// How a band's source price is taken from the book.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LadderPricing {
    /// The price of the worst level the band's size reaches: one price for the whole amount.
    #[default]
    FullAmount,
    /// The size-weighted average price of the levels the band's size takes.
    Vwap,
}

impl LadderPricing {
    pub const NAMES: [&'static str; 2] = ["full_amount", "vwap"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full_amount" => Some(Self::FullAmount),
            "vwap" => Some(Self::Vwap),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::FullAmount => "full_amount",
            Self::Vwap => "vwap",
        }
    }
}

/// The source price of one side for one size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourcePrice {
    /// An exact decimal.
    Exact(Decimal),
    /// `num / den` (`den > 0`) when the average has no finite decimal form that fits (a VWAP
    /// over a size such as 3); kept as a fraction so that rounding onto the tick stays exact.
    Ratio { num: Decimal, den: Decimal },
}

/// The source price of `book` for `size` (> 0); `Ok(None)` when the levels hold less than
/// `size` (the book is too thin for it).
pub fn source_price(
    book: Book<'_>,
    size: Decimal,
    pricing: LadderPricing,
) -> Result<Option<SourcePrice>, QuoteError> {
    SideWalk::new(book, pricing).price_for(size)
}

/// A walk down one side of the book for ascending sizes: each level is taken in once, however
/// many bands there are (a ladder asks for its bands' sizes in order).
pub struct SideWalk<'a> {
    book: Book<'a>,
    pricing: LadderPricing,
    /// Levels wholly taken by the sizes asked so far.
    next: usize,
    /// Their total size and `Σ price × size`.
    filled: Decimal,
    notional: Decimal,
}

impl<'a> SideWalk<'a> {
    pub fn new(book: Book<'a>, pricing: LadderPricing) -> Self {
        SideWalk {
            book,
            pricing,
            next: 0,
            filled: Decimal::ZERO,
            notional: Decimal::ZERO,
        }
    }

    /// The source price for `size`; sizes must not decrease from call to call.
    pub fn price_for(&mut self, size: Decimal) -> Result<Option<SourcePrice>, QuoteError> {
        let levels = match self.book {
            Book::Top(price) => return Ok(Some(SourcePrice::Exact(price))),
            Book::Levels(levels) => levels,
        };
        let overflow = || QuoteError::Overflow;
        let vwap = self.pricing == LadderPricing::Vwap;
        while let Some(level) = levels.get(self.next) {
            let after = self.filled.checked_add(level.size).ok_or_else(overflow)?;
            if cmp(after, size).is_ge() {
                // This level completes `size` (and possibly more).
                if !vwap {
                    return Ok(Some(SourcePrice::Exact(level.price)));
                }
                let take = size.checked_sub(self.filled).ok_or_else(overflow)?;
                let notional = take
                    .checked_mul(level.price)
                    .and_then(|n| self.notional.checked_add(n))
                    .ok_or_else(overflow)?;
                return average(notional, size).map(Some);
            }
            if vwap {
                self.notional = level
                    .size
                    .checked_mul(level.price)
                    .and_then(|n| self.notional.checked_add(n))
                    .ok_or_else(overflow)?;
            }
            self.filled = after;
            self.next += 1;
        }
        Ok(None)
    }
}

/// `notional / size`, as a decimal when the division is exact, else as the fraction.
fn average(notional: Decimal, size: Decimal) -> Result<SourcePrice, QuoteError> {
    if let Some(q) = notional.checked_div(size)
        && q.checked_mul(size)
            .is_some_and(|back| cmp(back, notional).is_eq())
    {
        return Ok(SourcePrice::Exact(q));
    }
    Ok(SourcePrice::Ratio {
        num: notional,
        den: size,
    })
}

/// `floor(x / d)` for `d > 0`, exactly: the decimal quotient is rounded to 28 digits, so the
/// last unit is repaired with exact products.
pub fn floor_div(x: Decimal, d: Decimal) -> Option<Decimal> {
    let mut q = x.checked_div(d)?.floor();
    while cmp(q.checked_mul(d)?, x).is_gt() {
        q -= Decimal::ONE;
    }
    while cmp(q.checked_add(Decimal::ONE)?.checked_mul(d)?, x).is_le() {
        q += Decimal::ONE;
    }
    Some(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn book(levels: &[(&str, &str)]) -> Vec<Level> {
        levels
            .iter()
            .map(|(p, s)| Level {
                price: d(p),
                size: d(s),
            })
            .collect()
    }

    #[test]
    fn full_amount_takes_the_worst_level_reached_and_vwap_the_average() {
        let bids = book(&[("1.0010", "1"), ("1.0008", "2"), ("1.0005", "5")]);
        let b = Book::Levels(&bids);
        let full = |s| source_price(b, d(s), LadderPricing::FullAmount).unwrap();
        let vwap = |s| source_price(b, d(s), LadderPricing::Vwap).unwrap();
        assert_eq!(full("1"), Some(SourcePrice::Exact(d("1.0010"))));
        assert_eq!(full("1.5"), Some(SourcePrice::Exact(d("1.0008"))));
        assert_eq!(full("8"), Some(SourcePrice::Exact(d("1.0005"))));
        assert_eq!(full("8.01"), None);
        // (1 × 1.0010 + 1 × 1.0008) / 2
        assert_eq!(vwap("2"), Some(SourcePrice::Exact(d("1.0009"))));
        // (1.0010 + 2.0016) / 3 = 3.0026 / 3: no finite decimal, kept as the fraction.
        assert_eq!(
            vwap("3"),
            Some(SourcePrice::Ratio {
                num: d("3.0026"),
                den: d("3")
            })
        );
        assert_eq!(vwap("9"), None);
        let top = Book::Top(d("1.0010"));
        assert_eq!(
            source_price(top, d("1000000"), LadderPricing::Vwap).unwrap(),
            Some(SourcePrice::Exact(d("1.0010")))
        );
    }

    #[test]
    fn max_size_is_one_quadrillion() {
        assert_eq!(MAX_SIZE, d("1000000000000000"));
    }

    #[test]
    fn floor_div_is_exact_where_the_decimal_quotient_rounds_up() {
        assert_eq!(floor_div(d("3.0026"), d("0.0003")), Some(d("10008")));
        assert_eq!(floor_div(d("-1"), d("3")), Some(d("-1")));
        assert_eq!(floor_div(d("6"), d("3")), Some(d("2")));
        // 1 - 1e-27 divided by 1: the quotient rounds to 1 at 28 digits; the floor is 0.
        let x = d("0.999999999999999999999999999");
        assert_eq!(floor_div(x, d("1")), Some(d("0")));
        let third = d("0.3333333333333333333333333333");
        assert_eq!(floor_div(d("1"), third), Some(d("3")));
    }
}
