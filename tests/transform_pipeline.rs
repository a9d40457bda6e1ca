//! End to end against a real broker: raw records in, channel records and dead letters out.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use pricefeed::config::Rules;

const PARTITIONS: i32 = 3;

fn config(prefix: &str) -> String {
    format!(
        r#"{kafka}{instruments}
[channels.tight]
markup = {{ unit = "pips", bid = "0.1", ask = "0.1" }}

[channels.wide]
symbols = ["EURUSD", "USDJPY"]
markup = {{ unit = "pips", bid = "1.0", ask = "1.5", min_spread = "3" }}
"#,
        kafka = kafka_table(prefix, PARTITIONS),
        instruments = instruments(&["EURUSD", "USDJPY", "ES"]),
    )
}

#[test]
fn every_raw_record_becomes_one_record_per_channel_and_bad_ones_are_dead_lettered() {
    let broker = Broker::start();
    let prefix = unique_prefix("pipeline");
    let text = config(&prefix);
    let version = Rules::parse(&text, "test").unwrap().version;
    let (dir, path) = write_config(&text);
    let raw = format!("{prefix}.raw");

    // The worker creates the channel topics once the raw topic exists.
    pricefeed_create_raw(&broker, &raw);
    let worker = spawn_pricefeed(&broker, &path, &["transform"], dir.path());

    let eur = r#"{"symbol":"EURUSD","bid":"1.08412","ask":"1.08431","ts":1732230000123}"#;
    let jpy = r#"{"symbol":"USDJPY","bid":151.502,"ask":151.508}"#;
    let es = r#"{"symbol":"ES","bid":"6000.25","ask":"6000.50","ts":1732230000999,"id":"q-\"7\""}"#;
    // A long non-ASCII value quoted in the error detail must not break the dead-letter path.
    let long_bad = format!(
        r#"{{"symbol":"EURUSD","bid":"{}","ask":"1.1"}}"#,
        "€".repeat(700)
    );
    let bad: Vec<(Option<&str>, &str, &str)> = vec![
        (Some("EURUSD"), "not json", "malformed_json"),
        (Some("EURUSD"), "[1,2]", "not_an_object"),
        (
            Some("GBPUSD"),
            r#"{"symbol":"GBPUSD","bid":"1.2","ask":"1.3"}"#,
            "unknown_symbol",
        ),
        (
            Some("EURUSD"),
            r#"{"symbol":"EURUSD","bid":"0","ask":"1.1"}"#,
            "non_positive_bid",
        ),
        (
            Some("EURUSD"),
            r#"{"symbol":"EURUSD","bid":"1.2","ask":"1.1"}"#,
            "crossed_price",
        ),
        (
            Some("EURUSD"),
            r#"{"symbol":"EURUSD","bid":"1.1"}"#,
            "missing_field",
        ),
        (Some("USDJPY"), eur, "key_mismatch"),
        (
            Some("EURUSD"),
            r#"{"symbol":"EURUSD","bid":"abc","ask":"1.1"}"#,
            "invalid_field",
        ),
        (Some("EURUSD"), &long_bad, "invalid_field"),
    ];
    // Partition 0: good, every bad record, good again (the stream goes on after bad input).
    let mut p0: Vec<(i32, Option<&str>, &str)> = vec![(0, Some("EURUSD"), eur)];
    p0.extend(bad.iter().map(|(k, v, _)| (0, *k, *v)));
    p0.push((0, Some("USDJPY"), jpy));
    p0.push((0, Some("ES"), es));
    produce(&broker, &raw, &p0);
    produce(
        &broker,
        &raw,
        &[
            (1, Some("USDJPY"), jpy),
            (2, Some("ES"), es),
            (2, None, eur),
        ],
    );

    let tight = wait_for(Duration::from_secs(60), "6 records on tight", || {
        let r = read_all(&broker, &format!("{prefix}.tight"), PARTITIONS);
        (r.len() >= 6).then_some(r)
    });
    let wide = wait_for(Duration::from_secs(30), "4 records on wide", || {
        let r = read_all(&broker, &format!("{prefix}.wide"), PARTITIONS);
        (r.len() >= 4).then_some(r)
    });
    let dlq = wait_for(Duration::from_secs(30), "9 dead letters", || {
        let r = read_all(&broker, &format!("{prefix}.dlq"), PARTITIONS);
        (r.len() >= bad.len()).then_some(r)
    });
    std::thread::sleep(Duration::from_secs(2));
    let tight_again = read_all(&broker, &format!("{prefix}.tight"), PARTITIONS);
    assert_eq!(
        tight_again.len(),
        6,
        "no extra records on tight: {tight_again:#?}"
    );

    // (partition, raw offset) → (bid, ask) expected, computed by hand in the test's comments.
    // EURUSD 1.08412/1.08431: tight −/+ 0.1 pip; wide −1.0/+1.5 pips (spread 4.4 ≥ 3 pips).
    // USDJPY 151.502/151.508: tight −/+ 0.001; wide min spread 0.03 around mid 151.505 lowers
    //   the bid to 151.490, the ask stays at 151.508 + 0.015.
    // ES 6000.25/6000.50 on a 0.25 grid: 6000.225 floors to 6000.00, 6000.525 ceils to 6000.75.
    let expect_tight: HashMap<(i32, i64), (&str, &str)> = HashMap::from([
        ((0, 0), ("1.08411", "1.08432")),
        ((0, 10), ("151.501", "151.509")),
        ((0, 11), ("6000.00", "6000.75")),
        ((1, 0), ("151.501", "151.509")),
        ((2, 0), ("6000.00", "6000.75")),
        ((2, 1), ("1.08411", "1.08432")),
    ]);
    let expect_wide: HashMap<(i32, i64), (&str, &str)> = HashMap::from([
        ((0, 0), ("1.08402", "1.08446")),
        ((0, 10), ("151.490", "151.523")),
        ((1, 0), ("151.490", "151.523")),
        ((2, 1), ("1.08402", "1.08446")),
    ]);
    for (records, expected) in [(&tight, &expect_tight), (&wide, &expect_wide)] {
        assert_eq!(records.len(), expected.len());
        for r in records {
            let raw_offset: i64 = r.header("pricefeed-raw-offset").parse().unwrap();
            let (bid, ask) = expected
                .get(&(r.partition, raw_offset))
                .unwrap_or_else(|| panic!("unexpected record {r:?}"));
            let v = r.json();
            assert_eq!(v["bid"], *bid, "{r:?}");
            assert_eq!(v["ask"], *ask, "{r:?}");
            assert_eq!(v["stale"], false);
            assert_eq!(r.header("pricefeed-rules-version"), version);
            // Keyed by symbol, also when the raw record had no key.
            assert_eq!(r.key.as_deref(), v["symbol"].as_str());
        }
        // Ordered by raw offset within each partition.
        for w in records.windows(2) {
            if w[0].partition == w[1].partition {
                let a: i64 = w[0].header("pricefeed-raw-offset").parse().unwrap();
                let b: i64 = w[1].header("pricefeed-raw-offset").parse().unwrap();
                assert!(a < b);
            }
        }
    }
    // Source ts is carried; a record without ts gets the Kafka timestamp; ids are escaped.
    let es_rec = tight
        .iter()
        .find(|r| r.partition == 0 && r.header("pricefeed-raw-offset") == "11")
        .unwrap();
    assert_eq!(es_rec.json()["ts"], 1732230000999i64);
    assert_eq!(es_rec.json()["id"], "q-\"7\"");
    let jpy_rec = tight.iter().find(|r| r.partition == 1).unwrap();
    assert!(jpy_rec.json()["ts"].as_i64().unwrap() > 1_700_000_000_000);

    // Dead letters: same partition, original bytes, the reason in a header, in order.
    assert_eq!(dlq.len(), bad.len());
    for (rec, (key, value, reason)) in dlq.iter().zip(&bad) {
        assert_eq!(rec.partition, 0);
        assert_eq!(rec.value, *value);
        assert_eq!(rec.key.as_deref(), *key);
        assert_eq!(rec.header("pricefeed-error"), *reason, "{rec:?}");
        assert!(!rec.header("pricefeed-error-detail").is_empty());
        assert_eq!(rec.header("pricefeed-raw-topic"), raw);
        assert_eq!(rec.header("pricefeed-raw-partition"), "0");
    }
    let raw_offsets: Vec<&str> = dlq
        .iter()
        .map(|r| r.header("pricefeed-raw-offset"))
        .collect();
    assert_eq!(raw_offsets, ["1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    assert!(dlq[8].header("pricefeed-error-detail").len() <= 1024);

    // Metrics count what happened.
    assert_eq!(worker.metric("pricefeed_raw_records_total"), Some(15.0));
    assert_eq!(
        worker.metric(r#"pricefeed_dead_lettered_total{reason="unknown_symbol"}"#),
        Some(1.0)
    );
    assert_eq!(
        worker.metric(r#"pricefeed_channel_records_total{channel="wide"}"#),
        Some(4.0)
    );
    drop(worker);
}

/// The raw topic is created by the feed side (here: the test), with the test's partitions.
fn pricefeed_create_raw(broker: &Broker, raw: &str) {
    create_topic(broker, raw, PARTITIONS);
}

#[test]
fn a_single_channel_worker_writes_only_its_channel_and_its_own_dead_letters() {
    let broker = Broker::start();
    let prefix = unique_prefix("one-channel");
    let (dir, path) = write_config(&config(&prefix));
    let raw = format!("{prefix}.raw");
    pricefeed_create_raw(&broker, &raw);
    let worker = spawn_pricefeed(
        &broker,
        &path,
        &["transform", "--channel", "wide"],
        dir.path(),
    );

    let eur = r#"{"symbol":"EURUSD","bid":"1.08412","ask":"1.08431"}"#;
    let es = r#"{"symbol":"ES","bid":"6000.25","ask":"6000.50"}"#;
    // The last price is so small that wide's 1 pip markup would push the bid below zero.
    let tiny = r#"{"symbol":"EURUSD","bid":"0.00005","ask":"0.00006"}"#;
    produce(
        &broker,
        &raw,
        &[
            (0, Some("EURUSD"), eur),
            (0, Some("ES"), es),
            (0, Some("EURUSD"), "{oops"),
            (0, Some("EURUSD"), tiny),
        ],
    );
    wait_for(Duration::from_secs(60), "the wide record", || {
        let r = read_all(&broker, &format!("{prefix}.wide"), PARTITIONS);
        (!r.is_empty()).then_some(())
    });
    let dlq = wait_for(Duration::from_secs(30), "the channel's dead letter", || {
        let r = read_all(&broker, &format!("{prefix}.dlq.wide"), PARTITIONS);
        (!r.is_empty()).then_some(r)
    });
    wait_for(Duration::from_secs(30), "the unquotable price", || {
        worker
            .metric(r#"pricefeed_withheld_total{channel="wide",reason="unquotable"}"#)
            .filter(|n| *n >= 1.0)
    });
    let wide = read_all(&broker, &format!("{prefix}.wide"), PARTITIONS);
    assert_eq!(
        wide.len(),
        1,
        "ES is not carried, the tiny price is withheld: {wide:?}"
    );
    assert_eq!(wide[0].json()["bid"], "1.08402");
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].header("pricefeed-error"), "malformed_json");
    assert_eq!(dlq[0].header("pricefeed-raw-offset"), "2");
    // The other channel and the all-channel dead-letter topic are not this group's business.
    assert!(read_all(&broker, &format!("{prefix}.tight"), PARTITIONS).is_empty());
    assert!(read_all(&broker, &format!("{prefix}.dlq"), PARTITIONS).is_empty());
    assert!(
        // The fixture prefixes the default group name with the test's raw topic (tests share
        // a broker); the default itself is a unit test in src/transform/mod.rs.
        worker
            .log_text()
            .contains(&format!("group={raw}.pricefeed-transform-wide ")),
        "its own consumer group: {}",
        worker.log_text()
    );
}

#[test]
fn an_unknown_channel_is_refused_at_start() {
    let prefix = unique_prefix("no-channel");
    let (_dir, path) = write_config(&config(&prefix));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pricefeed"))
        .arg("--config")
        .arg(&path)
        .args(["--brokers", "127.0.0.1:1", "transform", "--channel", "nope"])
        .env("PRICEFEED_HTTP_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown channel \"nope\""), "{stderr}");
}

#[test]
fn a_session_timeout_the_broker_refuses_stops_the_worker_with_a_clear_error() {
    let broker = Broker::start();
    let prefix = unique_prefix("bad-session");
    let (dir, path) = write_config(&config(&prefix));
    pricefeed_create_raw(&broker, &format!("{prefix}.raw"));
    // Below Kafka's group.min.session.timeout.ms (6 s): the JoinGroup is refused every time.
    let mut worker = spawn_pricefeed(
        &broker,
        &path,
        &[
            "--kafka-option",
            "consumer.session.timeout.ms=3000",
            "transform",
        ],
        dir.path(),
    );
    let status = wait_for(Duration::from_secs(60), "the worker to stop", || {
        worker.child.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(1), "{}", worker.log_text());
    let log = worker.log_text();
    assert!(
        log.contains("the broker refused the consumer group settings")
            && log.contains("group.min.session.timeout.ms"),
        "{log}"
    );
}
