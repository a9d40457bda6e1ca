//! Raw record decoding: exact decimals from strings and JSON numbers, every reject reason, and
//! no panic on any input.

use std::str::FromStr;

use pricefeed::ingest::decode::parse_decimal;
use pricefeed::ingest::{Decoder, Reject};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

#[test]
fn strings_and_json_numbers_both_decode_exactly() {
    let mut dec = Decoder::new();
    let cases = [
        (
            r#"{"symbol":"EURUSD","bid":"1.08412","ask":"1.08431"}"#,
            "1.08412",
            "1.08431",
        ),
        (
            r#"{"symbol":"EURUSD","bid":1.08412,"ask":1.08431}"#,
            "1.08412",
            "1.08431",
        ),
        // Not representable in f64: parsed from the text, digit for digit.
        (
            r#"{"symbol":"X","bid":0.30000000000000004,"ask":0.3000000000000000444089209850}"#,
            "0.30000000000000004",
            "0.3000000000000000444089209850",
        ),
        (
            r#"{"symbol":"X","bid":1e-3,"ask":"2.5E+2"}"#,
            "0.001",
            "250",
        ),
        (
            r#"{"symbol":"X","bid":97000,"ask":97001}"#,
            "97000",
            "97001",
        ),
        (
            r#" { "ask" : "2" , "x":{"bid":9}, "symbol" : "X" , "bid" : 1 } "#,
            "1",
            "2",
        ),
    ];
    for (json, bid, ask) in cases {
        let p = dec
            .decode(json.as_bytes())
            .unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!((p.bid, p.ask), (d(bid), d(ask)), "{json}");
    }
}

#[test]
fn optional_fields_and_unknown_fields() {
    let mut dec = Decoder::new();
    let p = dec
        .decode(br#"{"symbol":"EURUSD","bid":"1","ask":"2","ts":1732230000123,"bid_size":"1000000","ask_size":2.5,"id":"a\"b","source":"lp1","venue":"ignored"}"#)
        .unwrap();
    assert_eq!(p.symbol, "EURUSD");
    assert_eq!(p.ts, Some(1_732_230_000_123));
    assert_eq!(p.bid_size, Some(d("1000000")));
    assert_eq!(p.ask_size, Some(d("2.5")));
    assert_eq!(p.id, Some("a\"b"));
    assert_eq!(p.source, Some("lp1"));

    let p = dec
        .decode(br#"{"symbol":"EURUSD","bid":"1","ask":"2","ts":"1732230000123","id":null}"#)
        .unwrap();
    assert_eq!(p.ts, Some(1_732_230_000_123));
    assert_eq!(p.id, None);
    let p = dec
        .decode(br#"{"symbol":"EURUSD","bid":"1","ask":"1"}"#)
        .unwrap();
    assert_eq!(p.ts, None, "no ts: the Kafka timestamp is used later");
}

#[test]
fn every_reject_reason() {
    let mut dec = Decoder::new();
    let cases: &[(&[u8], &str)] = &[
        (b"", "malformed_json"),
        (b"{\"symbol\":", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b"[1,2]", "not_an_object"),
        (b"\"EURUSD\"", "not_an_object"),
        (br#"{"bid":"1","ask":"2"}"#, "missing_field"),
        (br#"{"symbol":"X","ask":"2"}"#, "missing_field"),
        (br#"{"symbol":"X","bid":"1"}"#, "missing_field"),
        (br#"{"symbol":"X","bid":null,"ask":"2"}"#, "missing_field"),
        (br#"{"symbol":7,"bid":"1","ask":"2"}"#, "invalid_field"),
        (br#"{"symbol":"","bid":"1","ask":"2"}"#, "invalid_field"),
        (br#"{"symbol":"X","bid":"1,5","ask":"2"}"#, "invalid_field"),
        (br#"{"symbol":"X","bid":"1.","ask":"2"}"#, "invalid_field"),
        (br#"{"symbol":"X","bid":" 1","ask":"2"}"#, "invalid_field"),
        (br#"{"symbol":"X","bid":"NaN","ask":"2"}"#, "invalid_field"),
        (br#"{"symbol":"X","bid":true,"ask":"2"}"#, "invalid_field"),
        (
            br#"{"symbol":"X","bid":"1","ask":"2","ts":1.5}"#,
            "invalid_field",
        ),
        (
            br#"{"symbol":"X","bid":"1","ask":"2","ts":-1}"#,
            "invalid_field",
        ),
        (
            br#"{"symbol":"X","bid":"1","ask":"2","bid_size":"-1"}"#,
            "invalid_field",
        ),
        (
            br#"{"symbol":"X","bid":"1","ask":"2","id":5}"#,
            "invalid_field",
        ),
        (br#"{"symbol":"X","bid":"0","ask":"2"}"#, "non_positive_bid"),
        (
            br#"{"symbol":"X","bid":"-1","ask":"2"}"#,
            "non_positive_bid",
        ),
        (br#"{"symbol":"X","bid":"2","ask":"1.99"}"#, "crossed_price"),
        (
            br#"{"symbol":"X","bid":"1","ask":"1000000000001"}"#,
            "price_out_of_range",
        ),
    ];
    for (input, code) in cases {
        let err = dec
            .decode(input)
            .expect_err(&String::from_utf8_lossy(input));
        assert_eq!(
            err.code(),
            *code,
            "{} → {err}",
            String::from_utf8_lossy(input)
        );
        assert!(!err.to_string().is_empty());
    }
    // One code per reason, and the list of codes is complete.
    assert_eq!(Reject::CODES.len(), 9);
}

#[test]
fn decimal_grammar_is_strict_json_numbers() {
    for ok in [
        "0",
        "-1",
        "1.5",
        "1e3",
        "1E-3",
        "12.50e+2",
        "0.000000000000000000000000001",
    ] {
        assert!(parse_decimal(ok).is_some(), "{ok}");
    }
    for bad in [
        "", "-", ".5", "5.", "1e", "0x10", "1_000", "+1", "1.2.3", "١",
    ] {
        assert!(parse_decimal(bad).is_none(), "{bad}");
    }
    // More digits than a Decimal holds: refused rather than rounded.
    assert!(parse_decimal("1.00000000000000000000000000000001").is_none());
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Decoder::new().decode(&bytes);
    }

    #[test]
    fn never_panics_on_json_like_text(s in r#"[\{\}\[\]":,0-9a-z\.eE\+\- ]{0,80}"#) {
        let _ = Decoder::new().decode(s.as_bytes());
    }

    #[test]
    fn any_decimal_round_trips_as_string_and_as_number(m in 1i64..i64::MAX, scale in 0u32..=18) {
        let v = Decimal::new(m, scale);
        let mut dec = Decoder::new();
        for json in [
            format!(r#"{{"symbol":"X","bid":"{v}","ask":"{v}"}}"#),
            format!(r#"{{"symbol":"X","bid":{v},"ask":{v}}}"#),
        ] {
            match dec.decode(json.as_bytes()) {
                Ok(p) => prop_assert_eq!((p.bid, p.ask), (v, v)),
                Err(e) => prop_assert_eq!(e.code(), "price_out_of_range"),
            }
        }
    }
}
