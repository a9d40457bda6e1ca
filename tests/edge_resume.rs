//! Resume (I₆) with real clients, a live feed and two edge processes: a client that drops
//! mid-stream and resumes, on the same edge and on another one, receives exactly the records it
//! missed and then the live ones (an offset that is not in the log: tests/edge_resume_gap.rs).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::tiers::{TIERS, depth};
use common::ws::{Received, Ws, token};
use common::*;
use rdkafka::config::FromClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};

const PARTITIONS: i32 = 3;
const SYMBOLS: [&str; 3] = ["EURUSD", "GBPUSD", "USDJPY"];
/// Small, so that a resume after a longer drop is served from Kafka, a short one from memory.
const HISTORY: usize = 200;

fn config_with(prefix: &str, delivery: &str) -> String {
    format!(
        "{}\n[edge]\nhistory_per_partition = {HISTORY}\nmax_lag_records = {HISTORY}\n\n{}\
         [channels.vip]\n{TIERS}",
        kafka_table_with(prefix, PARTITIONS, delivery),
        instruments(&SYMBOLS)
    )
}

/// Produces raw prices at about `per_sec` until `stop`; counts what it wrote.
fn feed(
    broker: &Broker,
    raw: String,
    per_sec: usize,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    let producer: BaseProducer =
        BaseProducer::from_config(&settings(broker).producer_config()).unwrap();
    std::thread::spawn(move || {
        let batch = per_sec / 50;
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..batch {
                let s = i % SYMBOLS.len();
                let (bid, ask) = (10_000 + i % 50_000, 10_003 + i % 50_000);
                let value = format!(
                    r#"{{"symbol":"{}","bid":"1.{bid:05}","ask":"1.{ask:05}"{}}}"#,
                    SYMBOLS[s],
                    depth(bid, ask)
                );
                let r = BaseRecord::to(&raw)
                    .partition(s as i32)
                    .key(SYMBOLS[s])
                    .payload(&value);
                producer.send(r).map_err(|(e, _)| e).unwrap();
                i += 1;
            }
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(20));
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        written.store(i, Ordering::SeqCst);
    })
}

/// Reads until at least `n` more messages arrived (and, when `until_resumed`, the `resumed` frame).
async fn read_some(ws: &mut Ws, rx: &mut Received, n: usize, until_resumed: bool) -> Option<Value> {
    let target = rx.count() + n;
    let mut resumed = None;
    while rx.count() < target || (until_resumed && resumed.is_none()) {
        let v = ws.next(Duration::from_secs(30)).await.unwrap_or_else(|| {
            panic!("stream stopped at {} messages ({:?})", rx.count(), ws.ended)
        });
        match v["type"].as_str() {
            Some("resumed") => resumed = Some(v),
            Some("message") => {
                assert!(
                    v.get("conflated").is_none(),
                    "no conflation expected here: {v}"
                );
                rx.take(&v)
            }
            Some("snapshot") if !until_resumed => rx.take(&v),
            Some("subscribed") => {}
            _ => panic!("unexpected frame {v}"),
        }
    }
    resumed
}

#[test]
fn a_client_resumes_on_the_same_and_on_another_edge_with_no_gap_and_no_duplicate() {
    resume_on_two_edges("idempotent");
}

/// With transactions, commit markers take offsets: seqNos jump, `prev` steps over the markers,
/// and an edge started when every partition ends in a marker still gets ready and resumes.
#[test]
fn with_transactional_delivery_clients_resume_across_commit_markers_with_no_gap() {
    resume_on_two_edges("transactional");
}

fn resume_on_two_edges(delivery: &str) {
    let broker = Broker::start();
    let prefix = unique_prefix("edge-resume");
    let (dir, path) = write_config(&config_with(&prefix, delivery));
    let raw = format!("{prefix}.raw");
    let vip = format!("{prefix}.vip");
    create_topic(&broker, &raw, PARTITIONS);
    let a = spawn_pricefeed(&broker, &path, &["run"], dir.path());
    wait_ready(&a, Duration::from_secs(60));
    let b = spawn_pricefeed(&broker, &path, &["edge"], dir.path());
    wait_ready(&b, Duration::from_secs(60));

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let producer = feed(&broker, raw.clone(), 1000, stop.clone(), written.clone());

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tok = token("ivan", &["vip"], None, false, 600);
        // 1. Subscribe on A and read a while.
        let mut c1 = Ws::connect(a.http_port, "/ws").await;
        c1.setup(&tok).await;
        c1.send(json!({"type": "subscribe", "topic": "vip"})).await;
        c1.expect("subscribed").await;
        let snap = c1.expect("snapshot").await;
        let first_up_to: BTreeMap<i64, i64> = snap["upTo"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(p, s)| (p.parse().unwrap(), s.as_i64().unwrap()))
            .collect();
        let mut r1 = Received::default();
        r1.take(&snap);
        read_some(&mut c1, &mut r1, 300, false).await;
        drop(c1); // the network drops: no Close frame

        // 2. Long enough away that memory no longer reaches back: A replays from Kafka.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut c2 = Ws::connect(a.http_port, "/ws").await;
        c2.setup(&tok).await;
        c2.send(json!({"type": "resume", "topic": "vip", "from": r1.resume_from()}))
            .await;
        let mut r2 = Received {
            last: r1.last.clone(),
            ..Default::default()
        };
        let resumed = read_some(&mut c2, &mut r2, 300, true).await.unwrap();
        assert!(
            resumed["replayed"].as_u64().unwrap() > HISTORY as u64,
            "{resumed}"
        );
        drop(c2);

        // 3. A short drop, and back on the other edge, on `/ws/sub/vip` with the position in
        // the setup itself: B replays from memory, and no snapshot comes first.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut c3 = Ws::connect(b.http_port, "/ws/sub/vip").await;
        c3.send(json!({"type": "setup", "token": tok, "resume": {"vip": r2.resume_from()}}))
            .await;
        c3.expect("ready").await;
        assert!(
            c3.backlog().iter().all(|v| v["type"] != "snapshot"),
            "{:?}",
            c3.backlog()
        );
        let mut r3 = Received {
            last: r2.last.clone(),
            ..Default::default()
        };
        read_some(&mut c3, &mut r3, 300, true).await;

        // 4. The feed stops; once everything is transformed, c3 reads to the end.
        stop.store(true, Ordering::SeqCst);
        while !producer.is_finished() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let total = written.load(Ordering::SeqCst);
        let records = wait_for(Duration::from_secs(60), "every record on vip", || {
            let r = read_all(&broker, &vip, PARTITIONS);
            (r.len() == total).then_some(r)
        });
        // The channel is size-tiered: every record carries its ladder (the last band, 6M, is
        // larger than the 5M the feed's bids hold).
        assert!(records.iter().all(|r| {
            let bands = &r.json()["ladder"]["bands"];
            bands.as_array().map(Vec::len) == Some(3) && bands[2]["bid"].is_null()
        }));
        let end: BTreeMap<i64, i64> = records
            .iter()
            .map(|r| (r.partition as i64, r.offset))
            .collect();
        while end.iter().any(|(p, o)| r3.last.get(p) != Some(o)) {
            read_some(&mut c3, &mut r3, 1, false).await;
        }

        // Together, the three connections saw every record after the first snapshot, in order,
        // each exactly once, each equal to the Kafka record at its seqNo.
        for p in 0..PARTITIONS as i64 {
            let expected: Vec<i64> = records
                .iter()
                .filter(|r| r.partition as i64 == p && r.offset > first_up_to[&p])
                .map(|r| r.offset)
                .collect();
            let got: Vec<i64> = [&r1, &r2, &r3]
                .iter()
                .flat_map(|r| r.seqs.get(&p).cloned().unwrap_or_default())
                .collect();
            assert_eq!(got.len(), expected.len(), "partition {p}: count");
            assert_eq!(got, expected, "partition {p}");
        }
        let at: std::collections::HashMap<(i64, i64), Value> = records
            .iter()
            .map(|r| ((r.partition as i64, r.offset), r.json()))
            .collect();
        for m in r1.messages.iter().chain(&r2.messages).chain(&r3.messages) {
            let key = (
                m["partition"].as_i64().unwrap(),
                m["seqNo"].as_i64().unwrap(),
            );
            assert_eq!(m["data"], at[&key]);
            // `prev` is the record before it in Kafka.
            let before = records
                .iter()
                .filter(|r| r.partition as i64 == key.0 && r.offset < key.1)
                .map(|r| r.offset)
                .max()
                .unwrap_or(-1);
            assert_eq!(m["prev"].as_i64(), Some(before), "{m}");
        }
        let gaps: usize = [&r1, &r2, &r3].iter().map(|r| r.gaps).sum();
        assert_eq!(gaps, 0, "the clients' own check saw gaps");
        let jumps = records
            .windows(2)
            .filter(|w| w[0].partition == w[1].partition && w[1].offset != w[0].offset + 1)
            .count();
        if delivery == "transactional" {
            assert!(jumps > 0, "no commit marker between records");
        } else {
            assert_eq!(jumps, 0);
        }

        // Every partition now ends in whatever the last transaction left (a marker with
        // transactions): an edge started now gets ready, and a client resumes on it from its
        // position with nothing replayed and nothing missing.
        let c = spawn_pricefeed(&broker, &path, &["edge"], dir.path());
        wait_ready(&c, Duration::from_secs(60));
        let mut c4 = Ws::connect(c.http_port, "/ws").await;
        c4.setup(&tok).await;
        c4.send(json!({"type": "resume", "topic": "vip", "from": r3.resume_from()}))
            .await;
        let resumed = c4.expect("resumed").await;
        assert_eq!(resumed["replayed"], 0, "{resumed}");
        // And from the first position: everything since is replayed from Kafka, across the
        // markers, up to the end.
        let mut r5 = Received {
            last: r1.last.clone(),
            ..Default::default()
        };
        let mut c5 = Ws::connect(c.http_port, "/ws").await;
        c5.setup(&tok).await;
        c5.send(json!({"type": "resume", "topic": "vip", "from": first_up_to}))
            .await;
        let resumed = read_some(&mut c5, &mut r5, 0, true).await.unwrap();
        while end.iter().any(|(p, o)| r5.last.get(p) != Some(o)) {
            read_some(&mut c5, &mut r5, 1, false).await;
        }
        assert_eq!(r5.gaps, 0);
        eprintln!(
            "{delivery}: {jumps} offsets skipped by markers; resumed on a new edge: {resumed}"
        );
    });
    producer_done(&a, &b);
}

fn producer_done(a: &Proc, b: &Proc) {
    let kafka = a
        .metric("pricefeed_edge_resumes_total{source=\"kafka\"}")
        .unwrap_or(0.0);
    let memory = b
        .metric("pricefeed_edge_resumes_total{source=\"memory\"}")
        .unwrap_or(0.0);
    assert!(kafka >= 1.0, "edge A replayed from Kafka");
    assert!(memory >= 1.0, "edge B replayed from memory");
}

#[test]
fn snapshots_know_rarely_ticking_symbols_and_old_offsets_replay_from_kafka() {
    let broker = Broker::start();
    let prefix = unique_prefix("edge-lookback");
    // Memory holds 16 records per partition; the start-up scan reaches further back.
    let text = format!(
        "{}\n[edge]\nhistory_per_partition = 16\nmax_lag_records = 16\n\n{}\
         [channels.vip]\n{TIERS}",
        kafka_table(&prefix, PARTITIONS),
        instruments(&["EURUSD", "GBPUSD"])
    );
    let (dir, path) = write_config(&text);
    let raw = format!("{prefix}.raw");
    let vip = format!("{prefix}.vip");
    create_topic(&broker, &raw, PARTITIONS);
    let transform = spawn_pricefeed(&broker, &path, &["transform"], dir.path());
    wait_ready(&transform, Duration::from_secs(60));
    // One GBPUSD price, then 100 EURUSD prices, all on partition 0.
    let mut values = vec![r#"{"symbol":"GBPUSD","bid":"1.25000","ask":"1.25010"}"#.to_string()];
    values.extend((0..100).map(|i| {
        format!(
            r#"{{"symbol":"EURUSD","bid":"1.08{i:03}","ask":"1.08{:03}"}}"#,
            i + 5
        )
    }));
    let records: Vec<(i32, Option<&str>, &str)> = values
        .iter()
        .map(|v| {
            (
                0,
                Some(if v.contains("GBPUSD") {
                    "GBPUSD"
                } else {
                    "EURUSD"
                }),
                v.as_str(),
            )
        })
        .collect();
    produce(&broker, &raw, &records);
    let written = wait_for(Duration::from_secs(30), "101 records on vip", || {
        let r = read_all(&broker, &vip, PARTITIONS);
        (r.len() == 101).then_some(r)
    });

    let edge = spawn_pricefeed(&broker, &path, &["edge"], dir.path());
    wait_ready(&edge, Duration::from_secs(60));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = Ws::connect(edge.http_port, "/ws").await;
        c.setup(&token("kim", &["vip"], None, false, 600)).await;
        c.send(json!({"type": "subscribe", "topic": "vip"})).await;
        c.expect("subscribed").await;
        let snap = c.expect("snapshot").await;
        let mut seqs: Vec<(String, i64)> = snap["prices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["data"]["symbol"].as_str().unwrap().to_string(),
                    p["seqNo"].as_i64().unwrap(),
                )
            })
            .collect();
        seqs.sort();
        assert_eq!(
            seqs,
            [("EURUSD".to_string(), 100), ("GBPUSD".to_string(), 0)]
        );

        // seqNo 10 is long out of memory (it holds 85..=100): the replay comes from Kafka.
        let mut r = Ws::connect(edge.http_port, "/ws").await;
        r.setup(&token("kim", &["vip"], None, false, 600)).await;
        r.send(json!({"type": "resume", "topic": "vip", "from": {"0": 10, "1": -1, "2": -1}}))
            .await;
        let mut rx = Received::default();
        let resumed = read_some(&mut r, &mut rx, 90, true).await.unwrap();
        assert_eq!(resumed["replayed"], 90);
        let expected: Vec<i64> = written
            .iter()
            .filter(|w| w.partition == 0 && w.offset > 10)
            .map(|w| w.offset)
            .collect();
        assert_eq!(rx.seqs[&0], expected);
    });
    assert_eq!(
        edge.metric("pricefeed_edge_resumes_total{source=\"kafka\"}"),
        Some(1.0)
    );
}
