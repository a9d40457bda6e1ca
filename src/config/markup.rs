//! A markup table, `{ unit = "pips", bid = "0.5", ask = "0.7", min_spread = "1.0" }`: a
//! channel's default, an instrument's override, or one size band's.

use rust_decimal::Decimal;
use toml::Value;

use super::walk::{Walker, join};
use crate::pricing::decimal::MAX_PRICE;
use crate::pricing::{Markup, Unit};

/// `{ unit = "pips", bid = "0.5", ask = "0.7", min_spread = "1.0" }`
pub(super) fn parse_markup(
    w: &mut Walker,
    path: &str,
    value: &Value,
    allow_negative: bool,
) -> Option<Markup> {
    let t = w.table(path, value)?;
    let before = w.errors.len();
    w.only_keys(path, t, &["unit", "bid", "ask", "min_spread"]);
    let unit = match t.get("unit") {
        None => {
            w.error(
                join(path, "unit"),
                format!("missing: one of {}", Unit::NAMES.join(", ")),
            );
            None
        }
        Some(v) => w.string(&join(path, "unit"), v).and_then(|s| {
            let u = Unit::parse(s);
            if u.is_none() {
                w.error(
                    join(path, "unit"),
                    format!("{s:?} is not one of: {}", Unit::NAMES.join(", ")),
                );
            }
            u
        }),
    };
    // Upper bounds catch typos that would quote a zero bid for every price.
    let limit = match unit {
        Some(Unit::Bps) => Decimal::from(10_000),
        Some(Unit::Percent) => Decimal::ONE_HUNDRED,
        _ => MAX_PRICE,
    };
    let mut amount = |key: &str, negative_ok: bool| -> Decimal {
        let p = join(path, key);
        let Some(d) = t.get(key).and_then(|v| w.decimal(&p, v)) else {
            if !t.contains_key(key) && key != "min_spread" {
                w.error(&p, "missing");
            }
            return Decimal::ZERO;
        };
        if d.is_sign_negative() && !d.is_zero() && !negative_ok {
            let hint = if key == "min_spread" {
                String::new()
            } else {
                " (set allow_negative = true on the channel to allow quoting inside the source)"
                    .to_string()
            };
            w.error(&p, format!("negative amount {d}{hint}"));
        } else if d.abs() >= limit {
            w.error(&p, format!("{d} is out of range (must be below {limit})"));
        }
        d
    };
    let bid = amount("bid", allow_negative);
    let ask = amount("ask", allow_negative);
    let min_spread = amount("min_spread", false);
    (w.errors.len() == before).then(|| Markup {
        unit: unit.expect("checked above"),
        bid,
        ask,
        min_spread,
    })
}
