//! Size bands and the ladder they make: what a tiered channel configures per instrument, and
//! what it publishes per record.

use rust_decimal::Decimal;

use super::depth::LadderPricing;
use super::markup::PricingRule;

/// One size band: trades up to `up_to` (in units of the instrument) are priced with `rule`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Band {
    pub up_to: Decimal,
    pub rule: PricingRule,
}

/// An instrument's ladder on a channel: bands with ascending sizes, none tighter than the one
/// before it.
#[derive(Clone, Debug, PartialEq)]
pub struct Ladder {
    pub pricing: LadderPricing,
    pub bands: Vec<Band>,
}

/// One band of a published ladder; a side is `None` when it is not quoted (the book is too thin
/// to fill the band, or the marked-up bid would not be positive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BandQuote {
    pub up_to: Decimal,
    pub bid: Option<Decimal>,
    pub ask: Option<Decimal>,
}
