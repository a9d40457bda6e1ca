//! Markup units and their resolution into price amounts for one instrument.

use rust_decimal::Decimal;

use super::instrument::Instrument;

/// The unit markup amounts are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Multiples of the instrument's pip size.
    Pips,
    /// Basis points (1/10,000) of the source mid price.
    Bps,
    /// Percent of the source mid price.
    Percent,
    /// Absolute price units.
    Abs,
}

impl Unit {
    pub const NAMES: [&'static str; 4] = ["pips", "bps", "percent", "abs"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pips" => Some(Self::Pips),
            "bps" => Some(Self::Bps),
            "percent" => Some(Self::Percent),
            "abs" => Some(Self::Abs),
            _ => None,
        }
    }
}

/// A channel's markup as configured: how far each side moves away from the source, and the
/// minimum spread, all in one unit.
#[derive(Clone, Debug, PartialEq)]
pub struct Markup {
    pub unit: Unit,
    /// Subtracted from the source bid.
    pub bid: Decimal,
    /// Added to the source ask.
    pub ask: Decimal,
    /// The quoted spread is never narrower than this (and never narrower than one tick).
    pub min_spread: Decimal,
}

/// An amount in price units, either fixed or proportional to the source mid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Amount {
    Price(Decimal),
    /// `factor × mid`.
    OfMid(Decimal),
}

impl Amount {
    #[inline]
    pub fn resolve(self, mid: Decimal) -> Option<Decimal> {
        match self {
            Amount::Price(p) => Some(p),
            Amount::OfMid(f) => mid.checked_mul(f),
        }
    }
}

/// A markup resolved for one instrument, ready for the hot path: no unit logic left.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PricingRule {
    pub bid: Amount,
    pub ask: Amount,
    pub min_spread: Amount,
}

impl Markup {
    /// Resolves units against the instrument (pip size) once, at config load.
    pub fn resolve(&self, instrument: &Instrument) -> PricingRule {
        let to_amount = |v: Decimal| match self.unit {
            Unit::Pips => Amount::Price(v * instrument.pip),
            Unit::Abs => Amount::Price(v),
            Unit::Bps => Amount::OfMid(v / Decimal::from(10_000)),
            Unit::Percent => Amount::OfMid(v / Decimal::ONE_HUNDRED),
        };
        PricingRule {
            bid: to_amount(self.bid),
            ask: to_amount(self.ask),
            min_spread: to_amount(self.min_spread),
        }
    }
}
