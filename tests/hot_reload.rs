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

#[test]
fn a_channel_added_to_the_file_is_served_by_the_running_edge() {
    use common::ws::{Received, Ws, token, unix_now_ms};
    use serde_json::{Value, json};

    let broker = Broker::start();
    let prefix = unique_prefix("added");
    let (dir, path) = write_config(&config(&prefix, "0.1", "0.1", ""));
    let raw = format!("{prefix}.raw");
    create_topic(&broker, &raw, 1);
    // The new channel's topic already holds a price (an earlier life of the channel): the edge
    // reads the topic up to there before it serves the channel.
    create_topic(&broker, &format!("{prefix}.fresh"), 1);
    let earlier = format!(
        r#"{{"symbol":"EURUSD","bid":"1.00000","ask":"1.00010","ts":{},"stale":false}}"#,
        unix_now_ms()
    );
    produce(
        &broker,
        &format!("{prefix}.fresh"),
        &[(0, Some("EURUSD"), &earlier)],
    );
    let node = spawn_pricefeed(&broker, &path, &["run"], dir.path());
    wait_ready(&node, Duration::from_secs(60));
    let port = node.http_port;
    let every_channel = token("ann", &["*"], None, false, 600);
    let fresh = "[channels.fresh]\nmarkup = { unit = \"pips\", bid = \"2\", ask = \"2\" }\n";
    let price = || produce(&broker, &raw, &[(0, Some("EURUSD"), PRICE)]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // A client connected before the edit streams channel c across it.
        let mut early = Ws::connect(port, "/ws").await;
        early.setup(&every_channel).await;
        early.send(json!({"type": "subscribe", "topic": "c"})).await;
        early.expect("subscribed").await;
        let mut c = Received::default();
        c.take(&early.expect("snapshot").await);
        let c_from = c.last.get(&0).copied().unwrap_or(-1);
        early
            .send(json!({"type": "subscribe", "topic": "fresh"}))
            .await;
        early.expect_error("unknown_topic").await;

        replace_file(&path, &config(&prefix, "0.1", "0.1", fresh));
        // The transform takes the new rules, the edge finds the channel and reads its topic:
        // served within seconds, on the connection that was already open. Prices keep coming.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let snapshot: Value = 'served: loop {
            price();
            early
                .send(json!({"type": "subscribe", "topic": "fresh"}))
                .await;
            loop {
                let f = early.next(Duration::from_secs(10)).await.expect("a frame");
                match (f["type"].as_str(), f["topic"].as_str()) {
                    (_, Some("c")) => c.take(&f),
                    (Some("subscribed"), Some("fresh")) => {
                        break 'served early.expect("snapshot").await;
                    }
                    (Some("error"), _) if f["code"] == "unknown_topic" => break,
                    _ => panic!("unexpected frame {f}"),
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the running edge never served the added channel:\n{}",
                node.log_text()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        // The snapshot covers what the topic held when the edge found it.
        assert!(snapshot["upTo"]["0"].as_i64() >= Some(0), "{snapshot}");

        // A price made with the new channel's rules reaches the client, seqNo = its offset; c
        // goes on with every record, none twice.
        let c_before = c.count();
        price();
        let m = loop {
            let f = early.next(Duration::from_secs(20)).await.expect("a frame");
            match f["topic"].as_str() {
                Some("c") => c.take(&f),
                Some("fresh") if f["type"] == "message" => break f,
                _ => panic!("unexpected frame {f}"),
            }
        };
        assert_eq!(
            (m["data"]["bid"].as_str(), m["data"]["ask"].as_str()),
            (Some("1.09980"), Some("1.10030")),
            "{m}"
        );
        let records = read_all(&broker, &format!("{prefix}.fresh"), 1);
        let record = records.iter().find(|r| m["seqNo"] == r.offset);
        assert_eq!(
            record.map(|r| r.json()["bid"].clone()),
            Some(m["data"]["bid"].clone()),
            "seqNo is the record's offset: {m}"
        );
        while c.count() == c_before {
            let f = early.expect("message").await;
            c.take(&f);
        }
        let seqs = &c.seqs[&0];
        assert_eq!(
            seqs[0],
            c_from + 1,
            "c's first message follows its snapshot"
        );
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "c skipped or repeated records across the change: {seqs:?}"
        );

        // A connection opened afterwards gets the new channel's latest price in its snapshot.
        let mut late = Ws::connect(port, "/ws").await;
        late.setup(&every_channel).await;
        late.send(json!({"type": "subscribe", "topic": "fresh"}))
            .await;
        late.expect("subscribed").await;
        let snap = late.expect("snapshot").await;
        assert_eq!(snap["prices"][0]["data"]["bid"], "1.09980", "{snap}");
    });
    let stats = http_get(port, "/stats").unwrap();
    assert!(stats.contains("\"topic\":\"fresh\""), "{stats}");
}
