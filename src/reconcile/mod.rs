//! `pricefeed reconcile`: compares the raw topic with every channel topic and the dead-letter
//! topic over a range of raw offsets (or times) and reports, per partition, raw offsets that are
//! missing, doubled or out of order, records in the wrong partition, and records whose price is
//! not what the rules version in their header makes of the raw record.
//!
//! It reads like any consumer (`read_committed`: records of aborted transactions do not count)
//! one raw partition at a time, so memory is bounded by the largest partition range.

pub mod check;
pub mod report;
mod time;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;

use crate::config::Rules;
use crate::kafka::{self, ADMIN_TIMEOUT, KafkaFailure, KafkaSettings, ctx};
use crate::transform::resume::{RAW_OFFSET_HEADER, RULES_VERSION_HEADER};
use crate::transform::{RAW_PARTITION_HEADER, TransformOptions};
use check::{Output, OutputKind, OutputRecord, RawRecord, Versions, check_partition};
pub use report::Report;
pub use time::{format_time, parse_duration_ms, parse_time};

/// One end of the compared range of raw records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// The partition's first (for `from`) or last (for `to`) record.
    Edge,
    Offset(i64),
    /// Milliseconds since the epoch: the first record at or after this time.
    Time(i64),
}

pub struct ReconcileOptions {
    pub kafka: KafkaSettings,
    /// The current rules first, then older versions whose records may be in the range.
    pub rules: Arc<Rules>,
    pub older_rules: Vec<Arc<Rules>>,
    /// Check the outputs of the single-channel worker group of this channel.
    pub channel: Option<String>,
    pub from: Bound,
    /// Exclusive.
    pub to: Bound,
    /// Raw partitions to check (default: all).
    pub partitions: Option<Vec<i32>>,
}

/// How much earlier than the first raw record an output record may carry a timestamp (clock
/// differences between the raw producer and the workers).
const CLOCK_SLACK_MS: i64 = 60_000;
const READ_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs the comparison. Blocking.
pub fn run(opts: &ReconcileOptions) -> kafka::Result<Report> {
    let rules = &opts.rules;
    let raw_topic = rules.kafka.raw_topic.clone();
    let reader = reader(&opts.kafka)?;
    let count = kafka::partition_count(&reader, &raw_topic)?
        .ok_or_else(|| KafkaFailure::Other(format!("raw topic {raw_topic} does not exist")))?;
    let worker = TransformOptions {
        kafka: opts.kafka.clone(),
        group_id: String::new(),
        only_channel: opts.channel.clone(),
        commit_interval: None,
    };
    let mut topics: Vec<(String, OutputKind)> = Vec::new();
    for r in std::iter::once(rules).chain(&opts.older_rules) {
        for c in &r.channels {
            let wanted = opts.channel.as_ref().is_none_or(|only| *only == c.name);
            if wanted && !topics.iter().any(|(t, _)| *t == c.topic) {
                topics.push((c.topic.clone(), OutputKind::Channel));
            }
        }
    }
    topics.push((worker.dead_letter_topic(rules), OutputKind::DeadLetter));
    let mut existing = Vec::new();
    for (t, kind) in topics {
        let exists = kafka::partition_count(&reader, &t)?.is_some();
        existing.push((t, kind, exists));
    }
    let versions = Versions::new(rules.clone(), opts.older_rules.clone());
    let partitions: Vec<i32> = match &opts.partitions {
        Some(p) => p.clone(),
        None => (0..count).collect(),
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);

    let mut report = Report {
        raw_topic: raw_topic.clone(),
        partitions: Vec::new(),
    };
    for p in partitions {
        if p < 0 || p >= count {
            return Err(KafkaFailure::Other(format!(
                "raw topic {raw_topic} has no partition {p}"
            )));
        }
        let (start, end) = raw_range(&reader, &raw_topic, p, opts.from, opts.to)?;
        let raw = read_raw(&reader, &raw_topic, p, start, end)?;
        // Outputs are written after their raw records: when the range starts inside the
        // partition, output partitions are read from shortly before the first raw record's
        // time (never later than now, in case the feed stamps records in the future).
        let since = match opts.from {
            Bound::Edge => None,
            _ => raw
                .first()
                .and_then(|r| r.timestamp_ms)
                .map(|t| t.min(now_ms)),
        };
        let mut outputs = Vec::new();
        for (topic, kind, exists) in &existing {
            let records = if *exists {
                read_output(&reader, topic, p, since.map(|t| t - CLOCK_SLACK_MS))?
            } else {
                Vec::new()
            };
            outputs.push(Output {
                topic: topic.clone(),
                kind: kind.clone(),
                records,
            });
        }
        report.partitions.push(check_partition(
            p,
            (start, end),
            &raw,
            &outputs,
            &versions,
            opts.channel.as_deref(),
            now_ms,
        ));
    }
    Ok(report)
}

fn reader(settings: &KafkaSettings) -> kafka::Result<BaseConsumer> {
    settings.bulk_reader()
}

fn raw_range(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    from: Bound,
    to: Bound,
) -> kafka::Result<(i64, i64)> {
    let (low, high) = reader
        .fetch_watermarks(topic, partition, ADMIN_TIMEOUT)
        .map_err(ctx(format!("reading watermarks of {topic}/{partition}")))?;
    let at = |b: Bound, edge: i64| -> kafka::Result<i64> {
        Ok(match b {
            Bound::Edge => edge,
            Bound::Offset(o) => o.clamp(low, high),
            Bound::Time(t) => kafka::offset_for_time(reader, topic, partition, t, high)?,
        })
    };
    let start = at(from, low)?;
    let end = at(to, high)?.max(start);
    Ok((start, end))
}

fn read_raw(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    start: i64,
    end: i64,
) -> kafka::Result<Vec<RawRecord>> {
    let mut out = Vec::with_capacity((end - start).clamp(0, 10_000_000) as usize);
    kafka::read_range(
        reader,
        &[(topic.to_string(), partition, start, end)],
        READ_TIMEOUT,
        |m| {
            out.push(RawRecord {
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().unwrap_or_default().to_vec(),
                timestamp_ms: m.timestamp().to_millis(),
            })
        },
    )?;
    Ok(out)
}

fn read_output(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    since_ms: Option<i64>,
) -> kafka::Result<Vec<OutputRecord>> {
    let (low, high) = reader
        .fetch_watermarks(topic, partition, ADMIN_TIMEOUT)
        .map_err(ctx(format!("reading watermarks of {topic}/{partition}")))?;
    let start = match since_ms {
        Some(t) if t > 0 => kafka::offset_for_time(reader, topic, partition, t, high)?,
        _ => low,
    };
    let mut out = Vec::new();
    kafka::read_range(
        reader,
        &[(topic.to_string(), partition, start, high)],
        READ_TIMEOUT,
        |m| {
            let mut r = OutputRecord {
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().unwrap_or_default().to_vec(),
                timestamp_ms: m.timestamp().to_millis(),
                ..Default::default()
            };
            if let Some(headers) = m.headers() {
                for h in headers.iter() {
                    let text = h.value.and_then(|v| std::str::from_utf8(v).ok());
                    match h.key {
                        RAW_OFFSET_HEADER => r.raw_offset = text.and_then(|s| s.parse().ok()),
                        RULES_VERSION_HEADER => r.version = text.map(str::to_string),
                        RAW_PARTITION_HEADER => r.raw_partition = text.and_then(|s| s.parse().ok()),
                        _ => {}
                    }
                }
            }
            out.push(r);
        },
    )?;
    Ok(out)
}
