//! The only code that reads `prices.raw` records: decoding and validation of raw prices, and the
//! reasons a record is dead-lettered.

pub mod decode;
mod numbers;
pub mod reject;

pub use decode::{Decoder, RawPrice};
pub use reject::Reject;
