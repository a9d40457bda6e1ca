//! Prices and margin rules: pure, no I/O, exact decimals only.
//!
//! Everything on the price path is `rust_decimal::Decimal`; no floating point is used anywhere in
//! this module. The five invariants the margin engine keeps are listed in [`margin`].

pub mod decimal;
pub mod instrument;
pub mod margin;
pub mod markup;

pub use instrument::{Instrument, Tick};
pub use margin::{Quote, QuoteError, midpoint, quote, quote_at_mid, quote_at_mid_decimal};
pub use markup::{Amount, Markup, PricingRule, Unit};
