//! Prices and margin rules: pure, no I/O, exact decimals only.
//!
//! Everything on the price path is `rust_decimal::Decimal`; no floating point is used anywhere in
//! this module. The five invariants the margin engine keeps are listed in [`margin`], those of
//! size-tiered ladders in [`ladder`].

pub mod band;
pub mod decimal;
pub mod depth;
pub mod instrument;
pub mod ladder;
mod ladder_fixed;
pub mod margin;
pub mod markup;

pub use band::{Band, BandQuote, Ladder};
pub use depth::{Book, LadderPricing, Level, SourcePrice, source_price};
pub use instrument::{Instrument, Tick};
pub use ladder::{quote_ladder, quote_ladder_decimal};
pub use margin::{Quote, QuoteError, midpoint, quote, quote_at_mid, quote_at_mid_decimal};
pub use markup::{Amount, Markup, PricingRule, Unit};
