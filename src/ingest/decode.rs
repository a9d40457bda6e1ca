//! Raw price record decoding with simd-json.
//!
//! Value: `{"symbol":"EURUSD","bid":"1.08412","ask":"1.08431","ts":1732230000123}` with optional
//! `bid_size`, `ask_size`, `id`, `source` and a depth ladder `bids`/`asks` ([`super::depth`]);
//! unknown fields are ignored (forward compatible).
//! Prices may be decimal strings or JSON numbers; both are parsed from their text as exact
//! decimals, never through `f64`.

use rust_decimal::Decimal;
use simd_json::prelude::*;
use simd_json::tape::{Tape, Value};
use simd_json::{Buffers, ValueType};

use super::depth::levels;
use super::numbers::number_text;
pub use super::numbers::parse_decimal;
use super::reject::Reject;
use crate::pricing::decimal::MAX_PRICE;
use crate::pricing::{Book, Level};

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
    /// The bid side of the book, best first: the record's `bids`, else one level of `bid` ×
    /// `bid_size`, else empty (no sizes: every size is priced at the top of book).
    pub bids: &'a [Level],
    /// The ask side, like `bids`.
    pub asks: &'a [Level],
}

impl RawPrice<'_> {
    /// The bid side for ladder pricing.
    pub fn bid_book(&self) -> Book<'_> {
        book(self.bids, self.bid)
    }

    /// The ask side for ladder pricing.
    pub fn ask_book(&self) -> Book<'_> {
        book(self.asks, self.ask)
    }
}

#[inline]
fn book(levels: &[Level], top: Decimal) -> Book<'_> {
    if levels.is_empty() {
        Book::Top(top)
    } else {
        Book::Levels(levels)
    }
}

/// Reusable decoding state: simd-json parses in place, so each payload is copied into a
/// scratch buffer; the parse tape and the string slots are reused from record to record.
#[derive(Default)]
pub struct Decoder {
    scratch: Vec<u8>,
    buffers: Buffers,
    tape: Option<Tape<'static>>,
    symbol: String,
    id: String,
    source: String,
    bids: Vec<Level>,
    asks: Vec<Level>,
}

/// Fields found in one pass over the top-level object.
#[derive(Default)]
struct Fields {
    symbol: bool,
    bid: Option<Decimal>,
    ask: Option<Decimal>,
    ts: Option<i64>,
    bid_size: Option<Decimal>,
    ask_size: Option<Decimal>,
    id: bool,
    source: bool,
    bids: bool,
    asks: bool,
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
        let mut tape = self.tape.take().unwrap_or_else(|| Tape::null().reset());
        let fields = match simd_json::fill_tape(&mut self.scratch, &mut self.buffers, &mut tape) {
            Err(e) => Err(Reject::MalformedJson(e.to_string())),
            Ok(()) => read_fields(
                payload,
                tape.as_value(),
                Texts {
                    symbol: &mut self.symbol,
                    id: &mut self.id,
                    source: &mut self.source,
                },
                (&mut self.bids, &mut self.asks),
            ),
        };
        self.tape = Some(tape.reset());
        let f = fields?;

        if !f.symbol {
            return Err(Reject::MissingField("symbol"));
        }
        let (bid, bid_size) = side("bids", f.bids, f.bid, f.bid_size, &mut self.bids)?;
        let (ask, ask_size) = side("asks", f.asks, f.ask, f.ask_size, &mut self.asks)?;
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
            ts: f.ts,
            bid_size,
            ask_size,
            id: f.id.then_some(self.id.as_str()),
            source: f.source.then_some(self.source.as_str()),
            bids: &self.bids,
            asks: &self.asks,
        })
    }
}

/// One side of the record: its top price and size, and its book in `levels` (the depth ladder
/// when the record had one, read with the other fields). With a depth ladder, the top price and
/// size may be left out (they are its first level) but must match it when given; without one, a
/// size makes a one-level book.
#[inline]
fn side(
    field: &'static str,
    has_levels: bool,
    top: Option<Decimal>,
    top_size: Option<Decimal>,
    levels: &mut Vec<Level>,
) -> Result<(Decimal, Option<Decimal>), Reject> {
    let (price_name, size_name) = if field == "bids" {
        ("bid", "bid_size")
    } else {
        ("ask", "ask_size")
    };
    if !has_levels {
        levels.clear();
        if top_size.is_none() {
            // The common case: no sizes at all.
            return Ok((top.ok_or(Reject::MissingField(price_name))?, None));
        }
    }
    let Some(first) = levels.first().copied() else {
        let top = top.ok_or(Reject::MissingField(price_name))?;
        if let Some(size) = top_size {
            levels.push(Level { price: top, size });
        }
        return Ok((top, top_size));
    };
    if let Some(p) = top.filter(|p| *p != first.price) {
        return Err(invalid(
            field,
            format!(
                "the first level's price {} differs from {price_name} {p}",
                first.price
            ),
        ));
    }
    if let Some(s) = top_size.filter(|s| *s != first.size) {
        return Err(invalid(
            field,
            format!(
                "the first level's size {} differs from {size_name} {s}",
                first.size
            ),
        ));
    }
    Ok((first.price, Some(first.size)))
}

/// Where the string fields of a record are copied.
struct Texts<'a> {
    symbol: &'a mut String,
    id: &'a mut String,
    source: &'a mut String,
}

/// One pass over the object's members; unknown members are ignored, `null` means absent, and a
/// repeated member overrides the earlier one.
fn read_fields(
    payload: &[u8],
    value: Value<'_, '_>,
    text: Texts<'_>,
    (bids, asks): (&mut Vec<Level>, &mut Vec<Level>),
) -> Result<Fields, Reject> {
    let Texts { symbol, id, source } = text;
    let obj = value.as_object().ok_or(Reject::NotAnObject)?;
    let mut f = Fields::default();
    for (key, v) in obj.iter() {
        if v.is_null() {
            continue;
        }
        match key {
            "symbol" => {
                let s = v
                    .as_str()
                    .ok_or_else(|| invalid("symbol", "expected a string"))?;
                if s.is_empty() || s.len() > 32 {
                    return Err(invalid("symbol", "must be 1 to 32 characters"));
                }
                symbol.clear();
                symbol.push_str(s);
                f.symbol = true;
            }
            "bid" => f.bid = Some(decimal_field(payload, "bid", &v)?),
            "ask" => f.ask = Some(decimal_field(payload, "ask", &v)?),
            "ts" => f.ts = Some(timestamp(&v)?),
            "bid_size" => f.bid_size = Some(size_field(payload, "bid_size", &v)?),
            "ask_size" => f.ask_size = Some(size_field(payload, "ask_size", &v)?),
            "bids" => f.bids = levels(payload, "bids", Some(&v), bids).map(|()| true)?,
            "asks" => f.asks = levels(payload, "asks", Some(&v), asks).map(|()| true)?,
            "id" => f.id = copy_text(id, "id", &v)?,
            "source" => f.source = copy_text(source, "source", &v)?,
            _ => {}
        }
    }
    Ok(f)
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
    value: &Value<'_, '_>,
) -> Result<Decimal, Reject> {
    let text = if let Some(s) = value.as_str() {
        s
    } else if value.is_number() {
        number_text(payload, name).ok_or_else(|| invalid(name, "number text not found"))?
    } else {
        return Err(invalid(name, "expected a decimal string or number"));
    };
    parse_decimal(text)
        .ok_or_else(|| invalid(name, format!("{text:?} is not an exact decimal number")))
}

fn size_field(
    payload: &[u8],
    name: &'static str,
    value: &Value<'_, '_>,
) -> Result<Decimal, Reject> {
    let size = decimal_field(payload, name, value)?;
    if size.is_sign_negative() && !size.is_zero() {
        return Err(invalid(name, "must not be negative"));
    }
    Ok(size)
}

fn timestamp(value: &Value<'_, '_>) -> Result<i64, Reject> {
    let ts = match value.value_type() {
        ValueType::I64 => value.as_i64(),
        ValueType::U64 => value.as_u64().and_then(|u| i64::try_from(u).ok()),
        ValueType::String => value
            .as_str()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok()),
        _ => None,
    };
    ts.filter(|t| *t >= 0)
        .ok_or_else(|| invalid("ts", "expected milliseconds since the epoch as an integer"))
}

/// Copies a string field into `slot`; returns true (it is present).
fn copy_text(slot: &mut String, name: &'static str, value: &Value<'_, '_>) -> Result<bool, Reject> {
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
