//! `tiers = [{ up_to = "1000000", markup = {…} }, …]`: a channel's size bands, for all its
//! instruments or in an override for one. Bands ascend by size, share one markup unit, and a
//! larger band's amounts are never smaller (so it can never quote tighter).

use rust_decimal::Decimal;
use toml::Value;

use super::markup::parse_markup;
use super::walk::{Walker, join};
use crate::pricing::depth::MAX_SIZE;
use crate::pricing::{Band, Instrument, Ladder, LadderPricing, Markup};

/// At most this many bands per ladder.
pub const MAX_BANDS: usize = 16;

/// Bands as configured, before they are resolved for an instrument.
#[derive(Clone, Debug)]
pub(super) struct TierSpec(Vec<(Decimal, Markup)>);

impl TierSpec {
    /// The first band's markup: it prices the top-of-book quote.
    pub fn first(&self) -> &Markup {
        &self.0[0].1
    }

    pub fn resolve(&self, instrument: &Instrument, pricing: LadderPricing) -> Ladder {
        Ladder {
            pricing,
            bands: self
                .0
                .iter()
                .map(|(up_to, markup)| Band {
                    up_to: *up_to,
                    rule: markup.resolve(instrument),
                })
                .collect(),
        }
    }
}

pub(super) fn parse_tiers(
    w: &mut Walker,
    path: &str,
    value: &Value,
    allow_negative: bool,
) -> Option<TierSpec> {
    let Value::Array(items) = value else {
        w.error(
            path,
            "expected an array of bands, e.g. tiers = [{ up_to = \"1000000\", markup = { unit = \
             \"pips\", bid = \"0.2\", ask = \"0.2\" } }]",
        );
        return None;
    };
    if items.is_empty() {
        w.error(path, "empty: a ladder needs at least one band");
        return None;
    }
    if items.len() > MAX_BANDS {
        w.error(path, format!("{} bands: at most {MAX_BANDS}", items.len()));
        return None;
    }
    let before = w.errors.len();
    let mut bands: Vec<(Decimal, Markup)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let bp = format!("{path}[{i}]");
        let Some(t) = w.table(&bp, item) else {
            continue;
        };
        w.only_keys(&bp, t, &["up_to", "markup"]);
        let up_to = match t.get("up_to") {
            None => {
                w.error(join(&bp, "up_to"), "missing: the band's largest size");
                None
            }
            Some(v) => w.positive_decimal(&join(&bp, "up_to"), v, MAX_SIZE),
        };
        let markup = match t.get("markup") {
            None => {
                w.error(join(&bp, "markup"), "missing: the band's markup table");
                None
            }
            Some(v) => parse_markup(w, &join(&bp, "markup"), v, allow_negative),
        };
        let (Some(up_to), Some(markup)) = (up_to, markup) else {
            continue;
        };
        if let Some((j, (prev_size, prev))) = bands.len().checked_sub(1).map(|j| (j, &bands[j])) {
            check_order(w, &bp, path, j, (*prev_size, prev), (up_to, &markup));
        }
        bands.push((up_to, markup));
    }
    (w.errors.len() == before && bands.len() == items.len()).then_some(TierSpec(bands))
}

/// Band `bp` against the band `j` before it (of ladder `path`).
fn check_order(
    w: &mut Walker,
    bp: &str,
    path: &str,
    j: usize,
    (prev_size, prev): (Decimal, &Markup),
    (up_to, markup): (Decimal, &Markup),
) {
    let prev_path = format!("{path}[{j}]");
    if up_to <= prev_size {
        w.error(
            join(bp, "up_to"),
            format!(
                "{up_to} is not larger than {prev_path}.up_to ({prev_size}): bands ascend by size"
            ),
        );
    }
    let mp = join(bp, "markup");
    if markup.unit != prev.unit {
        w.error(
            join(&mp, "unit"),
            format!(
                "differs from {prev_path}'s: the bands of one ladder use one unit, so that a \
                 larger band can be checked never to quote tighter"
            ),
        );
        return;
    }
    for (key, now, before) in [
        ("bid", markup.bid, prev.bid),
        ("ask", markup.ask, prev.ask),
        ("min_spread", markup.min_spread, prev.min_spread),
    ] {
        if now < before {
            w.error(
                join(&mp, key),
                format!(
                    "{now} is below {prev_path}'s {before}: a larger band never quotes tighter \
                     than a smaller one"
                ),
            );
        }
    }
}
