//! Why a raw record was not transformed. Each reason has a stable code, used as the dead-letter
//! header value and as the metric label (a bounded set).

use std::fmt;

/// A raw record that cannot be transformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Not JSON at all, or not UTF-8.
    MalformedJson(String),
    /// JSON, but not an object.
    NotAnObject,
    /// A required field is absent.
    MissingField(&'static str),
    /// A field is present with a value of the wrong kind or format.
    InvalidField { field: &'static str, reason: String },
    /// The symbol is not an instrument of `channels.toml`.
    UnknownSymbol(String),
    /// The record key names a different symbol than the value.
    KeyMismatch { key: String, symbol: String },
    /// `bid <= 0`.
    NonPositiveBid,
    /// `ask < bid`.
    CrossedPrice,
    /// A price above the supported maximum.
    PriceOutOfRange,
}

impl Reject {
    /// Every code, for documentation and tests.
    pub const CODES: [&'static str; 9] = [
        "malformed_json",
        "not_an_object",
        "missing_field",
        "invalid_field",
        "unknown_symbol",
        "key_mismatch",
        "non_positive_bid",
        "crossed_price",
        "price_out_of_range",
    ];

    /// The message for logs and the dead-letter header: at most [`Reject::MAX_DETAIL`] bytes,
    /// cut on a character boundary (raw input quoted in it can be long and any UTF-8).
    pub fn detail(&self) -> String {
        let mut s = self.to_string();
        if s.len() > Self::MAX_DETAIL {
            let mut cut = Self::MAX_DETAIL - '…'.len_utf8();
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        s
    }

    pub const MAX_DETAIL: usize = 1024;

    pub fn code(&self) -> &'static str {
        match self {
            Reject::MalformedJson(_) => "malformed_json",
            Reject::NotAnObject => "not_an_object",
            Reject::MissingField(_) => "missing_field",
            Reject::InvalidField { .. } => "invalid_field",
            Reject::UnknownSymbol(_) => "unknown_symbol",
            Reject::KeyMismatch { .. } => "key_mismatch",
            Reject::NonPositiveBid => "non_positive_bid",
            Reject::CrossedPrice => "crossed_price",
            Reject::PriceOutOfRange => "price_out_of_range",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::MalformedJson(e) => write!(f, "not valid JSON: {e}"),
            Reject::NotAnObject => f.write_str("the value is not a JSON object"),
            Reject::MissingField(name) => write!(f, "missing field {name:?}"),
            Reject::InvalidField { field, reason } => write!(f, "field {field:?}: {reason}"),
            Reject::UnknownSymbol(s) => write!(f, "unknown symbol {s:?}"),
            Reject::KeyMismatch { key, symbol } => {
                write!(f, "record key {key:?} differs from symbol {symbol:?}")
            }
            Reject::NonPositiveBid => f.write_str("bid must be positive"),
            Reject::CrossedPrice => f.write_str("ask is below bid"),
            Reject::PriceOutOfRange => f.write_str("price above the supported maximum (1e12)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Reject;

    #[test]
    fn detail_is_bounded_and_cut_on_a_char_boundary() {
        for filler in ["€", "é", "a", "😀"] {
            let reject = Reject::InvalidField {
                field: "bid",
                reason: filler.repeat(2000),
            };
            let detail = reject.detail();
            assert!(detail.len() <= Reject::MAX_DETAIL, "{}", detail.len());
            assert!(detail.ends_with('…'));
        }
        assert_eq!(Reject::NonPositiveBid.detail(), "bid must be positive");
    }
}
