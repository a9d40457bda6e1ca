//! The latest-price topics: the transform keeps, next to each channel topic, a compacted topic
//! with the newest record of every symbol and the offset it has in the channel topic; an edge
//! learns every symbol's last price from it at start instead of reading the channel's history.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::service::{Role, Service};
use common::ws::{Ws, token};
use common::*;
use serde_json::json;

const SYMBOLS: [&str; 3] = ["EURUSD", "GBPUSD", "USDJPY"];

fn config(prefix: &str, partitions: i32, delivery: &str, extra: &str) -> String {
    format!(
        r#"{kafka}{instruments}
[channels.vip]
markup = {{ unit = "pips", bid = "0.2", ask = "0.2" }}

[channels.retail]
markup = {{ unit = "pips", bid = "1", ask = "1" }}
{extra}"#,
        kafka = kafka_table_with(prefix, partitions, delivery),
        instruments = instruments(&SYMBOLS),
    )
}

/// `n` raw records cycling through the symbols, each symbol always on the same partition.
fn raw(n: usize, partitions: i32) -> Vec<(i32, String, String)> {
    (0..n)
        .map(|i| {
            let s = SYMBOLS[i % SYMBOLS.len()];
            let p = (i % SYMBOLS.len()) as i32 % partitions;
            let v = format!(
                r#"{{"symbol":"{s}","bid":"1.{i:04}","ask":"1.{:04}"}}"#,
                i + 2
            );
            (p, s.to_string(), v)
        })
        .collect()
}

fn produce_raw(broker: &Broker, topic: &str, records: &[(i32, String, String)]) {
    let r: Vec<(i32, Option<&str>, &str)> = records
        .iter()
        .map(|(p, k, v)| (*p, Some(k.as_str()), v.as_str()))
        .collect();
    produce(broker, topic, &r);
}

/// Per (partition, symbol): the last record of that symbol.
fn last_per_symbol(records: &[Rec]) -> BTreeMap<(i32, String), Rec> {
    records
        .iter()
        .map(|r| ((r.partition, r.key.clone().unwrap()), r.clone()))
        .collect()
}

/// The latest-price topic names, for every symbol, the newest record of the channel topic: its
/// partition, offset and value, in both delivery modes.
#[test]
fn the_latest_price_topic_names_each_symbols_newest_channel_record() {
    let broker = Broker::start();
    for delivery in ["idempotent", "transactional"] {
        let prefix = unique_prefix(&format!("latest-{delivery}"));
        let (_dir, path) = write_config(&config(&prefix, 2, delivery, ""));
        let raw_topic = format!("{prefix}.raw");
        create_topic(&broker, &raw_topic, 2);
        let worker = Service::start(&broker, &path, Role::Transform);
        for round in 0..3 {
            produce_raw(&broker, &raw_topic, &raw(40, 2));
            for channel in ["vip", "retail"] {
                let topic = format!("{prefix}.{channel}");
                let records = wait_for(Duration::from_secs(60), &topic, || {
                    let r = read_all(&broker, &topic, 2);
                    (r.len() == 40 * (round + 1)).then_some(r)
                });
                let want = last_per_symbol(&records);
                let latest_topic = format!("{topic}.latest");
                // Written at the checkpoint after the channel records: wait for it.
                let got = wait_for(Duration::from_secs(30), &latest_topic, || {
                    let got = last_per_symbol(&read_all(&broker, &latest_topic, 2));
                    let named = |r: &Rec| {
                        (
                            r.header("pricefeed-channel-partition")
                                .parse::<i32>()
                                .unwrap(),
                            r.header("pricefeed-channel-offset").parse::<i64>().unwrap(),
                        )
                    };
                    let current = got.len() == want.len()
                        && want
                            .iter()
                            .all(|(k, w)| got.get(k).is_some_and(|g| named(g).1 == w.offset));
                    current.then_some(got)
                });
                for (key, w) in &want {
                    let g = &got[key];
                    assert_eq!(g.partition, w.partition, "{delivery} {key:?}");
                    assert_eq!(
                        g.header("pricefeed-channel-partition"),
                        w.partition.to_string()
                    );
                    assert_eq!(
                        g.value, w.value,
                        "{delivery} {key:?}: the record's own value"
                    );
                }
                // Every latest-price record ever written names a record of the channel topic
                // with the same value (never an aborted or unwritten one).
                for l in read_all(&broker, &latest_topic, 2) {
                    let offset: i64 = l.header("pricefeed-channel-offset").parse().unwrap();
                    let named = records
                        .iter()
                        .find(|r| r.partition == l.partition && r.offset == offset)
                        .unwrap_or_else(|| panic!("{delivery}: {l:?} names no channel record"));
                    assert_eq!((&named.key, &named.value), (&l.key, &l.value));
                }
            }
        }
        worker.stop().unwrap();
    }
}

/// An edge keeping 16 records per partition in memory reads only those from the channel topic at
/// start, yet its snapshot has the symbol that last ticked 200 records ago, with its seqNo.
#[test]
fn an_edge_learns_symbols_older_than_its_history_without_reading_it() {
    let broker = Broker::start();
    let prefix = unique_prefix("latest-edge");
    let extra = "[edge]\nhistory_per_partition = 16\nmax_lag_records = 16\n";
    let (_dir, path) = write_config(&config(&prefix, 1, "idempotent", extra));
    let raw_topic = format!("{prefix}.raw");
    create_topic(&broker, &raw_topic, 1);
    let worker = Service::start(&broker, &path, Role::Transform);
    let mut records = vec![(
        0,
        "USDJPY".to_string(),
        r#"{"symbol":"USDJPY","bid":"150.10","ask":"150.12"}"#.to_string(),
    )];
    records.extend(raw(200, 1).into_iter().filter(|r| r.1 != "USDJPY"));
    produce_raw(&broker, &raw_topic, &records);
    let topic = format!("{prefix}.retail");
    let channel = wait_for(Duration::from_secs(60), &topic, || {
        let r = read_all(&broker, &topic, 1);
        (r.len() == records.len()).then_some(r)
    });
    wait_for(Duration::from_secs(30), "the latest prices", || {
        let l = last_per_symbol(&read_all(&broker, &format!("{topic}.latest"), 1));
        let done = l.len() == SYMBOLS.len()
            && l.values().all(|r| {
                let o: i64 = r.header("pricefeed-channel-offset").parse().unwrap();
                channel.iter().rfind(|c| c.key == r.key).unwrap().offset == o
            });
        done.then_some(())
    });

    let edge = Service::start(&broker, &path, Role::Edge);
    let read_at_start = edge
        .metric(r#"pricefeed_edge_records_in_total{channel="retail"}"#)
        .unwrap_or(0.0);
    assert!(
        read_at_start <= 16.0,
        "the edge read {read_at_start} records of a channel at start, more than its history"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ws = Ws::connect(edge.http_port, "/ws").await;
        ws.setup(&token("ann", &["retail"], None, false, 600)).await;
        ws.send(json!({"type": "subscribe", "topic": "retail"}))
            .await;
        ws.expect("subscribed").await;
        let snap = ws.expect("snapshot").await;
        let prices = snap["prices"].as_array().unwrap();
        let mut got: Vec<(String, i64)> = prices
            .iter()
            .map(|p| {
                assert_eq!(p["partition"], 0);
                let symbol = p["data"]["symbol"].as_str().unwrap().to_string();
                let last = channel
                    .iter()
                    .rfind(|r| r.key.as_deref() == Some(&symbol))
                    .unwrap();
                assert_eq!(
                    p["data"],
                    last.json(),
                    "{symbol}: the channel record itself"
                );
                (symbol, p["seqNo"].as_i64().unwrap())
            })
            .collect();
        got.sort();
        let usdjpy = channel.iter().find(|r| r.key.as_deref() == Some("USDJPY"));
        assert_eq!(usdjpy.unwrap().offset, 0);
        assert_eq!(got.len(), SYMBOLS.len(), "{snap}");
        assert!(got.contains(&("USDJPY".to_string(), 0)), "{snap}");
        assert_eq!(snap["upTo"]["0"], channel.last().unwrap().offset, "{snap}");
        ws.close().await;
    });
    edge.stop().unwrap();
    worker.stop().unwrap();
}
