//! Raw price record decoding with simd-json.
//!
//! Value: `{"symbol":"EURUSD","bid":"1.08412","ask":"1.08431","ts":1732230000123}` with optional
//! `bid_size`, `ask_size`, `id`, `source`; unknown fields are ignored (forward compatible).
//! Prices may be decimal strings or JSON numbers; both are parsed from their text as exact
//! decimals, never through `f64`.

use rust_decimal::Decimal;
use simd_json::prelude::*;
use simd_json::{BorrowedValue, Buffers, StaticNode};

use super::Reject;
use super::numbers::number_text;
use crate::pricing::decimal::MAX_PRICE;

const MAX_TEXT: usize = 256;

/// A decoded raw price, borrowing its strings from the [`Decoder`].
#[derive(Clone, Debug, PartialEq)]
pub struct RawPrice<'a> {
    pub symbol: &'a str,
    pub bid: Decimal,
    pub ask: Decimal,
    /// Source time in ms since the epoch; `None` means "use the Kafka record timestamp".
    pub ts: Option<i64>,
    pub bid_size: Option<Decimal>,
    pub ask_size: Option<Decimal>,
    /// Idempotency id from the source.
    pub id: Option<&'a str>,
    pub source: Option<&'a str>,
}

/// Reusable decoding state: simd-json parses in place, so each payload is copied into a
/// scratch buffer that lives as long as the decoder.
#[derive(Default)]
pub struct Decoder {
    scratch: Vec<u8>,
    buffers: Buffers,
    symbol: String,
    id: String,
    source: String,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes and checks one record value (numeric checks only; the symbol is checked against
    /// the rules by the caller).
    pub fn decode(&mut self, payload: &[u8]) -> Result<RawPrice<'_>, Reject> {
        self.scratch.clear();
        self.scratch.extend_from_slice(payload);
        let value = simd_json::to_borrowed_value_with_buffers(&mut self.scratch, &mut self.buffers)
            .map_err(|e| Reject::MalformedJson(e.to_string()))?;
        let obj = value.as_object().ok_or(Reject::NotAnObject)?;
        let field = |name: &str| obj.get(name).filter(|v| !v.is_null());

        let symbol = field("symbol").ok_or(Reject::MissingField("symbol"))?;
        let symbol = symbol
            .as_str()
            .ok_or_else(|| invalid("symbol", "expected a string"))?;
        if symbol.is_empty() || symbol.len() > 32 {
            return Err(invalid("symbol", "must be 1 to 32 characters"));
        }
        let bid =
            decimal_field(payload, "bid", field("bid"))?.ok_or(Reject::MissingField("bid"))?;
        let ask =
            decimal_field(payload, "ask", field("ask"))?.ok_or(Reject::MissingField("ask"))?;
        let ts = match field("ts") {
            None => None,
            Some(v) => Some(timestamp(v)?),
        };
        let bid_size = size_field(payload, "bid_size", field("bid_size"))?;
        let ask_size = size_field(payload, "ask_size", field("ask_size"))?;
        let has_id = copy_text(&mut self.id, "id", field("id"))?;
        let has_source = copy_text(&mut self.source, "source", field("source"))?;
        self.symbol.clear();
        self.symbol.push_str(symbol);
        drop(value);

        if bid <= Decimal::ZERO {
            return Err(Reject::NonPositiveBid);
        }
        if ask < bid {
            return Err(Reject::CrossedPrice);
        }
        if ask > MAX_PRICE {
            return Err(Reject::PriceOutOfRange);
        }
        Ok(RawPrice {
            symbol: &self.symbol,
            bid,
            ask,
            ts,
            bid_size,
            ask_size,
            id: has_id.then_some(self.id.as_str()),
            source: has_source.then_some(self.source.as_str()),
        })
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Reject {
    Reject::InvalidField {
        field,
        reason: reason.into(),
    }
}

/// A decimal from a string or a JSON number (taken from the original text).
fn decimal_field(
    payload: &[u8],
    name: &'static str,
    value: Option<&BorrowedValue<'_>>,
) -> Result<Option<Decimal>, Reject> {
    let Some(value) = value else { return Ok(None) };
    let text = if let Some(s) = value.as_str() {
        s
    } else if value.is_number() {
        number_text(payload, name).ok_or_else(|| invalid(name, "number text not found"))?
    } else {
        return Err(invalid(name, "expected a decimal string or number"));
    };
    parse_decimal(text)
        .map(Some)
        .ok_or_else(|| invalid(name, format!("{text:?} is not an exact decimal number")))
}

fn size_field(
    payload: &[u8],
    name: &'static str,
    value: Option<&BorrowedValue<'_>>,
) -> Result<Option<Decimal>, Reject> {
    let size = decimal_field(payload, name, value)?;
    if size.is_some_and(|s| s.is_sign_negative() && !s.is_zero()) {
        return Err(invalid(name, "must not be negative"));
    }
    Ok(size)
}

fn timestamp(value: &BorrowedValue<'_>) -> Result<i64, Reject> {
    let ts = match value {
        BorrowedValue::Static(StaticNode::I64(i)) => Some(*i),
        BorrowedValue::Static(StaticNode::U64(u)) => i64::try_from(*u).ok(),
        BorrowedValue::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    };
    ts.filter(|t| *t >= 0)
        .ok_or_else(|| invalid("ts", "expected milliseconds since the epoch as an integer"))
}

/// Copies an optional string field into `slot`; returns whether it was present.
fn copy_text(
    slot: &mut String,
    name: &'static str,
    value: Option<&BorrowedValue<'_>>,
) -> Result<bool, Reject> {
    let Some(value) = value else { return Ok(false) };
    let s = value
        .as_str()
        .ok_or_else(|| invalid(name, "expected a string"))?;
    if s.len() > MAX_TEXT {
        return Err(invalid(name, format!("longer than {MAX_TEXT} bytes")));
    }
    slot.clear();
    slot.push_str(s);
    Ok(true)
}

/// Strict JSON-number grammar (`-?digits[.digits][e[+-]digits]`), parsed exactly.
pub fn parse_decimal(text: &str) -> Option<Decimal> {
    let b = text.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return None;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return None;
        }
    }
    let mantissa_end = i;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    if mantissa_end == b.len() {
        Decimal::from_str_exact(text).ok()
    } else {
        Decimal::from_scientific(text).ok()
    }
}
