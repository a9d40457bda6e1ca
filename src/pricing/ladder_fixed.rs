//! The ladder formula on `i128` integers at two common decimal scales (one for prices, one for
//! sizes), the way `margin::fixed` prices one quote: several times cheaper than `Decimal`
//! arithmetic, and exact (every input is brought to the scales without rounding; a VWAP is a
//! fraction `notional / size` throughout). When a value does not fit, the caller prices in
//! `Decimal` (`ladder::quote_ladder_decimal`); both give identical results (property-tested).
//!
//! Every input is kept below 2^60 at its scale ([`at`]), so a product of two is below 2^120, a
//! sum of up to 50 such products below 2^126, and the formula cannot overflow an `i128`: it uses
//! plain arithmetic, not checked calls (which are library calls for `i128`).

use rust_decimal::Decimal;

use super::band::{BandQuote, Ladder};
use super::depth::{Book, LadderPricing, Level};
use super::instrument::Instrument;
use super::margin::QuoteError;
use super::markup::Amount;

/// Beyond these scales the inputs would rarely fit below 2^60: price in `Decimal` at once.
const MAX_PRICE_SCALE: u32 = 14;
const MAX_SIZE_SCALE: u32 = 6;

const POW10: [i128; 29] = {
    let mut t = [1i128; 29];
    let mut i = 1;
    while i < 29 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

fn pow10(n: u32) -> Option<i128> {
    POW10.get(n as usize).copied()
}

const LIMIT: u128 = 1 << 60;

/// `d` as an integer at `scale` (>= its own), or `None` when that is 2^60 or more.
#[inline]
fn at(d: Decimal, scale: u32) -> Option<i128> {
    let m = d.mantissa();
    let e = scale.checked_sub(d.scale())?;
    if m.unsigned_abs() >= LIMIT || e > 18 {
        return None;
    }
    // Below 2^60 × 10^18 < 2^120: no overflow.
    let v = m * pow10(e)?;
    (v.unsigned_abs() < LIMIT).then_some(v)
}

/// One side of the book at the common scales, walked once for ascending band sizes.
struct Side<'a> {
    top: i128,
    levels: Option<&'a [Level]>,
    next: usize,
    filled: i128,
    notional: i128,
}

impl<'a> Side<'a> {
    fn new(book: Book<'a>, price_scale: u32) -> Option<Self> {
        let (top, levels) = match book {
            Book::Top(p) => (at(p, price_scale)?, None),
            Book::Levels(l) => (0, Some(l)),
        };
        Some(Side {
            top,
            levels,
            next: 0,
            filled: 0,
            notional: 0,
        })
    }

    /// `(num, den)`: the source price for `size` is `num / den`, `num` at the price scale plus
    /// the size scale, `den` at the size scale. `Some(None)` when too thin; `None` on overflow.
    fn price_for(
        &mut self,
        size: i128,
        one: i128,
        scales: (u32, u32),
        vwap: bool,
    ) -> Option<Option<(i128, i128)>> {
        let Some(levels) = self.levels else {
            return Some(Some((self.top * one, one)));
        };
        let (ps, zs) = scales;
        while let Some(level) = levels.get(self.next) {
            let price = at(level.price, ps)?;
            let level_size = at(level.size, zs)?;
            let after = self.filled + level_size;
            if after >= size {
                if !vwap {
                    return Some(Some((price * one, one)));
                }
                let take = size - self.filled;
                return Some(Some((self.notional + take * price, size)));
            }
            if vwap {
                self.notional += level_size * price;
            }
            self.filled = after;
            self.next += 1;
        }
        Some(None)
    }
}

/// `floor(a / b)` for `b > 0`; a hardware division when both fit 64 bits (an `i128` division
/// is a library call several times slower).
#[inline]
fn floor_div(a: i128, b: i128) -> i128 {
    match (i64::try_from(a), i64::try_from(b)) {
        (Ok(a), Ok(b)) => i128::from(a.div_euclid(b)),
        _ => a.div_euclid(b),
    }
}

/// [`super::ladder::quote_ladder`] in integers; `None` when a value does not fit.
pub(super) fn quote_ladder(
    instrument: &Instrument,
    ladder: &Ladder,
    mid: Decimal,
    bids: Book<'_>,
    asks: Book<'_>,
    out: &mut Vec<BandQuote>,
) -> Option<Result<(), QuoteError>> {
    let tick = instrument.tick.size();
    // The largest scale of any band's amounts for this mid: a markup in price units keeps its
    // own; one relative to the mid has at most the factor's and the mid's together.
    let amount_scale = ladder
        .bands
        .iter()
        .flat_map(|b| [b.rule.bid, b.rule.ask, b.rule.min_spread])
        .map(|a| match a {
            Amount::Price(p) => p.scale(),
            Amount::OfMid(f) => f.scale() + mid.scale(),
        })
        .max()?;
    // One decimal place more than any price-like value makes half a minimum spread exact.
    let book_scale = |b: Book<'_>| match b {
        Book::Top(p) => (p.scale(), 0),
        Book::Levels(l) => l.iter().fold((0, 0), |(ps, zs), x| {
            (ps.max(x.price.scale()), zs.max(x.size.scale()))
        }),
    };
    let (bps, bzs) = book_scale(bids);
    let (aps, azs) = book_scale(asks);
    let ps = [bps, aps, amount_scale, tick.scale(), mid.scale()]
        .into_iter()
        .max()?
        + 1;
    let zs = ladder
        .bands
        .iter()
        .map(|b| b.up_to.scale())
        .chain([bzs, azs])
        .max()?;
    if ps > MAX_PRICE_SCALE || zs > MAX_SIZE_SCALE {
        return None;
    }
    let one = pow10(zs)?;
    let tick_i = at(tick, ps)?;
    let mid_i = at(mid, ps)?;
    let tick_mantissa = i64::try_from(tick.mantissa()).ok()?;
    // q ticks as a price at the tick's own scale (a hardware multiplication, checked).
    let price = |q: i128| {
        let units = i64::try_from(q).ok()?.checked_mul(tick_mantissa)?;
        Some(Decimal::new(units, tick.scale()))
    };
    let vwap = ladder.pricing == LadderPricing::Vwap;
    let mut bid_side = Side::new(bids, ps)?;
    let mut ask_side = Side::new(asks, ps)?;

    out.clear();
    for band in &ladder.bands {
        let resolve = |a: Amount| a.resolve(mid).ok_or(QuoteError::Overflow);
        let r = &band.rule;
        let (mb, ma, ms) = match (resolve(r.bid), resolve(r.ask), resolve(r.min_spread)) {
            (Ok(b), Ok(a), Ok(m)) => (at(b, ps)?, at(a, ps)?, at(m, ps)?),
            _ => return Some(Err(QuoteError::Overflow)),
        };
        let half = ms.max(tick_i) / 2;
        let size = at(band.up_to, zs)?;
        let bid = match bid_side.price_for(size, one, (ps, zs), vwap)? {
            None => None,
            Some((num, den)) => {
                // floor_tick(min(num/den - mb, mid - half))
                let x = num - mb * den;
                let limit = mid_i - half;
                let q = if x <= limit * den {
                    floor_div(x, den * tick_i)
                } else {
                    floor_div(limit, tick_i)
                };
                if q > 0 { Some(price(q)?) } else { None }
            }
        };
        let ask = match ask_side.price_for(size, one, (ps, zs), vwap)? {
            None => None,
            Some((num, den)) => {
                // ceil_tick(max(num/den + ma, mid + half))
                let c = num + ma * den;
                let limit = mid_i + half;
                let q = if c >= limit * den {
                    -floor_div(-c, den * tick_i)
                } else {
                    -floor_div(-limit, tick_i)
                };
                Some(price(q)?)
            }
        };
        out.push(BandQuote {
            up_to: band.up_to,
            bid,
            ask,
        });
    }
    Some(Ok(()))
}
