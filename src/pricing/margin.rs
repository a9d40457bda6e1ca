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
use super::instrument::Instrument;
use super::markup::{Amount, PricingRule};

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
///
/// ```
/// use pricefeed::pricing::{Amount, Instrument, PricingRule, Tick, quote};
/// use rust_decimal::Decimal;
///
/// let eurusd = Instrument {
///     symbol: "EURUSD".into(),
///     tick: Tick::new(Decimal::new(1, 5)), // 0.00001
///     pip: Decimal::new(1, 4),             // 0.0001
///     precision: 5,
/// };
/// // 1 pip off the bid, 1.2 pips on the ask, no minimum spread beyond one tick.
/// let retail = PricingRule {
///     bid: Amount::Price(Decimal::new(1, 4)),
///     ask: Amount::Price(Decimal::new(12, 5)),
///     min_spread: Amount::Price(Decimal::ZERO),
/// };
/// let q = quote(&eurusd, &retail, Decimal::new(108412, 5), Decimal::new(108431, 5)).unwrap();
/// assert_eq!((q.bid.to_string(), q.ask.to_string()), ("1.08402".into(), "1.08443".into()));
/// ```
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
///
/// The formula runs on `i64` integers at one common decimal scale when every value fits (the
/// usual case: the scale covers every input's decimal places, so nothing is rounded), which is
/// several times cheaper than `Decimal` arithmetic; otherwise on `Decimal`
/// ([`quote_at_mid_decimal`]). Both give identical results (property-tested).
pub fn quote_at_mid(
    instrument: &Instrument,
    rule: &PricingRule,
    bid: Decimal,
    ask: Decimal,
    mid: Decimal,
) -> Result<Quote, QuoteError> {
    let amounts = Amounts::resolve(rule, mid)?;
    let values = [
        bid,
        ask,
        mid,
        amounts.bid,
        amounts.ask,
        amounts.min_spread,
        instrument.tick.size(),
    ];
    match fixed::quote(values) {
        Some(result) => result,
        None => decimal_engine(instrument, &amounts, bid, ask, mid),
    }
}

/// A rule's amounts in price units for one mid.
struct Amounts {
    bid: Decimal,
    ask: Decimal,
    min_spread: Decimal,
}

impl Amounts {
    fn resolve(rule: &PricingRule, mid: Decimal) -> Result<Amounts, QuoteError> {
        let resolve = |a: Amount| a.resolve(mid).ok_or(QuoteError::Overflow);
        Ok(Amounts {
            bid: resolve(rule.bid)?,
            ask: resolve(rule.ask)?,
            min_spread: resolve(rule.min_spread)?,
        })
    }
}

/// [`quote_at_mid`] in `Decimal` arithmetic throughout: the reference implementation.
pub fn quote_at_mid_decimal(
    instrument: &Instrument,
    rule: &PricingRule,
    bid: Decimal,
    ask: Decimal,
    mid: Decimal,
) -> Result<Quote, QuoteError> {
    decimal_engine(instrument, &Amounts::resolve(rule, mid)?, bid, ask, mid)
}

fn decimal_engine(
    instrument: &Instrument,
    amounts: &Amounts,
    bid: Decimal,
    ask: Decimal,
    mid: Decimal,
) -> Result<Quote, QuoteError> {
    let overflow = || QuoteError::Overflow;
    let (bid_markup, ask_markup) = (amounts.bid, amounts.ask);
    let tick = instrument.tick.size();
    let min_spread = max(amounts.min_spread, tick);
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

/// The formula on `i64` integers at a common decimal scale.
mod fixed {
    use rust_decimal::Decimal;

    use crate::pricing::margin::{Quote, QuoteError};

    const POW10: [i64; 19] = {
        let mut t = [1i64; 19];
        let mut i = 1;
        while i < 19 {
            t[i] = t[i - 1] * 10;
            i += 1;
        }
        t
    };

    /// Every value is kept below 2^60 so that a sum or difference of two cannot overflow.
    const LIMIT: i64 = 1 << 60;

    /// `values` = bid, ask, mid, bid markup, ask markup, min spread, tick. `None` when a value
    /// does not fit; the caller then computes in `Decimal`.
    #[inline]
    pub(super) fn quote(values: [Decimal; 7]) -> Option<Result<Quote, QuoteError>> {
        // One decimal place more than any input makes `min_spread / 2` exact.
        let scale = values.iter().map(Decimal::scale).max()? + 1;
        if scale as usize >= POW10.len() {
            return None;
        }
        let mut ints = [0i64; 7];
        for (slot, v) in ints.iter_mut().zip(values) {
            let mantissa = i64::try_from(v.mantissa()).ok()?;
            let n = mantissa.checked_mul(POW10[(scale - v.scale()) as usize])?;
            if !(-LIMIT..LIMIT).contains(&n) {
                return None;
            }
            *slot = n;
        }
        let [bid, ask, mid, bid_markup, ask_markup, min_spread, tick] = ints;
        // Every value ends in a 0 digit at this scale, so halving is exact.
        let half = min_spread.max(tick) / 2;
        let raw_bid = (bid - bid_markup).min(mid - half);
        let raw_ask = (ask + ask_markup).max(mid + half);
        // div_euclid by a positive tick rounds toward −∞ for negative values too.
        let bid_ticks = raw_bid.div_euclid(tick);
        let ask_ticks = -(-raw_ask).div_euclid(tick);
        if bid_ticks <= 0 {
            return Some(Err(QuoteError::NonPositiveBid));
        }
        // Back to the tick's own scale: a multiple of the tick is ticks × its mantissa.
        let t = values[6];
        let tick_mantissa = i64::try_from(t.mantissa()).ok()?;
        Some(Ok(Quote {
            bid: Decimal::new(bid_ticks.checked_mul(tick_mantissa)?, t.scale()),
            ask: Decimal::new(ask_ticks.checked_mul(tick_mantissa)?, t.scale()),
        }))
    }
}
