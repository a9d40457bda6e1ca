//! Instruments: the symbols the service prices, with their tick grid and display precision.

use rust_decimal::Decimal;

pub use super::decimal::TickSize as Tick;

/// One tradable instrument from `[instruments.<SYMBOL>]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Instrument {
    pub symbol: String,
    /// Smallest price increment; every quoted price is a multiple of it.
    pub tick: Tick,
    /// Size of one pip, the unit of `pips` markups (0.0001 for EURUSD, 0.01 for USDJPY).
    pub pip: Decimal,
    /// Decimal places shown on the wire; at least the tick's own decimal places.
    pub precision: u32,
}
