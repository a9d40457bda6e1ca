//! Table tests for size-tiered ladders: full amount and VWAP over one hand-worked book, a book
//! too thin for the last band, a record without depth and one with only a bid size. Every
//! expected value was worked out by hand (see the comments); docs/pricing.md walks through the
//! same book.

use pricefeed::config::Rules;
use pricefeed::transform::process::{ChannelOutput, Processor, RecordMeta};
use serde_json::{Value, json};

/// EURUSD: tick 0.00001, pip 0.0001. Three bands in pips:
/// - up to 1M: bid 0.2, ask 0.3
/// - up to 3M: bid 0.5, ask 0.5
/// - up to 6M: bid 1.0, ask 1.0, min spread 2
fn rules() -> Rules {
    let bands = r#"tiers = [
  { up_to = "1000000", markup = { unit = "pips", bid = "0.2", ask = "0.3" } },
  { up_to = "3000000", markup = { unit = "pips", bid = "0.5", ask = "0.5" } },
  { up_to = "6000000", markup = { unit = "pips", bid = "1.0", ask = "1.0", min_spread = "2" } },
]"#;
    let text = format!(
        "[instruments.EURUSD]\ntick = \"0.00001\"\npip = \"0.0001\"\nprecision = 5\n\n\
         [channels.full]\n{bands}\n\n[channels.vwap]\npricing = \"vwap\"\n{bands}\n\n\
         [channels.flat]\nmarkup = {{ unit = \"pips\", bid = \"0.2\", ask = \"0.3\" }}\n"
    );
    Rules::parse(&text, "ladder tables").expect("valid rules")
}

/// Bids 1.08410 × 1M, 1.08408 × 1M, 1.08405 × 2M, 1.08400 × 1M (5M in all); asks 1.08412 ×
/// 0.5M, 1.08415 × 2M, 1.08420 × 5M (7.5M). Top of book 1.08410 / 1.08412, mid 1.08411.
const BOOK: &str = r#"{"symbol":"EURUSD","bid":"1.08410","ask":"1.08412","ts":1,
  "bids":[["1.08410","1000000"],["1.08408","1000000"],["1.08405","2000000"],["1.08400","1000000"]],
  "asks":[["1.08412","500000"],["1.08415","2000000"],["1.08420","5000000"]]}"#;

/// The records each channel publishes for `raw`, by channel name.
fn publish(raw: &str) -> Vec<(String, Value)> {
    let rules = rules();
    let mut out = Vec::new();
    let meta = RecordMeta {
        key: None,
        timestamp_ms: None,
    };
    Processor::new()
        .process(&rules, None, meta, raw.as_bytes(), 1, |ci, o| match o {
            ChannelOutput::Publish { value, .. } => out.push((
                rules.channels[ci].name.clone(),
                serde_json::from_slice(value).unwrap(),
            )),
            other => panic!("{other:?}"),
        })
        .expect("a valid raw record");
    out
}

fn channel(records: &[(String, Value)], name: &str) -> Value {
    records
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no record on {name}"))
}

fn bands(v: &Value) -> Vec<(String, Value, Value)> {
    v["ladder"]["bands"]
        .as_array()
        .expect("a ladder")
        .iter()
        .map(|b| {
            (
                b["up_to"].as_str().unwrap().into(),
                b["bid"].clone(),
                b["ask"].clone(),
            )
        })
        .collect()
}

fn band(up_to: &str, bid: Option<&str>, ask: Option<&str>) -> (String, Value, Value) {
    (up_to.into(), json!(bid), json!(ask))
}

#[test]
fn full_amount_prices_each_band_at_the_worst_level_it_reaches() {
    let out = publish(BOOK);
    let v = channel(&out, "full");
    // The top of book with the first band's markup: 1.08410 - 0.00002, 1.08412 + 0.00003.
    assert_eq!(
        (v["bid"].as_str(), v["ask"].as_str()),
        (Some("1.08408"), Some("1.08415"))
    );
    assert_eq!(v["ladder"]["pricing"], "full_amount");
    assert_eq!(
        bands(&v),
        vec![
            // 1M: the first bid level holds it (1.08410 - 0.00002); the ask needs the second
            // level (1.08415 + 0.00003).
            band("1000000", Some("1.08408"), Some("1.08418")),
            // 3M: bids reach 1.08405 (- 0.00005); asks reach 1.08420 (+ 0.00005).
            band("3000000", Some("1.08400"), Some("1.08425")),
            // 6M: the bids hold 5M only, not quoted; asks 1.08420 + 0.0001 = 1.08430, above the
            // minimum spread's mid + 0.0001 = 1.08421.
            band("6000000", None, Some("1.08430")),
        ]
    );
    // The same prices without tiers carry no ladder.
    let flat = channel(&out, "flat");
    assert_eq!(
        (flat["bid"].as_str(), flat["ask"].as_str()),
        (Some("1.08408"), Some("1.08415"))
    );
    assert!(flat.get("ladder").is_none(), "{flat}");
}

#[test]
fn vwap_prices_each_band_at_the_average_of_the_levels_it_takes_rounded_outward() {
    let v = channel(&publish(BOOK), "vwap");
    assert_eq!(
        (v["bid"].as_str(), v["ask"].as_str()),
        (Some("1.08408"), Some("1.08415"))
    );
    assert_eq!(v["ladder"]["pricing"], "vwap");
    assert_eq!(
        bands(&v),
        vec![
            // 1M: bid 1.08410 - 0.00002; ask (0.5 × 1.08412 + 0.5 × 1.08415) = 1.084135,
            // + 0.00003 = 1.084165, up to 1.08417.
            band("1000000", Some("1.08408"), Some("1.08417")),
            // 3M: bid (1.08410 + 1.08408 + 1.08405) / 3 = 1.0840766…, - 0.00005 = 1.0840266…,
            // down to 1.08402; ask (0.54206 + 2.16830 + 0.54210) / 3 = 1.0841533…, + 0.00005
            // = 1.0842033…, up to 1.08421. Neither average has a finite decimal form.
            band("3000000", Some("1.08402"), Some("1.08421")),
            // 6M: bids too thin; ask (0.54206 + 2.16830 + 3.5 × 1.08420) / 6 = 6.50506 / 6 =
            // 1.0841766…, + 0.0001 = 1.0842766…, up to 1.08428.
            band("6000000", None, Some("1.08428")),
        ]
    );
}

#[test]
fn without_depth_every_band_is_the_top_of_book_with_its_markup() {
    let raw = r#"{"symbol":"EURUSD","bid":"1.08410","ask":"1.08412","ts":1}"#;
    for name in ["full", "vwap"] {
        let v = channel(&publish(raw), name);
        assert_eq!(
            bands(&v),
            vec![
                band("1000000", Some("1.08408"), Some("1.08415")),
                // 1.08410 - 0.00005, 1.08412 + 0.00005
                band("3000000", Some("1.08405"), Some("1.08417")),
                // bid 1.08400 (below mid - 0.0001 = 1.08401); ask 1.08422 (above 1.08421)
                band("6000000", Some("1.08400"), Some("1.08422")),
            ],
            "{name}"
        );
    }
}

#[test]
fn a_top_of_book_size_is_a_one_level_book() {
    // 2M on the bid, no size on the ask: bids fill the first band only; asks are unsized.
    let raw = r#"{"symbol":"EURUSD","bid":"1.08410","ask":"1.08412","ts":1,"bid_size":"2000000"}"#;
    let v = channel(&publish(raw), "vwap");
    assert_eq!(
        bands(&v),
        vec![
            band("1000000", Some("1.08408"), Some("1.08415")),
            band("3000000", None, Some("1.08417")),
            band("6000000", None, Some("1.08422")),
        ]
    );
    assert_eq!(v["bid_size"], "2000000");
}

#[test]
fn a_depth_ladder_must_agree_with_the_top_of_book() {
    let rules = rules();
    let meta = RecordMeta {
        key: None,
        timestamp_ms: None,
    };
    let mut p = Processor::new();
    let mut run = |raw: &str| {
        p.process(&rules, None, meta, raw.as_bytes(), 1, |_, _| {})
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let mismatch =
        r#"{"symbol":"EURUSD","bid":"1.08411","ask":"1.08412","bids":[["1.08410","1"]]}"#;
    assert_eq!(
        run(mismatch).unwrap_err(),
        "field \"bids\": the first level's price 1.08410 differs from bid 1.08411"
    );
    let size = r#"{"symbol":"EURUSD","bid":"1.08410","ask":"1.08412","bid_size":"2","bids":[["1.08410","1"]]}"#;
    assert!(run(size).unwrap_err().contains("differs from bid_size 2"));
    // With a ladder, bid and ask may be left out: they are its first levels.
    let bare = r#"{"symbol":"EURUSD","bids":[["1.08410","1"]],"asks":[["1.08412","1"]]}"#;
    assert_eq!(run(bare), Ok(()));
    let crossed = r#"{"symbol":"EURUSD","bids":[["1.08413","1"]],"asks":[["1.08412","1"]]}"#;
    assert_eq!(run(crossed).unwrap_err(), "ask is below bid");
}

#[test]
fn a_vwap_just_below_a_tick_rounds_down_exactly() {
    use pricefeed::pricing::{
        Amount, Band, Book, Instrument, Ladder, LadderPricing, Level, PricingRule, Tick,
        quote_ladder,
    };
    use rust_decimal::Decimal;
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    let ins = Instrument {
        symbol: "EURUSD".into(),
        tick: Tick::new(d("0.00001")),
        pip: d("0.0001"),
        precision: 5,
    };
    let zero = Amount::Price(Decimal::ZERO);
    let ladder = Ladder {
        pricing: LadderPricing::Vwap,
        bands: vec![Band {
            up_to: d("3"),
            rule: PricingRule {
                bid: zero,
                ask: zero,
                min_spread: zero,
            },
        }],
    };
    // 2 × 12345.67891 + 1 × 12345.678909999999999999999999 = 37037.036729999999999999999999;
    // over 3 that is 12345.678909999…9666…, which `Decimal` division (29 digits at most)
    // rounds to 12345.67891. The bid is 12345.67890 (the largest tick not above the average),
    // not 12345.67891. The asks mirror it: just above 12345.67893, so the ask is 12345.67894.
    let bids = [
        Level {
            price: d("12345.67891"),
            size: d("2"),
        },
        Level {
            price: d("12345.678909999999999999999999"),
            size: d("1"),
        },
    ];
    let asks = [
        Level {
            price: d("12345.67893"),
            size: d("2"),
        },
        Level {
            price: d("12345.678930000000000000000001"),
            size: d("1"),
        },
    ];
    let mut out = Vec::new();
    let mid = d("12345.67892");
    quote_ladder(
        &ins,
        &ladder,
        mid,
        Book::Levels(&bids),
        Book::Levels(&asks),
        &mut out,
    )
    .unwrap();
    assert_eq!(out[0].bid, Some(d("12345.67890")));
    assert_eq!(out[0].ask, Some(d("12345.67894")));
}
