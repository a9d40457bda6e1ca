//! Exactly-once output under SIGKILL, in both delivery modes: three transform workers share the
//! raw partitions while they are killed with SIGKILL (at least 30 times, in turn) in the middle
//! of a stream of at least 100,000 raw records. Then `pricefeed reconcile` compares every channel
//! topic and the dead-letter topic with the raw topic record by record: nothing missing, nothing
//! twice, order per partition kept, every price what its rules make of the raw record.

mod common;

use std::time::{Duration, Instant};

use common::reconcile::*;
use common::*;
use pricefeed::config::Rules;
use rand::{Rng, SeedableRng};

const PARTITIONS: i32 = 3;
/// At least this many raw records and kills (`PRICEFEED_KILL_RECORDS`, `PRICEFEED_KILLS` raise
/// them: `loadtest/faults-soak.sh`).
const RECORDS: u64 = 100_000;
const MIN_KILLS: usize = 30;
const WORKERS: usize = 3;
/// The shortest group session Kafka allows by default (group.min.session.timeout.ms = 6 s), so
/// that a killed member is noticed quickly. The producer logs its
/// idempotence and connection events (kept with the other logs when the test fails: a batch the
/// broker reports as a duplicate, a reconnect or a retry shows there).
const WORKER: &[&str] = &[
    "--kafka-option",
    "consumer.session.timeout.ms=6000",
    "--kafka-option",
    "consumer.heartbeat.interval.ms=1000",
    "--kafka-option",
    "producer.debug=eos,broker",
    "transform",
];

fn config(prefix: &str, delivery: &str) -> String {
    format!(
        r#"{kafka}{instruments}
[channels.all]
markup = {{ unit = "pips", bid = "0.2", ask = "0.3", min_spread = "0.5" }}

[channels.fx]
symbols = ["EURUSD", "USDJPY"]
markup = {{ unit = "pips", bid = "1.0", ask = "1.2", min_spread = "2.0" }}

[channels.crypto]
symbols = ["BTCUSD"]
markup = {{ unit = "bps", bid = "5", ask = "5", min_spread = "10" }}
"#,
        kafka = kafka_table_with(prefix, PARTITIONS, delivery),
        instruments = instruments(&["EURUSD", "USDJPY", "BTCUSD", "ES"]),
    )
}

#[test]
fn sigkilled_idempotent_workers_write_every_record_exactly_once_in_order() {
    sigkilled_workers("idempotent");
}

#[test]
fn sigkilled_transactional_workers_write_every_record_exactly_once_in_order() {
    sigkilled_workers("transactional");
}

/// One at a time: each runs three workers and a feed.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn sigkilled_workers(delivery: &str) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
            .max(default)
    };
    let (records, min_kills) = (
        env("PRICEFEED_KILL_RECORDS", RECORDS),
        env("PRICEFEED_KILLS", MIN_KILLS as u64) as usize,
    );
    let broker = Broker::start();
    let prefix = unique_prefix("kill");
    let text = config(&prefix, delivery);
    let rules = Rules::parse(&text, "test").unwrap();
    let (dir, path) = write_config(&text);
    eprintln!("logs in {}", dir.path().display());
    let dir = KeepOnPanic {
        dir: Some(dir),
        broker: &broker,
    };
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5eed);

    // The feed runs until the kills are done and at least RECORDS were sent.
    let mut feed = spawn_pricefeed(
        &broker,
        &path,
        &[
            "simulate",
            "--rate",
            "2500",
            "--malformed-ratio",
            "0.002",
            "--seed",
            "7",
        ],
        dir.path(),
    );
    let worker = || {
        spawn_pricefeed_env(
            &broker,
            &path,
            WORKER,
            dir.path(),
            &[("RUST_LOG", "info,librdkafka=debug,rdkafka=warn")],
        )
    };
    let mut workers: Vec<Proc> = (0..WORKERS).map(|_| worker()).collect();

    // Kill a worker once it has processed a random number of records since it started, so the
    // kills land mid-stream: while polling, producing, committing or rebalancing.
    let started = Instant::now();
    let mut kills = 0;
    let mut mid_stream_kills = 0;
    let mut sent = 0.0;
    while mid_stream_kills < min_kills || sent < records as f64 {
        assert!(
            started.elapsed() < Duration::from_secs(900 + 10 * min_kills as u64)
                && kills < 2 * min_kills + 140,
            "kill phase took too long ({kills} kills, {mid_stream_kills} mid-stream)"
        );
        let victim = kills % workers.len();
        let threshold = rng.random_range(20.0..800.0);
        let wait_until = Instant::now() + Duration::from_millis(rng.random_range(4000..15000));
        let mut processed = 0.0;
        while Instant::now() < wait_until {
            processed = workers[victim]
                .metric("pricefeed_raw_records_total")
                .unwrap_or(0.0);
            if processed >= threshold {
                break;
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(10..200)));
        }
        workers[victim].kill9();
        kills += 1;
        if processed > 0.0 {
            mid_stream_kills += 1;
        }
        let killed = workers[victim].log.clone();
        workers[victim] = worker();
        eprintln!(
            "kill {kills} at {:?}: {} had processed {processed} records; {} replaces it",
            started.elapsed(),
            file_name(&killed),
            file_name(&workers[victim].log),
        );
        assert!(
            feed.child.try_wait().unwrap().is_none(),
            "simulator died: {}",
            feed.log_text()
        );
        sent = feed
            .metric(r#"pricefeed_simulated_records_total{kind="valid"}"#)
            .unwrap_or(0.0)
            + feed
                .metric(r#"pricefeed_simulated_records_total{kind="malformed"}"#)
                .unwrap_or(0.0);
    }
    feed.signal("TERM");
    let status = feed.child.wait().unwrap();
    assert!(status.success(), "simulator failed: {}", feed.log_text());
    eprintln!(
        "{kills} SIGKILLs ({mid_stream_kills} while the feed ran and after the victim had \
         processed records) in {:?}",
        started.elapsed()
    );
    assert!(mid_stream_kills >= min_kills);

    let raw = read_all(&broker, &format!("{prefix}.raw"), PARTITIONS);
    assert!(
        raw.len() as u64 >= records,
        "the stream had {} records",
        raw.len()
    );
    // Let the surviving workers catch up, then compare record by record.
    let report = assert_reconciled(&broker, &path, Duration::from_secs(300));
    let dlq = &rules.kafka.dead_letter_topic;
    let dead_letters = topic_records(&report, dlq.as_str());
    assert!(
        dead_letters > 0,
        "the feed had malformed records to dead-letter"
    );
    eprintln!(
        "reconcile: {} output records clean against {} raw records",
        output_records(&report),
        raw.len()
    );
    drop(workers);
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Keeps the test's directory (worker logs, and the broker's as `kafka.log`) when the test fails.
struct KeepOnPanic<'a> {
    dir: Option<tempfile::TempDir>,
    broker: &'a Broker,
}

impl KeepOnPanic<'_> {
    fn path(&self) -> &std::path::Path {
        self.dir.as_ref().unwrap().path()
    }
}

impl Drop for KeepOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(d) = self.dir.take()
        {
            self.broker.save_log(&d.path().join("kafka.log"));
            eprintln!("kept {}", d.keep().display());
        }
    }
}
