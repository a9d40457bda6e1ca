//! Exactly-once output under SIGKILL: two transform workers share the raw partitions while one of
//! them is killed with SIGKILL again and again in the middle of a 50,000-record stream. Then
//! every channel topic is compared with the raw topic record by record: nothing missing, nothing
//! twice, order per partition kept. The same holds for the dead-letter topic.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use pricefeed::config::Rules;
use pricefeed::transform::process::{ChannelOutput, Processor, RecordMeta};
use rand::{Rng, SeedableRng};

const PARTITIONS: i32 = 3;
const RECORDS: u64 = 50_000;
const MIN_KILLS: usize = 20;
/// Short group timeouts so that a killed member is noticed quickly. The producer logs its
/// idempotence and connection events (kept with the other logs when the test fails: a batch the
/// broker reports as a duplicate, a reconnect or a retry shows there).
const WORKER: &[&str] = &[
    "--kafka-option",
    "consumer.session.timeout.ms=3000",
    "--kafka-option",
    "consumer.heartbeat.interval.ms=500",
    "--kafka-option",
    "producer.debug=eos,broker",
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

/// Per (topic, partition): the Kafka offsets below its last record that hold no record. No topic
/// here is compacted or transactional, so a hole is a batch the broker numbered but does not serve.
type Holes = BTreeMap<(String, i32), Vec<i64>>;

fn holes_in(topic: &str, records: &[Rec], holes: &mut Holes) {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for r in records {
        let n = next.get(&r.partition).copied().unwrap_or(0);
        if n < r.offset {
            holes
                .entry((topic.to_string(), r.partition))
                .or_default()
                .extend(n..r.offset);
        }
        next.insert(r.partition, r.offset + 1);
    }
}

/// The output streams, and the holes in their Kafka offsets.
fn actual_streams(broker: &Broker, topics: &[String]) -> (Streams, Holes) {
    let mut out: Streams = BTreeMap::new();
    let mut holes = Holes::new();
    for t in topics {
        let records = read_all(broker, t, PARTITIONS);
        for r in &records {
            let raw_offset = r.header("pricefeed-raw-offset").parse().unwrap();
            out.entry((t.clone(), r.partition))
                .or_default()
                .push((raw_offset, r.value.clone()));
        }
        holes_in(t, &records, &mut holes);
    }
    (out, holes)
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
            "1000",
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
    let (actual, mut holes) = loop {
        let (actual, holes) = actual_streams(&broker, &topics);
        let have = total(&actual);
        if have >= want || Instant::now() > deadline {
            break (actual, holes);
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    // Every difference, per output partition, so a failure tells a skipped raw batch (missing
    // from every output of that partition) from a lost output batch (missing from one).
    let mut report = Vec::new();
    for (key, want) in &expected {
        let have = actual.get(key).cloned().unwrap_or_default();
        if &have != want {
            report.push(format!("{}/{}: {}", key.0, key.1, differences(want, &have)));
        }
    }
    for (key, have) in &actual {
        if !expected.contains_key(key) {
            report.push(format!(
                "{}/{}: {} records where none were expected",
                key.0,
                key.1,
                have.len()
            ));
        }
    }
    holes_in(&format!("{prefix}.raw"), &raw, &mut holes);
    eprintln!(
        "Kafka offsets without a record: {} in {} partitions (raw and outputs)",
        holes.values().map(Vec::len).sum::<usize>(),
        holes.len()
    );
    if !report.is_empty() {
        for ((topic, partition), offsets) in &holes {
            report.push(format!(
                "{topic}/{partition}: no records at Kafka offsets {}",
                ranges(offsets)
            ));
        }
        panic!(
            "the outputs differ from the raw topic:\n{}\n(the logs are kept, see below)",
            report.join("\n"),
        );
    }
    eprintln!(
        "verified {want} output records against {} raw records",
        raw.len()
    );
    drop(workers);
}

/// How `have` differs from `want` (both `(raw offset, value)` in output order).
fn differences(want: &[(i64, String)], have: &[(i64, String)]) -> String {
    let want_set: BTreeMap<i64, &String> = want.iter().map(|(o, v)| (*o, v)).collect();
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for (o, _) in have {
        *seen.entry(*o).or_default() += 1;
    }
    // Missing records as runs of consecutive records of `want`: a lost batch is one run even on a
    // channel that carries only some of the raw offsets.
    let mut missing: Vec<(i64, i64, usize)> = Vec::new();
    let mut previous = None;
    for (i, (o, _)) in want.iter().enumerate() {
        if seen.contains_key(o) {
            continue;
        }
        match missing.last_mut() {
            Some(run) if previous.map(|p| p + 1) == Some(i) => (run.1, run.2) = (*o, run.2 + 1),
            _ => missing.push((*o, *o, 1)),
        }
        previous = Some(i);
    }
    let missing = listed(
        missing
            .iter()
            .map(|&(a, b, n)| match n {
                1 => a.to_string(),
                n => format!("{a}..={b} ({n} records)"),
            })
            .collect(),
    );
    let twice: BTreeSet<i64> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(o, _)| *o)
        .collect();
    let unexpected: BTreeSet<i64> = seen
        .keys()
        .filter(|o| !want_set.contains_key(o))
        .copied()
        .collect();
    let wrong_value: BTreeSet<i64> = have
        .iter()
        .filter(|(o, v)| want_set.get(o).is_some_and(|w| *w != v))
        .map(|(o, _)| *o)
        .collect();
    let order = match have.windows(2).position(|w| w[1].0 <= w[0].0) {
        Some(i) => format!("raw offsets stop increasing at index {}", i + 1),
        None => "raw offsets increase throughout".into(),
    };
    format!(
        "expected {} records, found {}; missing raw offsets {missing}; written twice {}; \
         not expected {}; wrong value {}; {order}",
        want.len(),
        have.len(),
        ranges(&twice),
        ranges(&unexpected),
        ranges(&wrong_value),
    )
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `{1, 2, 3, 7}` as `1..=3, 7`.
fn ranges<'a>(offsets: impl IntoIterator<Item = &'a i64>) -> String {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &o in offsets {
        match runs.last_mut() {
            Some(run) if run.1 + 1 == o => run.1 = o,
            _ => runs.push((o, o)),
        }
    }
    listed(
        runs.iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}..={b}")
                }
            })
            .collect(),
    )
}

/// At most 12 items, then how many more.
fn listed(items: Vec<String>) -> String {
    const SHOWN: usize = 12;
    match items.len() {
        0 => "none".into(),
        n if n <= SHOWN => items.join(", "),
        n => format!("{}, and {} more", items[..SHOWN].join(", "), n - SHOWN),
    }
}

/// Keeps the test's directory (worker logs, and the broker's as `tansu.log`) when the test fails.
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
            self.broker.save_log(&d.path().join("tansu.log"));
            eprintln!("kept {}", d.keep().display());
        }
    }
}

#[test]
fn a_difference_names_missing_doubled_and_unexpected_raw_offsets() {
    let s = |o: &[i64]| -> Vec<(i64, String)> { o.iter().map(|o| (*o, format!("v{o}"))).collect() };
    let want = s(&[1, 2, 3, 4, 5, 6, 9]);
    let mut have = s(&[1, 2, 5, 5, 6, 10, 9]);
    have[4].1 = "changed".into();
    assert_eq!(
        differences(&want, &have),
        "expected 7 records, found 7; missing raw offsets 3..=4 (2 records); written twice 5; \
         not expected 10; wrong value 6; raw offsets stop increasing at index 3"
    );
    // A lost batch on a channel that carries every third raw offset is still one run.
    assert_eq!(
        differences(&s(&[10, 13, 16, 19]), &s(&[10, 19])),
        "expected 4 records, found 2; missing raw offsets 13..=16 (2 records); written twice none; \
         not expected none; wrong value none; raw offsets increase throughout"
    );
    let scattered: Vec<i64> = (0..20).map(|i| i * 2).collect();
    assert_eq!(
        ranges(&scattered),
        "0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, and 8 more"
    );
}
