//! Property tests: the five invariants of the margin engine hold for random prices, ticks and
//! rules (DESIGN.md, "Margin rules: invariants").

use pricefeed::pricing::{Amount, Instrument, PricingRule, Quote, QuoteError, Tick, quote};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn dec(mantissa: i64, scale: u32) -> Decimal {
    Decimal::new(mantissa, scale)
}

/// Ticks: powers of ten and odd grids (0.25, 0.03, 5).
fn tick() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        (0u32..=8).prop_map(|s| dec(1, s)),
        (1i64..=100, 0u32..=6).prop_map(|(m, s)| dec(m, s)),
        Just(dec(25, 2)),
        Just(dec(3, 2)),
        Just(dec(5, 0)),
    ]
}

fn instrument() -> impl Strategy<Value = Instrument> {
    (tick(), 0u32..=3).prop_map(|(tick, pip_exp)| Instrument {
        symbol: "X".into(),
        tick: Tick::new(tick),
        pip: tick * Decimal::from(10i64.pow(pip_exp)),
        precision: tick.scale().max(2),
    })
}

/// A source quote `0 < bid <= ask`, with up to 8 decimals, below 1e9.
fn source() -> impl Strategy<Value = (Decimal, Decimal)> {
    (1i64..1_000_000_000_000, 0u32..=8, 0i64..10_000_000).prop_map(|(m, s, spread)| {
        let bid = dec(m, s);
        (bid, bid + dec(spread, s))
    })
}

/// A non-negative amount, either in price units or relative to the mid.
fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        (0i64..1_000_000, 0u32..=8).prop_map(|(m, s)| Amount::Price(dec(m, s))),
        (0i64..10_000, 4u32..=8).prop_map(|(m, s)| Amount::OfMid(dec(m, s))),
    ]
}

fn rule() -> impl Strategy<Value = PricingRule> {
    (amount(), amount(), amount()).prop_map(|(bid, ask, min_spread)| PricingRule {
        bid,
        ask,
        min_spread,
    })
}

/// `a` plus a non-negative delta of the same kind.
fn larger(a: Amount) -> impl Strategy<Value = Amount> {
    (0i64..1_000_000, 0u32..=8).prop_map(move |(m, s)| match a {
        Amount::Price(p) => Amount::Price(p + dec(m, s)),
        Amount::OfMid(f) => Amount::OfMid(f + dec(m, s + 4)),
    })
}

fn mid(bid: Decimal, ask: Decimal) -> Decimal {
    (bid + ask) / Decimal::TWO
}

fn resolve(a: Amount, bid: Decimal, ask: Decimal) -> Decimal {
    a.resolve(mid(bid, ask)).unwrap()
}

/// Runs the engine; the only acceptable failure is a bid pushed to zero or below.
fn run(ins: &Instrument, rule: &PricingRule, bid: Decimal, ask: Decimal) -> Option<Quote> {
    match quote(ins, rule, bid, ask) {
        Ok(q) => Some(q),
        Err(QuoteError::NonPositiveBid) => {
            // Legitimate exactly when the unrounded bid is below one tick, so that it floors to
            // zero or less (e.g. a price of 16 on a tick of 16 cannot be quoted a tick wide).
            let t = ins.tick.size();
            let half = resolve(rule.min_spread, bid, ask).max(t) / Decimal::TWO;
            let raw_bid = (bid - resolve(rule.bid, bid, ask)).min(mid(bid, ask) - half);
            assert!(
                raw_bid < t,
                "unquotable but the raw bid {raw_bid} is at least a tick {t}"
            );
            None
        }
        Err(e) => panic!("unexpected {e:?} for {bid}/{ask} {rule:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// 1. Never better for the client than the source.
    #[test]
    fn never_better_than_the_source(ins in instrument(), rule in rule(), (bid, ask) in source()) {
        if let Some(q) = run(&ins, &rule, bid, ask) {
            prop_assert!(q.bid <= bid, "bid {} > source {}", q.bid, bid);
            prop_assert!(q.ask >= ask, "ask {} < source {}", q.ask, ask);
        }
    }

    /// 2. Never locked or crossed: the spread is at least max(min_spread, one tick).
    #[test]
    fn spread_at_least_min_spread_and_a_tick(ins in instrument(), rule in rule(), (bid, ask) in source()) {
        if let Some(q) = run(&ins, &rule, bid, ask) {
            let floor = resolve(rule.min_spread, bid, ask).max(ins.tick.size());
            prop_assert!(q.ask - q.bid >= floor, "spread {} < {}", q.ask - q.bid, floor);
            prop_assert!(q.bid > Decimal::ZERO);
        }
    }

    /// 3. On the tick grid, bid rounded toward −∞ and ask toward +∞ by less than one tick.
    #[test]
    fn on_the_tick_grid_rounded_outward(ins in instrument(), rule in rule(), (bid, ask) in source()) {
        if let Some(q) = run(&ins, &rule, bid, ask) {
            let t = ins.tick.size();
            prop_assert!((q.bid % t).is_zero(), "bid {} not a multiple of {}", q.bid, t);
            prop_assert!((q.ask % t).is_zero(), "ask {} not a multiple of {}", q.ask, t);
            // The unrounded quote, from the formula in margin.rs.
            let m = mid(bid, ask);
            let half = resolve(rule.min_spread, bid, ask).max(t) / Decimal::TWO;
            let raw_bid = (bid - resolve(rule.bid, bid, ask)).min(m - half);
            let raw_ask = (ask + resolve(rule.ask, bid, ask)).max(m + half);
            prop_assert!(q.bid <= raw_bid && raw_bid - q.bid < t, "bid {} vs {}", q.bid, raw_bid);
            prop_assert!(q.ask >= raw_ask && q.ask - raw_ask < t, "ask {} vs {}", q.ask, raw_ask);
        }
    }

    /// 4. Deterministic: the same input and rules give the same output.
    #[test]
    fn deterministic(ins in instrument(), rule in rule(), (bid, ask) in source()) {
        prop_assert_eq!(quote(&ins, &rule, bid, ask), quote(&ins, &rule, bid, ask));
    }

    /// 5. A channel whose every amount is larger never quotes better on either side.
    #[test]
    fn larger_markup_never_quotes_better(
        ins in instrument(),
        (a, b) in rule().prop_flat_map(|a| {
            (Just(a), larger(a.bid), larger(a.ask), larger(a.min_spread))
                .prop_map(|(a, bid, ask, min_spread)| (a, PricingRule { bid, ask, min_spread }))
        }),
        (bid, ask) in source(),
    ) {
        if let (Some(qa), Some(qb)) = (run(&ins, &a, bid, ask), run(&ins, &b, bid, ask)) {
            prop_assert!(qb.bid <= qa.bid, "larger markup bid {} > {}", qb.bid, qa.bid);
            prop_assert!(qb.ask >= qa.ask, "larger markup ask {} < {}", qb.ask, qa.ask);
        }
    }
}

proptest! {
    /// With negative markups allowed, invariants 2 and 3 still hold.
    #[test]
    fn negative_markups_keep_the_spread_and_the_grid(
        ins in instrument(),
        (bm, am) in (-1_000i64..1_000, -1_000i64..1_000),
        (bid, ask) in source(),
    ) {
        let t = ins.tick.size();
        let rule = PricingRule {
            bid: Amount::Price(Decimal::from(bm) * t),
            ask: Amount::Price(Decimal::from(am) * t),
            min_spread: Amount::Price(Decimal::ZERO),
        };
        if let Ok(q) = quote(&ins, &rule, bid, ask) {
            prop_assert!(q.ask - q.bid >= t);
            prop_assert!((q.bid % t).is_zero() && (q.ask % t).is_zero());
        }
    }
}

proptest! {
    /// The engine's fast decimal comparison agrees with rust_decimal's everywhere.
    #[test]
    fn fast_comparison_agrees_with_decimal(
        (a, sa, b, sb) in (any::<i64>(), 0u32..=28, any::<i64>(), 0u32..=28)
    ) {
        use pricefeed::pricing::decimal::{cmp, max, min};
        let (x, y) = (dec(a, sa), dec(b, sb));
        prop_assert_eq!(cmp(x, y), x.cmp(&y));
        prop_assert_eq!(min(x, y), x.min(y));
        prop_assert_eq!(max(x, y), x.max(y));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// The integer engine and the Decimal reference give the same quote (or the same error) for
    /// any instrument, rule and price, including negative markups.
    #[test]
    fn integer_and_decimal_engines_agree(
        ins in instrument(),
        rule in rule(),
        (bm, am) in (-1_000i64..1_000, -1_000i64..1_000),
        negative in any::<bool>(),
        (bid, ask) in source(),
    ) {
        use pricefeed::pricing::{midpoint, quote_at_mid, quote_at_mid_decimal};
        let rule = if negative {
            let t = ins.tick.size();
            PricingRule {
                bid: Amount::Price(Decimal::from(bm) * t),
                ask: Amount::Price(Decimal::from(am) * t),
                ..rule
            }
        } else {
            rule
        };
        let mid = midpoint(bid, ask).unwrap();
        prop_assert_eq!(
            quote_at_mid(&ins, &rule, bid, ask, mid),
            quote_at_mid_decimal(&ins, &rule, bid, ask, mid)
        );
    }
}

proptest! {
    /// Wire formatting is exact: exactly `precision` decimals, and it reads back as the same
    /// number.
    #[test]
    fn fixed_formatting_round_trips(m in any::<i64>(), scale in 0u32..=12, extra in 0u32..=6) {
        use pricefeed::pricing::decimal::to_fixed;
        let v = dec(m, scale);
        let precision = scale + extra;
        let text = to_fixed(v, precision);
        let decimals = text.split_once('.').map_or(0, |(_, f)| f.len());
        prop_assert_eq!(decimals as u32, precision, "{}", text);
        prop_assert_eq!(text.parse::<Decimal>().unwrap(), v);
    }
}
