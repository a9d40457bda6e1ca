//! Slow clients at the edge: a client that stops reading on a `conflate` channel is skipped ahead
//! to the latest price per symbol (marked `conflated`), one on a `close` channel is closed with
//! `slow_consumer`, one that accepts nothing at all is dropped after the write timeout, and a
//! client reading normally meanwhile receives every record in order.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::service::{Role, Service};
use common::tiers::{TIERS, depth};
use common::ws::{Ended, Received, Ws, token};
use common::*;
use rdkafka::config::FromClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};

const PARTITIONS: i32 = 3;
const SYMBOLS: [&str; 3] = ["EURUSD", "GBPUSD", "USDJPY"];
const MAX_LAG: usize = 256;
/// A small receive buffer makes a client that stops reading push back on the server quickly.
const SMALL_RCVBUF: u32 = 4096;
/// The reading client's buffer (capped by the kernel's `rmem_max`): a client with headroom, as a
/// trading UI on a good link has. With the kernel's small starting window, a test task starved of
/// CPU for ~70 ms on a loaded 2-core CI machine pushed back long enough to count as slow.
const ROOMY_RCVBUF: u32 = 4 << 20;

fn config(prefix: &str) -> String {
    format!(
        "{}\n[edge]\nmax_lag_records = {MAX_LAG}\nhistory_per_partition = 1024\n\
         write_timeout_ms = 5000\nheartbeat_ms = 60000\nsend_buffer_bytes = 16384\n\n{}\
         [channels.vip]\n{TIERS}slow_client = \"conflate\"\n\n\
         [channels.retail]\nmarkup = {{ unit = \"pips\", bid = \"1\", ask = \"1\" }}\nslow_client = \"close\"\n",
        kafka_table(prefix, PARTITIONS),
        instruments(&SYMBOLS)
    )
}

async fn subscribed(port: u16, user: &str, topics: &[&str], rcvbuf: Option<u32>) -> (Ws, Received) {
    let mut c = Ws::connect_with(port, "/ws", rcvbuf).await;
    c.setup(&token(user, &["vip", "retail"], None, false, 600))
        .await;
    let mut rx = Received::default();
    for t in topics {
        c.send(json!({"type": "subscribe", "topic": t})).await;
        c.expect("subscribed").await;
        rx.take(&c.expect("snapshot").await);
    }
    (c, rx)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

#[test]
fn slow_clients_are_conflated_or_closed_and_never_slow_the_others() {
    let broker = Broker::start();
    let prefix = unique_prefix("edge-slow");
    let (_dir, path) = write_config(&config(&prefix));
    let raw = format!("{prefix}.raw");
    create_topic(&broker, &raw, PARTITIONS);
    let node = Service::start(&broker, &path, Role::Run);
    let port = node.http_port;

    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        // Per-client records: (topic, partition) → seqNos; the fast one reads both channels.
        let (mut fast, _) = subscribed(port, "fast", &["vip", "retail"], Some(ROOMY_RCVBUF)).await;
        let (mut pausing, mut pausing_rx) =
            subscribed(port, "pausing", &["vip"], Some(SMALL_RCVBUF)).await;
        let (mut closer, _) =
            subscribed(port, "never-retail", &["retail"], Some(SMALL_RCVBUF)).await;
        let (mut stuck, _) = subscribed(port, "never-vip", &["vip"], Some(SMALL_RCVBUF)).await;

        // A feed of 2,000 prices per second for 6 seconds.
        let producer: BaseProducer =
            BaseProducer::from_config(&settings(&broker).producer_config()).unwrap();
        let feed_stop = stop.clone();
        let raw_topic = raw.clone();
        let feeder = std::thread::spawn(move || {
            let mut i = 0usize;
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(6) && !feed_stop.load(Ordering::Relaxed) {
                for _ in 0..40 {
                    let s = i % 3;
                    let ts = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis();
                    let (bid, ask) = (20_000 + i % 40_000, 20_004 + i % 40_000);
                    let v = format!(
                        r#"{{"symbol":"{}","bid":"1.{bid:05}","ask":"1.{ask:05}","ts":{ts}{}}}"#,
                        SYMBOLS[s],
                        depth(bid, ask)
                    );
                    producer
                        .send(
                            BaseRecord::to(&raw_topic)
                                .partition(s as i32)
                                .key(SYMBOLS[s])
                                .payload(&v),
                        )
                        .map_err(|(e, _)| e)
                        .unwrap();
                    i += 1;
                }
                producer.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(20));
            }
            producer.flush(Duration::from_secs(30)).unwrap();
            i
        });

        // The fast client reads everything as it comes, measuring latency from the source ts.
        let fast_task = tokio::spawn(async move {
            let mut by_topic: BTreeMap<String, Received> = BTreeMap::new();
            let mut latency_ms = Vec::new();
            while let Some(v) = fast.next(Duration::from_secs(5)).await {
                if v["type"] == "message" {
                    assert!(
                        v.get("conflated").is_none(),
                        "the fast client was conflated: {v}"
                    );
                    let ts = v["data"]["ts"].as_i64().unwrap();
                    latency_ms.push(ws::unix_now_ms() - ts);
                    by_topic
                        .entry(v["topic"].as_str().unwrap().to_string())
                        .or_default()
                        .take(&v);
                }
            }
            (by_topic, latency_ms)
        });

        // The pausing client stops reading for 2.5 s, then reads on.
        tokio::time::sleep(Duration::from_millis(500)).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let mut conflated = 0;
        while let Some(v) = pausing.next(Duration::from_secs(5)).await {
            if v["type"] == "message" {
                if v["conflated"] == true {
                    conflated += 1;
                }
                pausing_rx.take(&v);
            }
        }
        let total = feeder.join().unwrap();
        let (fast_rx, mut latency_ms) = fast_task.await.unwrap();

        let vip = read_all(&broker, &format!("{prefix}.vip"), PARTITIONS);
        let retail = read_all(&broker, &format!("{prefix}.retail"), PARTITIONS);
        assert_eq!(vip.len(), total);
        assert_eq!(retail.len(), total);
        // vip is size-tiered: every record carries its ladder.
        assert!(
            vip.iter()
                .all(|r| r.json()["ladder"]["bands"].as_array().map(Vec::len) == Some(3))
        );

        // The fast client: every record of both channels, in order, once.
        for (topic, records) in [("vip", &vip), ("retail", &retail)] {
            let rx = &fast_rx[topic];
            for p in 0..PARTITIONS as i64 {
                let expected: Vec<i64> = records
                    .iter()
                    .filter(|r| r.partition as i64 == p)
                    .map(|r| r.offset)
                    .collect();
                assert_eq!(
                    rx.seqs.get(&p),
                    Some(&expected),
                    "fast client, {topic} partition {p}"
                );
            }
        }
        latency_ms.sort_unstable();
        eprintln!(
            "fast client: {} frames, latency from source ts p50 {} ms, p99 {} ms, max {} ms",
            latency_ms.len(),
            percentile(&latency_ms, 0.5),
            percentile(&latency_ms, 0.99),
            latency_ms.last().unwrap()
        );

        // The pausing client was skipped ahead, marked, in order, and ends on the latest prices.
        assert!(
            conflated > 0,
            "no conflated frame reached the pausing client"
        );
        assert!(
            pausing_rx.count() < total,
            "it received everything: nothing was conflated"
        );
        for seqs in pausing_rx.seqs.values() {
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "out of order: {seqs:?}"
            );
        }
        let last_kafka: HashMap<String, Value> = vip
            .iter()
            .map(|r| (r.key.clone().unwrap(), r.json()))
            .collect();
        let mut last_seen: HashMap<String, Value> = HashMap::new();
        for m in &pausing_rx.messages {
            last_seen.insert(
                m["data"]["symbol"].as_str().unwrap().to_string(),
                m["data"].clone(),
            );
        }
        assert_eq!(
            last_seen, last_kafka,
            "the pausing client ends on the latest price of each symbol"
        );

        // The never-reading clients: closed for lag on the `close` channel, dropped for the
        // write timeout on the `conflate` one.
        assert!(!matches!(
            closer.until_closed(Duration::from_secs(30)).await,
            Ended::Timeout
        ));
        assert!(!matches!(
            stuck.until_closed(Duration::from_secs(30)).await,
            Ended::Timeout
        ));
    });
    let lag = node
        .metric("pricefeed_edge_slow_consumer_closes_total{reason=\"lag\"}")
        .unwrap_or(0.0);
    let timeout = node
        .metric("pricefeed_edge_slow_consumer_closes_total{reason=\"write_timeout\"}")
        .unwrap_or(0.0);
    let conflations = node
        .metric("pricefeed_edge_conflated_total{channel=\"vip\"}")
        .unwrap_or(0.0);
    assert!(lag >= 1.0, "no slow_consumer close for lag");
    assert!(timeout >= 1.0, "no close for the write timeout");
    assert!(conflations >= 1.0);
}
