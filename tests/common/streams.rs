//! The kill tests' check: every channel topic and the dead-letter topic against the raw topic,
//! record by record (nothing missing, nothing twice, order per partition kept), with a report
//! that tells a skipped raw batch (missing from every output of its partition) from a lost output
//! batch (missing from one), and the holes in Kafka offsets.

use std::collections::{BTreeMap, BTreeSet};

use pricefeed::config::Rules;
use pricefeed::transform::process::{ChannelOutput, Processor, RecordMeta};

use super::{Broker, Rec, read_all};

/// Per output topic and partition: the (raw offset, value) sequence.
pub type Streams = BTreeMap<(String, i32), Vec<(i64, String)>>;

pub fn expected_streams(rules: &Rules, dlq: &str, raw: &[Rec]) -> Streams {
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
pub type Holes = BTreeMap<(String, i32), Vec<i64>>;

pub fn holes_in(topic: &str, records: &[Rec], holes: &mut Holes) {
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
pub fn actual_streams(broker: &Broker, topics: &[String], partitions: i32) -> (Streams, Holes) {
    let mut out: Streams = BTreeMap::new();
    let mut holes = Holes::new();
    for t in topics {
        let records = read_all(broker, t, partitions);
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

pub fn total(s: &Streams) -> usize {
    s.values().map(Vec::len).sum()
}

/// Every difference between `expected` and `actual`, one line per output partition, and the
/// holes in Kafka offsets when there is any difference. Empty when they are the same.
pub fn report(expected: &Streams, actual: &Streams, holes: &Holes) -> Vec<String> {
    let mut report = Vec::new();
    for (key, want) in expected {
        let have = actual.get(key).cloned().unwrap_or_default();
        if &have != want {
            report.push(format!("{}/{}: {}", key.0, key.1, differences(want, &have)));
        }
    }
    for (key, have) in actual {
        if !expected.contains_key(key) {
            report.push(format!(
                "{}/{}: {} records where none were expected",
                key.0,
                key.1,
                have.len()
            ));
        }
    }
    if !report.is_empty() {
        for ((topic, partition), offsets) in holes {
            report.push(format!(
                "{topic}/{partition}: no records at Kafka offsets {}",
                ranges(offsets)
            ));
        }
    }
    report
}

/// How `have` differs from `want` (both `(raw offset, value)` in output order).
pub fn differences(want: &[(i64, String)], have: &[(i64, String)]) -> String {
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

/// `{1, 2, 3, 7}` as `1..=3, 7`.
pub fn ranges<'a>(offsets: impl IntoIterator<Item = &'a i64>) -> String {
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
