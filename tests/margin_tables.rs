//! Table tests for the margin engine: each markup unit, JPY pips, a 0.25 tick, overrides,
//! minimum spread, skew, negative markups and unquotable prices. Every expected value was worked
//! out by hand (see the comment on each row).

use std::str::FromStr;

use pricefeed::config::Rules;
use pricefeed::pricing::decimal::to_fixed;
use pricefeed::pricing::{QuoteError, quote};
use rust_decimal::Decimal;

const RULES: &str = r#"
[instruments.EURUSD]
tick = "0.00001"
pip = "0.0001"
precision = 5

[instruments.USDJPY]
tick = "0.001"
pip = "0.01"
precision = 3

[instruments.ES]
tick = "0.25"
pip = "0.25"
precision = 2

[instruments.BTCUSD]
tick = "0.01"
pip = "1"
precision = 2

[channels.pips]
markup = { unit = "pips", bid = "0.5", ask = "0.7" }

[channels.bps]
markup = { unit = "bps", bid = "2", ask = "2" }

[channels.pct]
markup = { unit = "percent", bid = "0.1", ask = "0.1" }

[channels.abs]
markup = { unit = "abs", bid = "0.0003", ask = "0.0003" }
overrides.ES = { unit = "abs", bid = "0.5", ask = "0.5" }

[channels.minspread]
markup = { unit = "pips", bid = "0", ask = "0", min_spread = "3" }

[channels.zero]
markup = { unit = "pips", bid = "0", ask = "0" }

[channels.override]
markup = { unit = "pips", bid = "1", ask = "1" }
overrides.BTCUSD = { unit = "bps", bid = "10", ask = "10", min_spread = "25" }

[channels.neg]
allow_negative = true
markup = { unit = "pips", bid = "-0.5", ask = "1.0" }
"#;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn q(channel: &str, symbol: &str, bid: &str, ask: &str) -> Result<(String, String), QuoteError> {
    let rules = Rules::parse(RULES, "table").unwrap();
    let i = rules.instrument_index(symbol).unwrap();
    let instrument = &rules.instruments[i];
    let rule = rules.channel(channel).unwrap().rules[i].unwrap();
    quote(instrument, &rule, d(bid), d(ask)).map(|q| {
        (
            to_fixed(q.bid, instrument.precision),
            to_fixed(q.ask, instrument.precision),
        )
    })
}

fn ok(bid: &str, ask: &str) -> Result<(String, String), QuoteError> {
    Ok((bid.to_string(), ask.to_string()))
}

#[test]
fn each_markup_unit() {
    let cases = [
        // pips, skewed: 0.5 pip = 0.00005 off the bid, 0.7 pip = 0.00007 on the ask.
        (
            "pips",
            "EURUSD",
            "1.08412",
            "1.08431",
            ok("1.08407", "1.08438"),
        ),
        // bps of mid 1.084215: 0.000216843; bid 1.083903157 floors, ask 1.084526843 ceils.
        (
            "bps",
            "EURUSD",
            "1.08412",
            "1.08431",
            ok("1.08390", "1.08453"),
        ),
        // percent: 0.1% of mid 97005 = 97.005; 96902.995 → 96902.99, 97107.005 → 97107.01.
        (
            "pct",
            "BTCUSD",
            "97000.00",
            "97010.00",
            ok("96902.99", "97107.01"),
        ),
        // abs: 0.0003 price units each side.
        (
            "abs",
            "EURUSD",
            "1.08412",
            "1.08431",
            ok("1.08382", "1.08461"),
        ),
    ];
    for (channel, symbol, bid, ask, want) in cases {
        assert_eq!(
            q(channel, symbol, bid, ask),
            want,
            "{channel} {symbol} {bid}/{ask}"
        );
    }
}

#[test]
fn jpy_pips_are_hundredths() {
    // 0.5 pip = 0.005, 0.7 pip = 0.007 on a 0.001 tick.
    assert_eq!(
        q("pips", "USDJPY", "151.502", "151.508"),
        ok("151.497", "151.515")
    );
}

#[test]
fn quarter_tick_rounds_outward() {
    // 0.5 × 0.25 = 0.125 and 0.7 × 0.25 = 0.175: 6000.125 floors to 6000.00, 6000.675 ceils
    // to 6000.75.
    assert_eq!(
        q("pips", "ES", "6000.25", "6000.50"),
        ok("6000.00", "6000.75")
    );
    // Already on the grid stays on the grid.
    assert_eq!(
        q("abs", "ES", "6000.25", "6000.50"),
        ok("5999.75", "6001.00")
    );
}

#[test]
fn source_prices_finer_than_the_tick_round_outward() {
    // Zero markup, one tick minimum spread: 1.084121 → 1.08412, 1.084309 → 1.08431.
    assert_eq!(
        q("zero", "EURUSD", "1.084121", "1.084309"),
        ok("1.08412", "1.08431")
    );
}

#[test]
fn overrides_replace_the_channel_markup_for_one_instrument() {
    // Channel default (1 pip) for EURUSD.
    assert_eq!(
        q("override", "EURUSD", "1.08412", "1.08431"),
        ok("1.08402", "1.08441")
    );
    // BTCUSD: 10 bps of 97005 = 97.005 per side, but the 25 bps minimum spread (242.5125,
    // half 121.25625 around the mid) is wider: 96883.74375 → 96883.74, 97126.25625 → 97126.26.
    assert_eq!(
        q("override", "BTCUSD", "97000.00", "97010.00"),
        ok("96883.74", "97126.26")
    );
    // The ES override of the abs channel is 0.5, not 0.0003.
    assert_eq!(
        q("abs", "ES", "6000.00", "6000.25"),
        ok("5999.50", "6000.75")
    );
}

#[test]
fn minimum_spread_widens_symmetrically_around_the_mid() {
    let cases = [
        // 0.8 pip source spread, 3 pip minimum: mid 1.08416 ± 0.00015.
        ("1.08412", "1.08420", ok("1.08401", "1.08431")),
        // Already wider than the minimum: unchanged.
        ("1.08400", "1.08450", ok("1.08400", "1.08450")),
        // Mid 1.084125 ± 0.00015 = 1.083975 / 1.084275: rounding outward gives 3.1 pips.
        ("1.08412", "1.08413", ok("1.08397", "1.08428")),
    ];
    for (bid, ask, want) in cases {
        assert_eq!(q("minspread", "EURUSD", bid, ask), want, "{bid}/{ask}");
    }
}

#[test]
fn a_locked_source_is_never_quoted_locked() {
    // Zero markup: the one-tick minimum spread around mid 1.084 gives 1.083995 / 1.084005,
    // rounded outward.
    assert_eq!(
        q("zero", "EURUSD", "1.08400", "1.08400"),
        ok("1.08399", "1.08401")
    );
}

#[test]
fn negative_markups_quote_inside_the_source_only_when_allowed() {
    // bid − (−0.5 pip) = 1.08417, still under mid − half tick; ask + 1 pip.
    assert_eq!(
        q("neg", "EURUSD", "1.08412", "1.08431"),
        ok("1.08417", "1.08441")
    );
    let text = RULES.replace("allow_negative = true\n", "");
    let errors = Rules::parse(&text, "t").unwrap_err();
    assert_eq!(errors.errors.len(), 1, "{errors}");
    assert_eq!(errors.errors[0].path, "channels.neg.markup.bid");
}

#[test]
fn a_bid_pushed_to_zero_or_below_is_unquotable() {
    assert_eq!(
        q("abs", "EURUSD", "0.00020", "0.00030"),
        Err(QuoteError::NonPositiveBid)
    );
}
