//! Apache Kafka itself dies, in both delivery modes: the broker is killed with SIGKILL twice in
//! the middle of a live stream and started again on the same data dir. The transform workers and the edge of
//! `pricefeed run` recover by themselves, without a restart:
//! - every raw record the broker acknowledged to the feed is in the raw topic once, and every
//!   channel topic and the dead-letter topic hold exactly its records, once each, in order;
//! - a WebSocket client that stayed connected through both outages received every channel record
//!   after its snapshot exactly once, in order (seqNo = Kafka offset, no gap, no duplicate), and
//!   the edge is ready again.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::reconcile::*;
use common::ws::{Received, Ws, token};
use common::*;
use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use serde_json::json;

const PARTITIONS: i32 = 3;
const SYMBOLS: [&str; 4] = ["EURUSD", "GBPUSD", "USDJPY", "BTCUSD"];

fn config(prefix: &str, delivery: &str) -> String {
    format!(
        r#"{kafka}{edge}
{instruments}
[channels.vip]
markup = {{ unit = "pips", bid = "0.2", ask = "0.3", min_spread = "0.5" }}

[channels.fx]
symbols = ["EURUSD", "USDJPY"]
markup = {{ unit = "pips", bid = "1.0", ask = "1.2", min_spread = "2.0" }}
"#,
        kafka = kafka_table_with(prefix, PARTITIONS, delivery),
        edge = "[edge]\nmax_lag_records = 100000\nhistory_per_partition = 100000\n",
        instruments = instruments(&SYMBOLS),
    )
}

/// What the broker acknowledged to the feed: (partition, value) of every record whose delivery
/// report said it was written, and the errors of those it did not.
#[derive(Default)]
struct Acks {
    acked: Mutex<Vec<(i32, String)>>,
    failed: Mutex<Vec<String>>,
}

struct AckContext(Arc<Acks>);

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
                self.0.acked.lock().unwrap().push((m.partition(), value));
            }
            Err((e, _)) => self.0.failed.lock().unwrap().push(e.to_string()),
        }
    }
}

/// Produces raw prices (one in 200 malformed) at about `per_sec` until `stop`, through the
/// outages: the producer keeps what it could not send and retries, as a feed handler would.
fn feed(
    broker: &Broker,
    raw: String,
    per_sec: usize,
    stop: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<()>, Arc<Acks>) {
    let acks = Arc::new(Acks::default());
    let producer: BaseProducer<AckContext> = BaseProducer::from_config_and_context(
        &settings(broker).producer_config(),
        AckContext(acks.clone()),
    )
    .unwrap();
    let thread = std::thread::spawn(move || {
        let mut i = 0usize;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..per_sec / 50 {
                let symbol = SYMBOLS[i % SYMBOLS.len()];
                let value = if i % 200 == 199 {
                    format!(r#"{{"symbol":"{symbol}","bid":"oops {i}"}}"#)
                } else {
                    let base = if symbol == "BTCUSD" { 60_000 } else { 1 };
                    format!(
                        r#"{{"symbol":"{symbol}","bid":"{base}.{:05}","ask":"{base}.{:05}","ts":{},"id":"{i}"}}"#,
                        10_000 + i % 50_000,
                        10_004 + i % 50_000,
                        ws::unix_now_ms()
                    )
                };
                let r = BaseRecord::to(&raw).key(symbol).payload(&value);
                producer.send(r).map_err(|(e, _)| e).expect("send");
                i += 1;
            }
            producer.poll(Duration::ZERO);
            next += Duration::from_millis(20);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        producer.flush(Duration::from_secs(120)).expect("flush");
    });
    (thread, acks)
}

#[test]
fn idempotent_transform_and_edge_recover_from_broker_sigkills_with_nothing_lost_or_doubled() {
    broker_sigkills("idempotent");
}

#[test]
fn transactional_transform_and_edge_recover_from_broker_sigkills_with_nothing_lost_or_doubled() {
    broker_sigkills("transactional");
}

/// One at a time: each kills a broker of its own under a live feed.
static SERIAL: Mutex<()> = Mutex::new(());

fn broker_sigkills(delivery: &str) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let broker = Broker::start_own();
    let prefix = unique_prefix("broker-kill");
    let text = config(&prefix, delivery);
    let (dir, path) = write_config(&text);
    let dir = KeepOnPanic(Some(dir), &broker);
    let raw_topic = format!("{prefix}.raw");
    create_topic(&broker, &raw_topic, PARTITIONS);
    let mut run = spawn_pricefeed(&broker, &path, &["run"], dir.path());
    wait_ready(&run, Duration::from_secs(60));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut client = rt.block_on(async {
        let mut ws = Ws::connect(run.http_port, "/ws").await;
        ws.setup(&token("kim", &["vip"], None, false, 600)).await;
        ws.send(json!({"type": "subscribe", "topic": "vip"})).await;
        ws.expect("subscribed").await;
        ws
    });
    let mut received = Received::default();
    let snapshot = rt.block_on(client.expect("snapshot"));
    received.take(&snapshot);
    let first_up_to = received.last.clone();

    // Reads what the edge sends for `d` (the client stays connected throughout).
    let read_for = |client: &mut Ws, received: &mut Received, d: Duration| {
        let until = Instant::now() + d;
        rt.block_on(async {
            while Instant::now() < until {
                let left = until.saturating_duration_since(Instant::now());
                if let Some(v) = client.next(left).await {
                    match v["type"].as_str() {
                        Some("message") => {
                            // Not expected: the burst after an outage is far below the limit.
                            assert!(v.get("conflated").is_none(), "conflated: {v}");
                            received.take(&v)
                        }
                        Some("snapshot") => panic!("a second snapshot: {v}"),
                        _ => {}
                    }
                }
                assert!(
                    client.ended.is_none(),
                    "the edge closed: {:?}",
                    client.ended
                );
            }
        });
    };

    let stop = Arc::new(AtomicBool::new(false));
    let (feeder, acks) = feed(&broker, raw_topic.clone(), 500, stop.clone());
    for (kill, outage) in [(1, Duration::from_secs(3)), (2, Duration::from_secs(6))] {
        read_for(&mut client, &mut received, Duration::from_secs(4));
        let before = received.count();
        assert!(
            before > 0,
            "no prices reached the client before kill {kill}"
        );
        broker.kill();
        eprintln!("kill {kill}: broker SIGKILLed after {before} messages to the client");
        read_for(&mut client, &mut received, outage);
        broker.restart();
        let restarted = Instant::now();
        let during = received.count();
        // Prices flow again without any help: the next new message arrives.
        while received.count() == during {
            assert!(
                restarted.elapsed() < Duration::from_secs(60),
                "no price reached the client within 60 s of the broker's restart"
            );
            read_for(&mut client, &mut received, Duration::from_millis(100));
        }
        eprintln!(
            "kill {kill}: {} messages during the outage of {outage:?}; prices flow again {:?} after \
             the restart",
            during - before,
            restarted.elapsed()
        );
    }
    read_for(&mut client, &mut received, Duration::from_secs(4));
    stop.store(true, Ordering::SeqCst);
    feeder.join().expect("feed thread");
    let failed = acks.failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "the feed's records failed: {failed:?}");

    // Every acknowledged raw record is in the raw topic exactly once.
    let raw = read_all(&broker, &raw_topic, PARTITIONS);
    let mut in_topic: HashMap<(i32, &str), usize> = HashMap::new();
    for r in &raw {
        *in_topic.entry((r.partition, r.value.as_str())).or_default() += 1;
    }
    let acked = acks.acked.lock().unwrap().clone();
    assert!(
        acked.len() > 5_000,
        "only {} records acknowledged",
        acked.len()
    );
    for (partition, value) in &acked {
        let n = in_topic.get(&(*partition, value.as_str())).copied();
        assert_eq!(
            n,
            Some(1),
            "acknowledged record {value} on partition {partition}"
        );
    }
    assert_eq!(
        raw.len(),
        acked.len(),
        "records in the raw topic that no ack reported"
    );

    // The transform catches up by itself and wrote every record exactly once, in order.
    let report = assert_reconciled(&broker, &path, Duration::from_secs(120));
    let want = output_records(&report);

    // The client received every vip record after its snapshot once, in order.
    let vip_topic = format!("{prefix}.vip");
    let vip = read_all(&broker, &vip_topic, PARTITIONS);
    let end: BTreeMap<i64, i64> = vip.iter().map(|r| (r.partition as i64, r.offset)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while end.iter().any(|(p, o)| received.last.get(p) != Some(o)) {
        assert!(
            Instant::now() < deadline,
            "the client stopped short of the end: {:?} of {end:?}",
            received.last
        );
        read_for(&mut client, &mut received, Duration::from_millis(500));
    }
    for p in 0..PARTITIONS as i64 {
        let expected: Vec<i64> = vip
            .iter()
            .filter(|r| {
                r.partition as i64 == p && r.offset > first_up_to.get(&p).copied().unwrap_or(-1)
            })
            .map(|r| r.offset)
            .collect();
        let got = received.seqs.get(&p).cloned().unwrap_or_default();
        if got != expected {
            let missing: Vec<i64> = expected
                .iter()
                .filter(|o| !got.contains(o))
                .copied()
                .collect();
            let extra: Vec<i64> = got
                .iter()
                .filter(|o| !expected.contains(o))
                .copied()
                .collect();
            panic!(
                "partition {p}: the client's seqNos differ from the channel's offsets: {} \
                 received, {} expected; missing {}; not expected {}",
                got.len(),
                expected.len(),
                pricefeed::reconcile::report::ranges(&missing),
                pricefeed::reconcile::report::ranges(&extra),
            );
        }
    }
    wait_ready(&run, Duration::from_secs(30));
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "pricefeed run exited: {}",
        run.log_text()
    );
    eprintln!(
        "{} acknowledged raw records, {want} output records verified, {} messages to the client",
        acked.len(),
        received.count()
    );
}

/// Keeps the test's directory (pricefeed's log, and the broker's as `kafka.log`) when the test
/// fails.
struct KeepOnPanic<'a>(Option<tempfile::TempDir>, &'a Broker);

impl KeepOnPanic<'_> {
    fn path(&self) -> &std::path::Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for KeepOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(d) = self.0.take()
        {
            self.1.save_log(&d.path().join("kafka.log"));
            eprintln!("kept {}", d.keep().display());
        }
    }
}
