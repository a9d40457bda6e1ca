//! No silent stall: a partition whose fetching stops while Kafka has newer records shows in
//! `/metrics`, `/stats` and `/readyz`, and the reader recovers it by itself, with no record lost
//! or repeated for the clients.
//!
//! The stall is injected (`EdgeOptions::stall_fault`): the edge's reader pauses fetching of one
//! partition, as a fetcher that stopped would, and pauses it again after its first two re-seeks,
//! so the stall outlasts `stall_unready_after_ms`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::service::{Role, Service};
use common::ws::{Received, Ws, token};
use common::*;
use pricefeed::edge::kafka::recover::StallFault;
use serde_json::{Value, json};

const PARTITIONS: i32 = 2;

fn config(prefix: &str) -> String {
    format!(
        "{kafka}{instruments}\n[edge]\nstall_after_ms = 1000\nstall_unready_after_ms = 2500\n\n\
         [channels.vip]\nmarkup = {{ unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }}\n",
        kafka = kafka_table_with(prefix, PARTITIONS, "transactional"),
        instruments = instruments(&["EURUSD", "GBPUSD"]),
    )
}

/// What the watcher saw while the stall lasted.
#[derive(Default, Debug)]
struct Seen {
    not_ready: bool,
    stats_stalled: bool,
    max_lag: i64,
}

/// The log lines of this test binary (the service runs in the test process).
#[derive(Clone, Default)]
struct Log(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[test]
fn a_stalled_partition_is_visible_everywhere_and_recovers_by_itself() {
    let log = Log::default();
    let sink = log.clone();
    tracing_subscriber::fmt()
        .with_env_filter("info,librdkafka=off,rdkafka=off")
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();
    let broker = Broker::start();
    let prefix = unique_prefix("edge-stall");
    let (_dir, path) = write_config(&config(&prefix));
    let raw = format!("{prefix}.raw");
    create_topic(&broker, &raw, PARTITIONS);
    let node = Service::start_with(&broker, &path, Role::Run, |e| {
        e.stall_fault = Some(StallFault {
            channel: "vip".into(),
            partition: 1,
            repauses: 2,
        })
    });
    let port = node.http_port;

    // Prices on both partitions for about 8 s.
    let producing = Arc::new(AtomicBool::new(true));
    let feed = {
        let (broker_settings, raw, producing) = (settings(&broker), raw.clone(), producing.clone());
        std::thread::spawn(move || {
            use rdkafka::config::FromClientConfig;
            use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
            let producer = BaseProducer::from_config(&broker_settings.producer_config()).unwrap();
            for i in 0..160 {
                for (p, s) in [(0, "EURUSD"), (1, "GBPUSD")] {
                    let v = format!(
                        r#"{{"symbol":"{s}","bid":"1.2{i:03}","ask":"1.2{:03}"}}"#,
                        i + 1
                    );
                    producer
                        .send(
                            BaseRecord::<str, str>::to(&raw)
                                .partition(p)
                                .key(s)
                                .payload(&v),
                        )
                        .map_err(|(e, _)| e)
                        .unwrap();
                }
                producer.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(50));
            }
            producer.flush(Duration::from_secs(30)).unwrap();
            producing.store(false, Ordering::Release);
        })
    };

    // Watch /readyz and /stats while it runs.
    let watcher = {
        let producing = producing.clone();
        std::thread::spawn(move || {
            let mut seen = Seen::default();
            while producing.load(Ordering::Acquire) {
                if http_get(port, "/readyz").is_some_and(|b| b.starts_with("not ready")) {
                    seen.not_ready = true;
                }
                if let Some(stats) = http_get(port, "/stats") {
                    let v: Value = serde_json::from_str(&stats).unwrap();
                    let r = &v["topics"][0]["reading"]["1"];
                    seen.stats_stalled |= r["stalled"] == true;
                    seen.max_lag = seen.max_lag.max(r["lag"].as_i64().unwrap_or(0));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        })
    };

    let rt = tokio::runtime::Runtime::new().unwrap();
    let received = rt.block_on(async {
        let mut c = Ws::connect(port, "/ws").await;
        c.setup(&token("sam", &["vip"], None, false, 600)).await;
        c.send(json!({"type": "subscribe", "topic": "vip"})).await;
        c.expect("subscribed").await;
        let mut rx = Received::default();
        rx.take(&c.expect("snapshot").await);
        let deadline = Instant::now() + Duration::from_secs(60);
        while rx.count() < 320 && Instant::now() < deadline {
            if let Some(v) = c.next(Duration::from_secs(1)).await {
                rx.take(&v);
            }
        }
        rx
    });
    feed.join().unwrap();
    let seen = watcher.join().unwrap();

    // Seen while it lasted.
    assert!(
        seen.stats_stalled,
        "/stats never showed the stall: {seen:?}"
    );
    assert!(seen.not_ready, "/readyz never said not ready: {seen:?}");
    assert!(seen.max_lag > 0, "{seen:?}");
    assert_eq!(
        node.metric(r#"pricefeed_edge_partition_stalls_total{channel="vip",partition="1"}"#),
        Some(1.0),
        "one stall (re-seeked three times)"
    );
    // The partition that kept flowing was never taken for stalled, commit markers and all.
    assert_eq!(
        node.metric(r#"pricefeed_edge_partition_stalls_total{channel="vip",partition="0"}"#),
        None
    );

    // Logged: found, re-seeked, advancing again; and only for that partition.
    let text = log.text();
    let stalls: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("a partition stopped advancing while Kafka has newer records"))
        .collect();
    assert_eq!(stalls.len(), 1, "{text}");
    assert!(
        stalls[0].contains("channel=vip partition=1"),
        "{}",
        stalls[0]
    );
    assert!(text.contains("re-seeked a stalled partition"), "{text}");
    assert!(
        text.contains("a stalled partition advances again"),
        "{text}"
    );

    // Recovered: every record of both partitions reached the client, in order, once.
    let written = read_all(&broker, &format!("{prefix}.vip"), PARTITIONS);
    let mut want: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for r in &written {
        want.entry(r.partition as i64).or_default().push(r.offset);
    }
    assert_eq!(want.values().map(Vec::len).sum::<usize>(), 320);
    assert_eq!(
        received.seqs, want,
        "what the client received, per partition"
    );
    assert_eq!(received.gaps, 0);
    wait_for(Duration::from_secs(10), "ready again", || {
        http_get(port, "/readyz").filter(|b| b.starts_with("ready"))
    });
    // /stats shows the reader's position as published (every 200 ms) against the end at the
    // last check (every 200 ms here): caught up once both have been taken since the last record.
    wait_for(
        Duration::from_secs(5),
        "/stats: partition 1 caught up",
        || {
            let stats: Value = serde_json::from_str(&http_get(port, "/stats")?).ok()?;
            let r = &stats["topics"][0]["reading"]["1"];
            (r["stalled"] == false && r["lag"] == 0).then_some(())
        },
    );
    // The gauge is set at each check (about every 200 ms here).
    wait_for(Duration::from_secs(5), "the lag gauge back at 0", || {
        let lag = r#"pricefeed_edge_partition_lag_records{channel="vip",partition="1"}"#;
        (node.metric(lag) == Some(0.0)).then_some(())
    });
    node.stop().unwrap();
}
