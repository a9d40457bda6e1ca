//! The only code that reads `prices.raw` records: decoding and validation of raw prices, the
//! reasons a record is dead-lettered, and the headers of a published record.

pub mod decode;
pub mod depth;
mod numbers;
pub mod publisher;
pub mod reject;

pub use decode::{Decoder, RawPrice};
pub use reject::Reject;
