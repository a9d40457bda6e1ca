//! Hot reload of channels.toml against a running worker: a valid edit takes effect without a
//! restart (file watch, and SIGHUP), an invalid one is rejected and the old rules stay live, and
//! every output record carries the version it was made with.

mod common;

use std::time::Duration;

use common::*;
use pricefeed::config::Rules;

fn config(prefix: &str, bid_pips: &str, ask_pips: &str, extra: &str) -> String {
    format!(
        r#"{kafka}{instruments}
[channels.c]
markup = {{ unit = "pips", bid = "{bid_pips}", ask = "{ask_pips}" }}
{extra}
"#,
        kafka = kafka_table(prefix, 1),
        instruments = instruments(&["EURUSD"]),
    )
}

const PRICE: &str = r#"{"symbol":"EURUSD","bid":"1.10000","ask":"1.10010"}"#;

/// Produces one price and returns the channel record made from it.
fn price_through(broker: &Broker, prefix: &str) -> Rec {
    let before = read_all(broker, &format!("{prefix}.c"), 1).len();
    produce(
        broker,
        &format!("{prefix}.raw"),
        &[(0, Some("EURUSD"), PRICE)],
    );
    wait_for(Duration::from_secs(60), "the channel record", || {
        read_all(broker, &format!("{prefix}.c"), 1)
            .get(before)
            .cloned()
    })
}

/// Produces prices until one made with `version` comes out.
fn wait_for_version(broker: &Broker, prefix: &str, version: &str) -> Rec {
    wait_for(
        Duration::from_secs(30),
        &format!("a record with version {version}"),
        || {
            let r = price_through(broker, prefix);
            (r.header("pricefeed-rules-version") == version).then_some(r)
        },
    )
}

fn version_of(text: &str) -> String {
    Rules::parse(text, "test").unwrap().version
}

#[test]
fn valid_edits_apply_live_and_invalid_ones_keep_the_old_rules() {
    let broker = Broker::start();
    let prefix = unique_prefix("reload");
    let v1 = config(&prefix, "1.0", "1.0", "");
    let v2 = config(&prefix, "2.0", "3.0", "");
    let invalid = config(&prefix, "2.0", "-3.0", "oops = 1");
    let (dir, path) = write_config(&v1);
    ensure_raw(&broker, &prefix);
    let worker = spawn_pricefeed(&broker, &path, &["transform"], dir.path());

    let first = price_through(&broker, &prefix);
    assert_eq!(first.header("pricefeed-rules-version"), version_of(&v1));
    assert_eq!(first.json()["bid"], "1.09990");
    assert_eq!(first.json()["ask"], "1.10020");

    replace_file(&path, &v2);
    let second = wait_for_version(&broker, &prefix, &version_of(&v2));
    assert_eq!(second.json()["bid"], "1.09980");
    assert_eq!(second.json()["ask"], "1.10040");

    replace_file(&path, &invalid);
    wait_for(Duration::from_secs(30), "the rejected reload", || {
        worker
            .metric(r#"pricefeed_config_reloads_total{result="rejected"}"#)
            .filter(|n| *n >= 1.0)
    });
    let log = worker.log_text();
    assert!(log.contains("reload rejected"), "{log}");
    assert!(log.contains("channels.c.oops: unknown key"), "{log}");
    assert!(
        log.contains("channels.c.markup.ask: negative amount"),
        "{log}"
    );
    let third = price_through(&broker, &prefix);
    assert_eq!(third.header("pricefeed-rules-version"), version_of(&v2));
    assert_eq!(third.json()["bid"], "1.09980");
    assert!(worker.child.id() > 0);
}

#[test]
fn sighup_reloads_when_the_file_watch_is_off() {
    let broker = Broker::start();
    let prefix = unique_prefix("sighup");
    let v1 = config(&prefix, "1.0", "1.0", "");
    let v2 = config(&prefix, "0.5", "0.5", "");
    let (dir, path) = write_config(&v1);
    ensure_raw(&broker, &prefix);
    let worker = spawn_pricefeed(&broker, &path, &["transform", "--no-watch"], dir.path());

    assert_eq!(
        price_through(&broker, &prefix).header("pricefeed-rules-version"),
        version_of(&v1)
    );
    replace_file(&path, &v2);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        price_through(&broker, &prefix).header("pricefeed-rules-version"),
        version_of(&v1),
        "without the file watch nothing changes before SIGHUP"
    );
    worker.signal("HUP");
    let after = wait_for_version(&broker, &prefix, &version_of(&v2));
    assert_eq!(after.json()["bid"], "1.09995");
    assert_eq!(after.json()["ask"], "1.10015");
}

fn ensure_raw(broker: &Broker, prefix: &str) {
    create_topic(broker, &format!("{prefix}.raw"), 1);
}
