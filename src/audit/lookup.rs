//! Finding what a channel quoted: Kafka's time index gives, on every partition of the channel
//! topic, the offsets of `at ± window`; only that range is read. Each quote's headers name the
//! raw offset and the rules version; the raw record is fetched at its offset and the version's
//! text comes from the rules topic, parsed to give the markup and to price the raw record again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{BorrowedMessage, Headers};

use super::answer::{
    Audit, AuditQuery, AuditedQuote, BandApplied, MarkupApplied, RawSource, RulesApplied,
};
use crate::config::Rules;
use crate::kafka::rules_log::{RulesRecord, read_rules};
use crate::kafka::{self, KafkaFailure, KafkaSettings};
use crate::pricing::{Amount, PricingRule};
use crate::transform::process::{ChannelOutput, Processor, RecordMeta};
use crate::transform::resume::{RAW_OFFSET_HEADER, RULES_VERSION_HEADER};

const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Why there is no answer.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Kafka(#[from] KafkaFailure),
}

/// A channel record of the symbol in the window.
struct Found {
    partition: i32,
    offset: i64,
    published_at: i64,
    value: Vec<u8>,
    raw_offset: Option<i64>,
    version: Option<String>,
}

/// Answers `q` from Kafka, with `rules` (the current file) naming the topics. Blocking.
pub fn audit(settings: &KafkaSettings, rules: &Rules, q: &AuditQuery) -> Result<Audit, AuditError> {
    let named = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if !named(&q.channel) {
        return Err(AuditError::NotFound(format!(
            "{:?} is not a channel name",
            q.channel
        )));
    }
    let topic = match rules.channel(&q.channel) {
        Some(c) => c.topic.clone(),
        // A channel removed from the file since: its topic is still named by the prefix.
        None => format!("{}{}", rules.kafka.channel_topic_prefix, q.channel),
    };
    let reader = settings.bulk_reader()?;
    let Some(partitions) = kafka::partition_count(&reader, &topic)? else {
        return Err(AuditError::NotFound(format!(
            "no channel {:?}: its topic {topic} does not exist",
            q.channel
        )));
    };
    let (from, to) = (q.at - q.window_ms, q.at + q.window_ms + 1);
    let mut ranges = Vec::new();
    for p in 0..partitions {
        let (_, high) = kafka::watermarks(&reader, &topic, p)?;
        let start = kafka::offset_for_time(&reader, &topic, p, from, high)?;
        let end = kafka::offset_for_time(&reader, &topic, p, to, high)?;
        ranges.push((topic.clone(), p, start, end));
    }
    let (mut found, mut records_read) = (Vec::new(), 0u64);
    kafka::read_range(&reader, &ranges, READ_TIMEOUT, |m| {
        records_read += 1;
        if m.key() == Some(q.symbol.as_bytes()) {
            found.push(found_record(m));
        }
    })?;
    // Only records stamped within the window (a record's time may be out of order with its
    // offset by a little).
    found.retain(|f| (from..to).contains(&f.published_at));
    let truncated = found.len() > q.limit;
    if truncated {
        found.sort_by_key(|f| (f.published_at - q.at).abs());
        found.truncate(q.limit);
    }
    found.sort_by_key(|f| (f.published_at, f.partition, f.offset));

    let versions = read_rules(&reader, &rules.kafka.rules_topic)?;
    let mut parsed: HashMap<String, Option<Arc<Rules>>> = HashMap::new();
    let mut quotes = Vec::with_capacity(found.len());
    for f in found {
        let raw = match f.raw_offset {
            Some(o) => raw_record(&reader, &rules.kafka.raw_topic, f.partition, o)?,
            None => None,
        };
        let version = f.version.clone().unwrap_or_default();
        let known = versions.get(&version);
        let rules_then = parsed
            .entry(version.clone())
            .or_insert_with(|| {
                known.and_then(|r| Rules::parse(&r.text, "rules topic").ok().map(Arc::new))
            })
            .clone();
        quotes.push(quote(
            &q.channel,
            &q.symbol,
            f,
            raw,
            known,
            rules_then.as_deref(),
        ));
    }
    let in_force = quotes.iter().rposition(|x| x.published_at <= q.at);
    Ok(Audit {
        channel: q.channel.clone(),
        topic,
        symbol: q.symbol.clone(),
        at: q.at,
        window_ms: q.window_ms,
        quotes,
        in_force,
        records_read,
        truncated,
    })
}

fn header(m: &BorrowedMessage<'_>, name: &str) -> Option<String> {
    let h = m.headers()?;
    h.iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn found_record(m: &BorrowedMessage<'_>) -> Found {
    Found {
        partition: m.partition(),
        offset: m.offset(),
        published_at: m.timestamp().to_millis().unwrap_or(0),
        value: m.payload().unwrap_or_default().to_vec(),
        raw_offset: header(m, RAW_OFFSET_HEADER).and_then(|o| o.parse().ok()),
        version: header(m, RULES_VERSION_HEADER),
    }
}

/// The raw record at `topic/partition@offset`, when it is still in Kafka.
fn raw_record(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Option<RawSource>, KafkaFailure> {
    let (low, high) = kafka::watermarks(reader, topic, partition)?;
    if offset < low || offset >= high {
        return Ok(None);
    }
    let mut out = None;
    let range = [(topic.to_string(), partition, offset, offset + 1)];
    kafka::read_range(reader, &range, READ_TIMEOUT, |m| {
        if m.offset() == offset {
            let bytes = m.payload().unwrap_or_default();
            let value = String::from_utf8_lossy(bytes).into_owned();
            out = Some(RawSource {
                topic: topic.to_string(),
                partition,
                offset,
                timestamp: m.timestamp().to_millis(),
                value,
            });
        }
    })?;
    Ok(out)
}

fn amount(a: Amount) -> String {
    match a {
        Amount::Price(p) => p.normalize().to_string(),
        Amount::OfMid(f) => format!("{} × mid", f.normalize()),
    }
}

/// One audited quote: the published record, its source, and what its rules make of the source.
fn quote(
    channel: &str,
    symbol: &str,
    f: Found,
    raw: Option<RawSource>,
    known: Option<&RulesRecord>,
    rules: Option<&Rules>,
) -> AuditedQuote {
    let value: serde_json::Value = serde_json::from_slice(&f.value).unwrap_or_default();
    let field = |k: &str| value.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let (bid, ask) = (field("bid").to_string(), field("ask").to_string());
    let mut applied = RulesApplied {
        version: f.version.clone().unwrap_or_default(),
        loaded_at: known.map(|r| r.loaded_at),
        loaded_by: known.map(|r| r.loaded_by.clone()),
        markup: None,
        bands: Vec::new(),
        reproduced: None,
        note: None,
    };
    let channel_then = rules.and_then(|r| r.channels.iter().position(|c| c.name == channel));
    match (known, rules, channel_then) {
        (None, _, _) => {
            applied.note = Some("this version is not in the rules topic".into());
        }
        (Some(_), None, _) => applied.note = Some("this version's text does not parse".into()),
        (Some(_), Some(_), None) => applied.note = Some("this version has no such channel".into()),
        (Some(_), Some(r), Some(ci)) => {
            let index = r.instrument_index(symbol);
            if let Some(rule) = index.and_then(|i| r.channels[ci].rules[i]) {
                applied.markup = Some(applied_markup(&rule));
            }
            if let Some(ladder) = index.and_then(|i| r.channels[ci].ladders[i].as_ref()) {
                applied.bands = ladder
                    .bands
                    .iter()
                    .map(|b| BandApplied {
                        up_to: b.up_to.normalize().to_string(),
                        markup: applied_markup(&b.rule),
                    })
                    .collect();
            }
            if let Some(src) = &raw {
                let published = (bid.clone(), ask.clone(), value.get("ladder").cloned());
                applied.reproduced = Some(reprice(r, ci, src, f.published_at) == Some(published));
            }
        }
    }
    AuditedQuote {
        partition: f.partition,
        offset: f.offset,
        published_at: f.published_at,
        bid,
        ask,
        stale: value
            .get("stale")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        source_ts: value.get("ts").and_then(|v| v.as_i64()),
        value,
        raw,
        rules: applied,
    }
}

fn applied_markup(rule: &PricingRule) -> MarkupApplied {
    MarkupApplied {
        bid: amount(rule.bid),
        ask: amount(rule.ask),
        min_spread: amount(rule.min_spread),
    }
}

type Repriced = (String, String, Option<serde_json::Value>);

/// The bid, ask and ladder `rules` make of the raw record on channel `ci`, priced at `now_ms`.
fn reprice(rules: &Rules, ci: usize, raw: &RawSource, now_ms: i64) -> Option<Repriced> {
    let bytes = raw.value.as_bytes();
    let meta = RecordMeta {
        key: None,
        timestamp_ms: raw.timestamp,
    };
    let mut out = None;
    let _ = Processor::new().process(rules, Some(ci), meta, bytes, now_ms, |_, o| {
        if let ChannelOutput::Publish { value, .. } = o {
            let v: serde_json::Value = serde_json::from_slice(value).unwrap_or_default();
            let side = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
            out = side("bid")
                .zip(side("ask"))
                .map(|(b, a)| (b, a, v.get("ladder").cloned()));
        }
    });
    out
}
