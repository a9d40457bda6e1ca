//! Quote audit: which price a channel showed for a symbol at a time, from which raw record, under
//! which rules version and markup ([`lookup`], answered as [`answer`]). `pricefeed audit` and
//! `GET /audit` ask it.

pub mod answer;
pub mod lookup;

pub use answer::{Audit, AuditQuery};
pub use lookup::{AuditError, audit};
