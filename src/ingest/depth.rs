//! Depth ladders in raw records: `"bids":[["1.08412","1000000"],["1.08410","3000000"]]` and
//! `"asks"`, each level `[price, size]` as decimal strings or JSON numbers (read from their
//! text, never through `f64`), best price first.

use rust_decimal::Decimal;

use simd_json::prelude::*;
use simd_json::tape::Value;

use super::numbers::{Scanner, parse_decimal, value_text};
use super::reject::Reject;
use crate::pricing::Level;
use crate::pricing::decimal::MAX_PRICE;
use crate::pricing::depth::MAX_SIZE;

/// At most this many levels per side.
pub const MAX_LEVELS: usize = 50;

fn invalid(field: &'static str, reason: impl Into<String>) -> Reject {
    Reject::InvalidField {
        field,
        reason: reason.into(),
    }
}

/// The levels of `field` into `out` (cleared first), checked: prices positive and at most
/// 10^12, sizes positive and at most 10^15, prices strictly worse from level to level (falling
/// for bids, rising for asks). Levels of decimal strings are read from the parse tape; any
/// other shape (numbers, or a mistake to report) from the payload's text.
pub(super) fn levels(
    payload: &[u8],
    field: &'static str,
    value: Option<&Value<'_, '_>>,
    out: &mut Vec<Level>,
) -> Result<(), Reject> {
    if !value.is_some_and(|v| from_tape(v, out)) {
        read_levels(payload, field, out)?;
    }
    for (i, level) in out.iter().enumerate() {
        let previous = i.checked_sub(1).map(|j| &out[j]);
        check_level(field, i, level.price, level.size, previous)?;
    }
    Ok(())
}

/// Levels whose prices and sizes are all decimal strings, from the tape; false for anything
/// else (the text path reads it, or names what is wrong).
fn from_tape(value: &Value<'_, '_>, out: &mut Vec<Level>) -> bool {
    out.clear();
    let Some(items) = value.as_array() else {
        return false;
    };
    if items.len() > MAX_LEVELS {
        return false;
    }
    for item in items.iter() {
        let Some(pair) = item.as_array() else {
            return false;
        };
        let mut it = pair.iter();
        let (Some(p), Some(s), None) = (it.next(), it.next(), it.next()) else {
            return false;
        };
        let decimal = |v: Value<'_, '_>| v.as_str().and_then(parse_decimal);
        let (Some(price), Some(size)) = (decimal(p), decimal(s)) else {
            return false;
        };
        out.push(Level { price, size });
    }
    true
}

/// Reads the levels of the top-level member `field` of `payload` into `out` (cleared first)
/// from its text.
fn read_levels(payload: &[u8], field: &'static str, out: &mut Vec<Level>) -> Result<(), Reject> {
    out.clear();
    let text = value_text(payload, field).ok_or_else(|| invalid(field, "not found"))?;
    let mut s = Scanner::new(text);
    let shape = || invalid(field, "expected an array of [price, size] levels");
    if !s.eat(b'[') {
        return Err(shape());
    }
    s.ws();
    if s.eat(b']') {
        return Ok(());
    }
    loop {
        if out.len() == MAX_LEVELS {
            return Err(invalid(field, format!("more than {MAX_LEVELS} levels")));
        }
        let i = out.len();
        s.ws();
        if !s.eat(b'[') {
            return Err(invalid(field, format!("level {i}: expected [price, size]")));
        }
        let price = element(&mut s, field, i, "price")?;
        s.ws();
        if !s.eat(b',') {
            return Err(invalid(field, format!("level {i}: expected [price, size]")));
        }
        let size = element(&mut s, field, i, "size")?;
        s.ws();
        if !s.eat(b']') {
            return Err(invalid(
                field,
                format!("level {i}: expected [price, size], found more"),
            ));
        }
        out.push(Level { price, size });
        s.ws();
        if s.eat(b']') {
            return Ok(());
        }
        if !s.eat(b',') {
            return Err(shape());
        }
    }
}

/// A price or size: a decimal string or a JSON number, parsed from its text.
fn element(
    s: &mut Scanner<'_>,
    field: &'static str,
    i: usize,
    what: &str,
) -> Result<Decimal, Reject> {
    s.ws();
    let text: &[u8] = if s.rest().first() == Some(&b'"') {
        s.string().unwrap_or_default()
    } else {
        let before = s.rest();
        s.value()
            .ok_or_else(|| invalid(field, format!("level {i}: missing {what}")))?;
        &before[..before.len() - s.rest().len()]
    };
    std::str::from_utf8(text)
        .ok()
        .and_then(parse_decimal)
        .ok_or_else(|| {
            let shown = String::from_utf8_lossy(&text[..text.len().min(40)]).into_owned();
            invalid(
                field,
                format!("level {i}: {what} {shown:?} is not an exact decimal number"),
            )
        })
}

fn check_level(
    field: &'static str,
    i: usize,
    price: Decimal,
    size: Decimal,
    previous: Option<&Level>,
) -> Result<(), Reject> {
    if price <= Decimal::ZERO || price > MAX_PRICE {
        return Err(invalid(
            field,
            format!("level {i}: price {price} is not positive and at most 1e12"),
        ));
    }
    if size <= Decimal::ZERO || size > MAX_SIZE {
        return Err(invalid(
            field,
            format!("level {i}: size {size} is not positive and at most 1e15"),
        ));
    }
    if let Some(prev) = previous {
        let worse = if field == "bids" {
            price < prev.price
        } else {
            price > prev.price
        };
        if !worse {
            let order = if field == "bids" { "fall" } else { "rise" };
            return Err(invalid(
                field,
                format!(
                    "level {i}: price {price} after {}: {field} prices must {order} from level \
                     to level (best first, no repeats)",
                    prev.price
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn parsed(json: &str, field: &'static str) -> Result<Vec<(String, String)>, Reject> {
        let mut out = Vec::new();
        super::levels(json.as_bytes(), field, None, &mut out)?;
        // The tape gives the same levels when they are all strings.
        let mut bytes = json.as_bytes().to_vec();
        if let Ok(tape) = simd_json::to_tape(&mut bytes) {
            let obj = tape.as_value();
            let v = obj.as_object().and_then(|o| o.get(field));
            let mut from = Vec::new();
            if v.is_some_and(|v| from_tape(&v, &mut from)) {
                assert_eq!(from, out, "{json}");
            }
        }
        Ok(out
            .iter()
            .map(|l| (l.price.to_string(), l.size.to_string()))
            .collect())
    }

    #[test]
    fn reads_strings_and_numbers_exactly() {
        let j = r#"{"bids":[["1.08412","1000000"], [1.0841, 2.5e6] ,[ 1.08405 , "500000.5" ]]}"#;
        assert_eq!(
            parsed(j, "bids").unwrap(),
            vec![
                ("1.08412".into(), "1000000".into()),
                (
                    "1.0841".into(),
                    Decimal::from_str("2500000").unwrap().to_string()
                ),
                ("1.08405".into(), "500000.5".into()),
            ]
        );
        assert_eq!(parsed(r#"{"asks":[]}"#, "asks").unwrap(), vec![]);
    }

    #[test]
    fn refuses_bad_levels_with_the_level_named() {
        let cases = [
            (r#"{"bids":{"a":1}}"#, "expected an array"),
            (r#"{"bids":[1,2]}"#, "level 0: expected [price, size]"),
            (r#"{"bids":[["1"]]}"#, "level 0: expected [price, size]"),
            (r#"{"bids":[["1","2","3"]]}"#, "found more"),
            (r#"{"bids":[["x","2"]]}"#, "level 0: price \"x\""),
            (r#"{"bids":[["1",null]]}"#, "level 0: size \"null\""),
            (r#"{"bids":[["1","0"]]}"#, "level 0: size 0 is not positive"),
            (r#"{"bids":[["-1","5"]]}"#, "level 0: price -1"),
            (
                r#"{"bids":[["1","5"],["1","5"]]}"#,
                "level 1: price 1 after 1: bids prices must fall",
            ),
            (r#"{"bids":[["1","5"],["1.1","5"]]}"#, "must fall"),
        ];
        for (json, expected) in cases {
            let e = parsed(json, "bids").unwrap_err();
            assert!(e.to_string().contains(expected), "{json}: {e}");
        }
        let e = parsed(r#"{"asks":[["1.1","5"],["1.0","5"]]}"#, "asks").unwrap_err();
        assert!(e.to_string().contains("asks prices must rise"), "{e}");
        let many: Vec<String> = (0..51)
            .map(|i| format!("[\"{}\",\"1\"]", 100 - i))
            .collect();
        let e = parsed(&format!("{{\"bids\":[{}]}}", many.join(",")), "bids").unwrap_err();
        assert!(e.to_string().contains("more than 50 levels"), "{e}");
    }
}
