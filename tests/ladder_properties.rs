//! Property tests: the ladder invariants of `src/pricing/ladder.rs` hold for random books (depth
//! ladders, or none), ticks, band sizes, markups and both pricing methods. Each band is checked
//! against a reference computed here from the book, in exact decimal arithmetic: the source price
//! for the band's size (worst level reached, or notional / size), the markup and the minimum
//! spread around the top-of-book mid.

use pricefeed::pricing::{
    Amount, Band, BandQuote, Book, Instrument, Ladder, LadderPricing, Level, PricingRule,
    QuoteError, Tick, quote, quote_ladder, quote_ladder_decimal,
};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn dec(mantissa: i64, scale: u32) -> Decimal {
    Decimal::new(mantissa, scale)
}

fn instrument() -> impl Strategy<Value = Instrument> {
    let tick = prop_oneof![
        (0u32..=6).prop_map(|s| dec(1, s)),
        (1i64..=100, 0u32..=5).prop_map(|(m, s)| dec(m, s)),
        Just(dec(25, 2)),
        Just(dec(3, 2)),
    ];
    (tick, 0u32..=3).prop_map(|(tick, pip_exp)| Instrument {
        symbol: "X".into(),
        tick: Tick::new(tick),
        pip: tick * Decimal::from(10i64.pow(pip_exp)),
        precision: tick.scale().max(2),
    })
}

/// Levels from `top` outward (`dir` -1 for bids, +1 for asks), or `None` for a side without
/// sizes.
fn side(top: Decimal, dir: i64) -> impl Strategy<Value = Option<Vec<Level>>> {
    let levels = prop::collection::vec((1i64..=2_000, (1i64..=1_000_000, 0u32..=2)), 1..8)
        .prop_map(move |raw| {
            let step_scale = top.scale();
            let mut price = top;
            let mut out = Vec::new();
            for (i, (step, (size, size_scale))) in raw.into_iter().enumerate() {
                if i > 0 {
                    price += Decimal::from(dir) * dec(step, step_scale);
                }
                if price <= Decimal::ZERO {
                    break;
                }
                out.push(Level {
                    price,
                    size: dec(size, size_scale),
                });
            }
            out
        });
    prop_oneof![1 => Just(None), 4 => levels.prop_map(Some)]
}

/// A top of book `0 < bid <= ask` and both sides of the book.
fn book() -> impl Strategy<Value = (Decimal, Decimal, Option<Vec<Level>>, Option<Vec<Level>>)> {
    (1i64..10_000_000_000, 0u32..=6, 0i64..100_000).prop_flat_map(|(m, s, spread)| {
        let bid = dec(m, s);
        let ask = bid + dec(spread, s);
        (Just(bid), Just(ask), side(bid, -1), side(ask, 1))
    })
}

fn amount_like(kind_mid: bool) -> BoxedStrategy<Amount> {
    if kind_mid {
        (0i64..1_000, 4u32..=8)
            .prop_map(|(m, s)| Amount::OfMid(dec(m, s)))
            .boxed()
    } else {
        (0i64..100_000, 0u32..=7)
            .prop_map(|(m, s)| Amount::Price(dec(m, s)))
            .boxed()
    }
}

fn add(a: Amount, delta: Amount) -> Amount {
    match (a, delta) {
        (Amount::Price(x), Amount::Price(d)) | (Amount::Price(x), Amount::OfMid(d)) => {
            Amount::Price(x + d)
        }
        (Amount::OfMid(x), Amount::OfMid(d)) | (Amount::OfMid(x), Amount::Price(d)) => {
            Amount::OfMid(x + d / Decimal::from(10_000))
        }
    }
}

/// 1 to 6 bands: ascending sizes, one kind of amount, each amount no smaller than the last.
fn ladder() -> impl Strategy<Value = Ladder> {
    (any::<bool>(), any::<bool>()).prop_flat_map(|(of_mid, vwap)| {
        let first = (
            amount_like(of_mid),
            amount_like(of_mid),
            amount_like(of_mid),
        );
        let steps = prop::collection::vec(
            (
                (1i64..=3_000_000, 0u32..=2),
                (
                    amount_like(of_mid),
                    amount_like(of_mid),
                    amount_like(of_mid),
                ),
            ),
            1..6,
        );
        (first, steps).prop_map(move |((b, a, m), steps)| {
            let mut rule = PricingRule {
                bid: b,
                ask: a,
                min_spread: m,
            };
            let mut up_to = Decimal::ZERO;
            let mut bands = Vec::new();
            for (i, ((size, scale), (db, da, dm))) in steps.into_iter().enumerate() {
                up_to += dec(size, scale);
                if i > 0 {
                    rule = PricingRule {
                        bid: add(rule.bid, db),
                        ask: add(rule.ask, da),
                        min_spread: add(rule.min_spread, dm),
                    };
                }
                bands.push(Band { up_to, rule });
            }
            let pricing = if vwap {
                LadderPricing::Vwap
            } else {
                LadderPricing::FullAmount
            };
            Ladder { pricing, bands }
        })
    })
}

/// The source price of a side for `size` as `(notional, size)`, or `None` when too thin. Full
/// amount: `(worst price, 1)`; no sizes: `(top, 1)`.
fn reference(
    levels: Option<&[Level]>,
    top: Decimal,
    size: Decimal,
    pricing: LadderPricing,
) -> Option<(Decimal, Decimal)> {
    let Some(levels) = levels else {
        return Some((top, Decimal::ONE));
    };
    let mut filled = Decimal::ZERO;
    let mut notional = Decimal::ZERO;
    for l in levels {
        let take = l.size.min(size - filled);
        filled += take;
        notional += take * l.price;
        if filled == size {
            return Some(match pricing {
                LadderPricing::FullAmount => (l.price, Decimal::ONE),
                LadderPricing::Vwap => (notional, size),
            });
        }
    }
    None
}

fn resolve(a: Amount, mid: Decimal) -> Decimal {
    a.resolve(mid).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn ladders_keep_their_invariants(ins in instrument(), (bid, ask, bids, asks) in book(), ladder in ladder()) {
        let mid = (bid + ask) / Decimal::TWO;
        let bid_book = bids.as_deref().map_or(Book::Top(bid), Book::Levels);
        let ask_book = asks.as_deref().map_or(Book::Top(ask), Book::Levels);
        let top = match quote(&ins, &ladder.bands[0].rule, bid, ask) {
            Ok(q) => q,
            Err(QuoteError::NonPositiveBid) => return Ok(()),
            Err(e) => panic!("{e}"),
        };
        let mut out: Vec<BandQuote> = Vec::new();
        quote_ladder(&ins, &ladder, mid, bid_book, ask_book, &mut out).unwrap();
        prop_assert_eq!(out.len(), ladder.bands.len());
        // The integer engine and the Decimal reference agree exactly.
        let mut reference_out: Vec<BandQuote> = Vec::new();
        quote_ladder_decimal(&ins, &ladder, mid, bid_book, ask_book, &mut reference_out).unwrap();
        prop_assert_eq!(&out, &reference_out);
        let tick = ins.tick.size();
        let (mut last_bid, mut last_ask) = (Some(top.bid), Some(top.ask));
        for (band, q) in ladder.bands.iter().zip(&out) {
            prop_assert_eq!(q.up_to, band.up_to);
            let (mb, ma) = (resolve(band.rule.bid, mid), resolve(band.rule.ask, mid));
            let ms = resolve(band.rule.min_spread, mid).max(tick);
            let half = ms / Decimal::TWO;

            // 5. quoted exactly when the book holds the size (and the bid stays positive).
            let src_bid = reference(bids.as_deref(), bid, band.up_to, ladder.pricing);
            let src_ask = reference(asks.as_deref(), ask, band.up_to, ladder.pricing);
            prop_assert_eq!(q.ask.is_some(), src_ask.is_some(), "ask {:?}", q);
            if src_bid.is_none() {
                prop_assert!(q.bid.is_none());
            }

            if let (Some(b), Some((num, den))) = (q.bid, src_bid) {
                // 4. on the grid, and the largest tick multiple <= min(src - mb, mid - ms/2):
                //    x <= that  <=>  x <= mid - half  and  x·den <= num - mb·den.
                prop_assert!(ins.tick.is_multiple(b));
                let below = |x: Decimal| x <= mid - half && x * den <= num - mb * den;
                prop_assert!(below(b), "bid {} above its bound", b);
                prop_assert!(!below(b + tick), "bid {} is not the largest on the grid", b);
                // 3. never better than the source for the same size (markups are >= 0).
                prop_assert!(b * den <= num);
            }
            if let (None, Some((num, den))) = (q.bid, src_bid) {
                // Not quoted with a book deep enough: only when the bid would not be positive.
                let bound = (num / den - mb).min(mid - half);
                prop_assert!(bound < tick, "bid dropped though {} >= tick", bound);
            }
            if let (Some(a), Some((num, den))) = (q.ask, src_ask) {
                prop_assert!(ins.tick.is_multiple(a));
                let above = |x: Decimal| x >= mid + half && x * den >= num + ma * den;
                prop_assert!(above(a), "ask {} below its bound", a);
                prop_assert!(!above(a - tick), "ask {} is not the smallest on the grid", a);
                prop_assert!(a * den >= num);
            }

            // 2. never crossed: the band's spread is at least its minimum (and one tick).
            if let (Some(b), Some(a)) = (q.bid, q.ask) {
                prop_assert!(a - b >= ms, "band {} spread {} < {}", band.up_to, a - b, ms);
            }

            // 1. bid non-increasing, ask non-decreasing with size; once a side is not quoted,
            //    no larger band quotes it.
            match (last_bid, q.bid) {
                (Some(prev), Some(b)) => prop_assert!(b <= prev, "bid {} after {}", b, prev),
                (None, Some(b)) => prop_assert!(false, "bid {} after a band without one", b),
                _ => {}
            }
            match (last_ask, q.ask) {
                (Some(prev), Some(a)) => prop_assert!(a >= prev, "ask {} after {}", a, prev),
                (None, Some(a)) => prop_assert!(false, "ask {} after a band without one", a),
                _ => {}
            }
            last_bid = q.bid;
            last_ask = q.ask;
        }
    }
}
