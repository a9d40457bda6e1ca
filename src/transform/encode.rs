//! The sub-stream record value: `{"symbol","bid","ask","ts","stale",…}` with decimals as strings.

use std::io::Write;

use rust_decimal::Decimal;

use crate::ingest::RawPrice;
use crate::pricing::decimal::write_fixed;
use crate::pricing::{BandQuote, Instrument, LadderPricing, Quote};

/// Writes the part of the value every channel shares (sizes, id, source and the closing brace)
/// once per raw record.
pub fn encode_tail(tail: &mut Vec<u8>, raw: &RawPrice<'_>) {
    tail.clear();
    if let Some(size) = raw.bid_size {
        write_decimal_field(tail, "bid_size", size);
    }
    if let Some(size) = raw.ask_size {
        write_decimal_field(tail, "ask_size", size);
    }
    if let Some(id) = raw.id {
        write_string_field(tail, "id", id);
    }
    if let Some(source) = raw.source {
        write_string_field(tail, "source", source);
    }
    tail.push(b'}');
}

/// A channel's ladder for one record: how the book was read, and the bands.
#[derive(Clone, Copy, Debug)]
pub struct LadderOut<'a> {
    pub pricing: LadderPricing,
    pub bands: &'a [BandQuote],
}

/// Writes the JSON value of one channel record into `out` (cleared first); `tail` comes from
/// [`encode_tail`].
pub fn encode_quote(
    out: &mut Vec<u8>,
    instrument: &Instrument,
    quote: &Quote,
    ts: i64,
    stale: bool,
    ladder: Option<LadderOut<'_>>,
    tail: &[u8],
) {
    out.clear();
    out.extend_from_slice(b"{\"symbol\":\"");
    // Symbols are validated to [A-Za-z0-9._/:-] by the config: no escaping needed.
    out.extend_from_slice(instrument.symbol.as_bytes());
    out.extend_from_slice(b"\",\"bid\":\"");
    write_fixed(out, quote.bid, instrument.precision);
    out.extend_from_slice(b"\",\"ask\":\"");
    write_fixed(out, quote.ask, instrument.precision);
    out.extend_from_slice(b"\",\"ts\":");
    out.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
    out.extend_from_slice(if stale {
        b",\"stale\":true"
    } else {
        b",\"stale\":false"
    });
    if let Some(ladder) = ladder {
        encode_ladder(out, instrument, ladder);
    }
    out.extend_from_slice(tail);
}

/// `,"ladder":{"pricing":"vwap","bands":[{"up_to":"1000000","bid":"1.08400","ask":null},…]}`:
/// a side that is not quoted is `null`.
fn encode_ladder(out: &mut Vec<u8>, instrument: &Instrument, ladder: LadderOut<'_>) {
    out.extend_from_slice(b",\"ladder\":{\"pricing\":\"");
    out.extend_from_slice(ladder.pricing.name().as_bytes());
    out.extend_from_slice(b"\",\"bands\":[");
    for (i, band) in ladder.bands.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let up_to = band.up_to.normalize();
        out.extend_from_slice(b"{\"up_to\":\"");
        write_fixed(out, up_to, up_to.scale());
        out.push(b'"');
        for (name, side) in [(&b",\"bid\":"[..], band.bid), (b",\"ask\":", band.ask)] {
            out.extend_from_slice(name);
            match side {
                Some(price) => {
                    out.push(b'"');
                    write_fixed(out, price, instrument.precision);
                    out.push(b'"');
                }
                None => out.extend_from_slice(b"null"),
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

fn write_decimal_field(out: &mut Vec<u8>, name: &str, value: Decimal) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":\"");
    let value = value.normalize();
    write_fixed(out, value, value.scale());
    out.push(b'"');
}

fn write_string_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    write_json_string(out, value);
}

/// A JSON string literal with the mandatory escapes.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}
