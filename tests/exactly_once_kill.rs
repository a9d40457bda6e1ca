//! Exactly-once output under SIGKILL: two transform workers share the raw partitions while one of
//! them is killed with SIGKILL again and again in the middle of a 50,000-record stream. Then
//! every channel topic is compared with the raw topic record by record: nothing missing, nothing
//! twice, order per partition kept. The same holds for the dead-letter topic.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use pricefeed::config::Rules;
use pricefeed::transform::process::{ChannelOutput, Processor, RecordMeta};
use rand::{Rng, SeedableRng};

const PARTITIONS: i32 = 3;
const RECORDS: u64 = 50_000;
const MIN_KILLS: usize = 20;
/// Short group timeouts so that a killed member is noticed quickly.
const WORKER: &[&str] = &[
    "--kafka-option",
    "consumer.session.timeout.ms=3000",
    "--kafka-option",
    "consumer.heartbeat.interval.ms=500",
    "transform",
];

fn config(prefix: &str) -> String {
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
        kafka = kafka_table(prefix, PARTITIONS),
        instruments = instruments(&["EURUSD", "USDJPY", "BTCUSD", "ES"]),
    )
}

/// Per output topic and partition: the (raw offset, value) sequence.
type Streams = BTreeMap<(String, i32), Vec<(i64, String)>>;

fn expected_streams(rules: &Rules, dlq: &str, raw: &[Rec]) -> Streams {
    let mut processor = Processor::new();
    let mut out: Streams = BTreeMap::new();
    for r in raw {
        let meta = RecordMeta {
            key: r.key.as_deref().map(str::as_bytes),
            timestamp_ms: None,
        };
        let mut emitted = Vec::new();
        let result = processor.process(rules, None, meta, r.value.as_bytes(), 0, |ci, o| {
            if let ChannelOutput::Publish { value, .. } = o {
                emitted.push((ci, String::from_utf8(value.to_vec()).unwrap()));
            }
        });
        match result {
            Ok(_) => {
                for (ci, v) in emitted {
                    out.entry((rules.channels[ci].topic.clone(), r.partition))
                        .or_default()
                        .push((r.offset, v));
                }
            }
            Err(_) => out
                .entry((dlq.to_string(), r.partition))
                .or_default()
                .push((r.offset, r.value.clone())),
        }
    }
    out
}

fn actual_streams(broker: &Broker, topics: &[String]) -> Streams {
    let mut out: Streams = BTreeMap::new();
    for t in topics {
        for r in read_all(broker, t, PARTITIONS) {
            let raw_offset = r.header("pricefeed-raw-offset").parse().unwrap();
            out.entry((t.clone(), r.partition))
                .or_default()
                .push((raw_offset, r.value.clone()));
        }
    }
    out
}

fn total(s: &Streams) -> usize {
    s.values().map(Vec::len).sum()
}

#[test]
fn sigkilled_workers_write_every_record_exactly_once_in_order() {
    let broker = Broker::start();
    let prefix = unique_prefix("kill");
    let text = config(&prefix);
    let rules = Rules::parse(&text, "test").unwrap();
    let (dir, path) = write_config(&text);
    eprintln!("logs in {}", dir.path().display());
    let dir = KeepOnPanic(Some(dir));
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5eed);

    // The feed runs until the kills are done and at least RECORDS were sent.
    let mut feed = spawn_pricefeed(
        &broker,
        &path,
        &[
            "simulate",
            "--rate",
            "1000",
            "--malformed-ratio",
            "0.002",
            "--seed",
            "7",
        ],
        dir.path(),
    );
    let worker = || spawn_pricefeed(&broker, &path, WORKER, dir.path());
    let mut workers = vec![worker(), worker()];

    // Kill a worker once it has processed a random number of records since it started, so the
    // kills land mid-stream: while polling, producing, committing or rebalancing.
    let started = Instant::now();
    let mut kills = 0;
    let mut mid_stream_kills = 0;
    let mut sent = 0.0;
    while mid_stream_kills < MIN_KILLS || sent < RECORDS as f64 {
        assert!(
            started.elapsed() < Duration::from_secs(900) && kills < 200,
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
        eprintln!(
            "kill {kills} at {:?}: victim had processed {processed} records",
            started.elapsed()
        );
        workers[victim] = worker();
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
    assert!(mid_stream_kills >= MIN_KILLS);

    let raw = read_all(&broker, &format!("{prefix}.raw"), PARTITIONS);
    assert!(
        raw.len() as u64 >= RECORDS,
        "the stream had {} records",
        raw.len()
    );
    let dlq = rules.kafka.dead_letter_topic.clone();
    let expected = expected_streams(&rules, &dlq, &raw);
    let mut topics: Vec<String> = rules.channels.iter().map(|c| c.topic.clone()).collect();
    topics.push(dlq.clone());
    assert!(
        expected.keys().any(|(t, _)| *t == dlq),
        "the feed had malformed records to dead-letter"
    );

    // Let the surviving workers catch up, then compare record by record.
    let want = total(&expected);
    let deadline = Instant::now() + Duration::from_secs(300);
    let actual = loop {
        let actual = actual_streams(&broker, &topics);
        let have = total(&actual);
        if have >= want || Instant::now() > deadline {
            break actual;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    for (key, want) in &expected {
        let have = actual.get(key).cloned().unwrap_or_default();
        let want_offsets: Vec<i64> = want.iter().map(|(o, _)| *o).collect();
        let have_offsets: Vec<i64> = have.iter().map(|(o, _)| *o).collect();
        if want_offsets != have_offsets {
            let first = want_offsets
                .iter()
                .zip(&have_offsets)
                .position(|(a, b)| a != b)
                .unwrap_or(want_offsets.len().min(have_offsets.len()));
            panic!(
                "{}/{}: expected {} records, found {}; first difference at index {first}: \
                 expected raw offset {:?}, found {:?}",
                key.0,
                key.1,
                want_offsets.len(),
                have_offsets.len(),
                want_offsets.get(first),
                have_offsets.get(first),
            );
        }
        assert_eq!(&have, want, "{}/{}: values differ", key.0, key.1);
    }
    assert_eq!(
        actual.keys().filter(|k| !expected.contains_key(k)).count(),
        0,
        "records in partitions that should be empty"
    );
    eprintln!(
        "verified {want} output records against {} raw records",
        raw.len()
    );
    drop(workers);
}

/// Keeps the test's directory (worker logs) when the test fails.
struct KeepOnPanic(Option<tempfile::TempDir>);

impl KeepOnPanic {
    fn path(&self) -> &std::path::Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for KeepOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(d) = self.0.take()
        {
            eprintln!("kept {}", d.keep().display());
        }
    }
}
