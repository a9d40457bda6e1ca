//! Size-tiered quotes: one channel quote per size band, from the source book.
//!
//! A band `up_to = S` with a rule (markups `mb`, `ma`, minimum spread `ms`) quotes, for each
//! side, the source price of that side for size `S` ([`source_price`]: full amount or VWAP)
//! moved away by its markup, with the minimum spread kept around the **top-of-book** mid:
//!
//! ```text
//! bid'(S) = floor_tick(min(src_bid(S) - mb, mid - ms/2))
//! ask'(S) = ceil_tick (max(src_ask(S) + ma, mid + ms/2))
//! ```
//!
//! With the same mid for every band, a larger band (whose source prices are no better and whose
//! amounts are no smaller, which the config validator checks) can never quote tighter. The
//! invariants, proven by property tests in `tests/ladder_properties.rs`, for every ladder:
//!
//! 1. bid non-increasing and ask non-decreasing as the size grows (the top-of-book quote first);
//! 2. never crossed: `ask' - bid' >= max(ms, tick)` in every band;
//! 3. never better than the source for the same size (without negative markups);
//! 4. on the tick grid, the bid rounded toward −∞ and the ask toward +∞, exactly, even for a VWAP
//!    with no finite decimal form;
//! 5. a side is quoted exactly when the book holds the band's size (or has no sizes at all).

use rust_decimal::Decimal;

use super::band::{BandQuote, Ladder};
use super::decimal::{cmp, max, min};
use super::depth::{Book, SideWalk, SourcePrice, floor_div};
use super::instrument::Instrument;
use super::margin::QuoteError;

const HALF: Decimal = Decimal::from_parts(5, 0, 0, false, 1);

/// Prices every band of `ladder` into `out` (cleared first). `mid` is the top-of-book mid.
///
/// Runs on integers at common decimal scales when every value fits (the usual case, several
/// times cheaper), else in `Decimal` ([`quote_ladder_decimal`]); both give identical results
/// (property-tested).
pub fn quote_ladder(
    instrument: &Instrument,
    ladder: &Ladder,
    mid: Decimal,
    bids: Book<'_>,
    asks: Book<'_>,
    out: &mut Vec<BandQuote>,
) -> Result<(), QuoteError> {
    match super::ladder_fixed::quote_ladder(instrument, ladder, mid, bids, asks, out) {
        Some(result) => result,
        None => quote_ladder_decimal(instrument, ladder, mid, bids, asks, out),
    }
}

/// [`quote_ladder`] in `Decimal` arithmetic throughout: the reference implementation.
pub fn quote_ladder_decimal(
    instrument: &Instrument,
    ladder: &Ladder,
    mid: Decimal,
    bids: Book<'_>,
    asks: Book<'_>,
    out: &mut Vec<BandQuote>,
) -> Result<(), QuoteError> {
    out.clear();
    let overflow = || QuoteError::Overflow;
    let tick = instrument.tick.size();
    let mut bid_walk = SideWalk::new(bids, ladder.pricing);
    let mut ask_walk = SideWalk::new(asks, ladder.pricing);
    for band in &ladder.bands {
        let rule = &band.rule;
        let markup_bid = rule.bid.resolve(mid).ok_or_else(overflow)?;
        let markup_ask = rule.ask.resolve(mid).ok_or_else(overflow)?;
        let min_spread = max(rule.min_spread.resolve(mid).ok_or_else(overflow)?, tick);
        let half = min_spread.checked_mul(HALF).ok_or_else(overflow)?;
        let bid_floor = mid.checked_sub(half).ok_or_else(overflow)?;
        let ask_floor = mid.checked_add(half).ok_or_else(overflow)?;
        let bid = match bid_walk.price_for(band.up_to)? {
            Some(src) => bid_side(instrument, src, markup_bid, bid_floor)?,
            None => None,
        };
        let ask = match ask_walk.price_for(band.up_to)? {
            Some(src) => Some(ask_side(instrument, src, markup_ask, ask_floor)?),
            None => None,
        };
        out.push(BandQuote {
            up_to: band.up_to,
            bid,
            ask,
        });
    }
    Ok(())
}

/// `floor_tick(min(src - markup, limit))`; `None` when that is not positive.
fn bid_side(
    instrument: &Instrument,
    src: SourcePrice,
    markup: Decimal,
    limit: Decimal,
) -> Result<Option<Decimal>, QuoteError> {
    let overflow = || QuoteError::Overflow;
    let tick = &instrument.tick;
    let price = match src {
        SourcePrice::Exact(p) => {
            let raw = min(p.checked_sub(markup).ok_or_else(overflow)?, limit);
            tick.floor(raw).ok_or_else(overflow)?
        }
        SourcePrice::Ratio { num, den } => {
            // (num - markup·den) / den against the limit, compared without dividing.
            let x = markup
                .checked_mul(den)
                .and_then(|m| num.checked_sub(m))
                .ok_or_else(overflow)?;
            let limit_scaled = limit.checked_mul(den).ok_or_else(overflow)?;
            if cmp(x, limit_scaled).is_le() {
                let step = den.checked_mul(tick.size()).ok_or_else(overflow)?;
                floor_div(x, step)
                    .and_then(|q| q.checked_mul(tick.size()))
                    .ok_or_else(overflow)?
            } else {
                tick.floor(limit).ok_or_else(overflow)?
            }
        }
    };
    Ok((price > Decimal::ZERO).then_some(price))
}

/// `ceil_tick(max(src + markup, limit))`.
fn ask_side(
    instrument: &Instrument,
    src: SourcePrice,
    markup: Decimal,
    limit: Decimal,
) -> Result<Decimal, QuoteError> {
    let overflow = || QuoteError::Overflow;
    let tick = &instrument.tick;
    match src {
        SourcePrice::Exact(p) => {
            let raw = max(p.checked_add(markup).ok_or_else(overflow)?, limit);
            tick.ceil(raw).ok_or_else(overflow)
        }
        SourcePrice::Ratio { num, den } => {
            let c = markup
                .checked_mul(den)
                .and_then(|m| num.checked_add(m))
                .ok_or_else(overflow)?;
            let limit_scaled = limit.checked_mul(den).ok_or_else(overflow)?;
            if cmp(c, limit_scaled).is_ge() {
                // ceil(c / step) = -floor(-c / step)
                let step = den.checked_mul(tick.size()).ok_or_else(overflow)?;
                floor_div(-c, step)
                    .and_then(|q| (-q).checked_mul(tick.size()))
                    .ok_or_else(overflow)
            } else {
                tick.ceil(limit).ok_or_else(overflow)
            }
        }
    }
}
