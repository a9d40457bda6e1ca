//! The margin engine: source bid/ask in, channel bid/ask out.
//!
//! For a source quote `bid <= ask` with `mid = (bid + ask) / 2`, a rule with markups `mb`, `ma`
//! and minimum spread `ms` (at least one tick) quotes
//!
//! ```text
//! bid' = floor_tick(min(bid - mb, mid - ms/2))
//! ask' = ceil_tick (max(ask + ma, mid + ms/2))
//! ```
//!
//! That is: each side moves away by its markup, and when the spread is under the minimum it is
//! widened symmetrically around the source mid; then both sides round outward on the tick grid.
//! With a skewed markup the half-spread floor applies per side, which is what keeps invariant 5
//! true for skewed channels (see docs/pricing.md). The invariants, proven by property tests in
//! `tests/margin_properties.rs`:
//!
//! 1. `bid' <= bid` and `ask' >= ask` (for rules without negative markups);
//! 2. `ask' - bid' >= max(min_spread, tick)`;
//! 3. both sides are multiples of the tick, the bid rounded toward −∞, the ask toward +∞;
//! 4. deterministic, exact decimal arithmetic only;
//! 5. a rule whose every amount is larger never quotes better on either side.

use rust_decimal::Decimal;

use super::decimal::{max, min};
use super::{Instrument, PricingRule};

/// A channel quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quote {
    pub bid: Decimal,
    pub ask: Decimal,
}

/// Why a channel could not quote a source price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// The markup would push the bid to zero or below: the price is too small for this rule.
    #[error("the marked-up bid is not positive")]
    NonPositiveBid,
    /// An intermediate value left the decimal range (only with absurd rules or prices).
    #[error("decimal overflow while applying the markup")]
    Overflow,
}

const HALF: Decimal = Decimal::from_parts(5, 0, 0, false, 1);

/// Applies `rule` to a validated source quote (`0 < bid <= ask`).
pub fn quote(
    instrument: &Instrument,
    rule: &PricingRule,
    bid: Decimal,
    ask: Decimal,
) -> Result<Quote, QuoteError> {
    quote_at_mid(instrument, rule, bid, ask, midpoint(bid, ask)?)
}

/// `(bid + ask) / 2`, exactly.
pub fn midpoint(bid: Decimal, ask: Decimal) -> Result<Decimal, QuoteError> {
    bid.checked_add(ask)
        .and_then(|s| s.checked_mul(HALF))
        .ok_or(QuoteError::Overflow)
}

/// [`quote`] with the source mid computed once for every channel.
pub fn quote_at_mid(
    instrument: &Instrument,
    rule: &PricingRule,
    bid: Decimal,
    ask: Decimal,
    mid: Decimal,
) -> Result<Quote, QuoteError> {
    let overflow = || QuoteError::Overflow;
    let bid_markup = rule.bid.resolve(mid).ok_or_else(overflow)?;
    let ask_markup = rule.ask.resolve(mid).ok_or_else(overflow)?;
    let tick = instrument.tick.size();
    let min_spread = max(rule.min_spread.resolve(mid).ok_or_else(overflow)?, tick);
    let half_spread = min_spread.checked_mul(HALF).ok_or_else(overflow)?;

    let raw_bid = min(
        bid.checked_sub(bid_markup).ok_or_else(overflow)?,
        mid.checked_sub(half_spread).ok_or_else(overflow)?,
    );
    let raw_ask = max(
        ask.checked_add(ask_markup).ok_or_else(overflow)?,
        mid.checked_add(half_spread).ok_or_else(overflow)?,
    );

    let out_bid = instrument.tick.floor(raw_bid).ok_or_else(overflow)?;
    let out_ask = instrument.tick.ceil(raw_ask).ok_or_else(overflow)?;
    if out_bid <= Decimal::ZERO {
        return Err(QuoteError::NonPositiveBid);
    }
    Ok(Quote {
        bid: out_bid,
        ask: out_ask,
    })
}
