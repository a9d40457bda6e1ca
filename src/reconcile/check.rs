//! The comparison of one raw partition with its outputs, without I/O.
//!
//! Each output record names the raw offset it came from and the rules version that priced it.
//! A raw record is expected in a channel when the rules in effect for it (the version its
//! outputs carry, else that of the nearest raw record with outputs) carry its symbol and can
//! quote it, and in the dead-letter topic when those rules reject it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{Rules, StalePolicy};
use crate::transform::process::{ChannelOutput, Processor, RecordMeta};

use super::report::{OutputReport, PartitionReport};

/// A raw record.
#[derive(Clone, Debug)]
pub struct RawRecord {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub timestamp_ms: Option<i64>,
}

/// A record of a channel or dead-letter topic, with its pricefeed headers.
#[derive(Clone, Debug, Default)]
pub struct OutputRecord {
    pub raw_offset: Option<i64>,
    pub version: Option<String>,
    /// Dead-letter records name the raw partition they came from.
    pub raw_partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub timestamp_ms: Option<i64>,
}

/// What an output topic is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputKind {
    Channel,
    DeadLetter,
}

/// One output partition, its records in stored order.
#[derive(Clone, Debug)]
pub struct Output {
    pub topic: String,
    pub kind: OutputKind,
    pub records: Vec<OutputRecord>,
}

/// The rules versions reconcile knows, by version.
pub struct Versions {
    pub by_version: HashMap<String, Arc<Rules>>,
    /// The rules assumed where no output says which version applied.
    pub current: Arc<Rules>,
}

impl Versions {
    pub fn new(current: Arc<Rules>, older: Vec<Arc<Rules>>) -> Versions {
        let mut by_version = HashMap::new();
        for r in older.into_iter().chain([current.clone()]) {
            by_version.insert(r.version.clone(), r);
        }
        Versions {
            by_version,
            current,
        }
    }
}

/// What the rules of one version make of one raw record.
struct Expected {
    /// The rules version this is for.
    version: String,
    rejected: bool,
    /// The source time of the price (for the stale check).
    source_ms: i64,
    /// Per channel topic: the value when fresh and, on a channel that marks stale prices, the
    /// value when stale; absent when the channel does not publish the record.
    by_topic: HashMap<String, (Vec<u8>, Option<Vec<u8>>)>,
    /// Channel topics that would withhold the record once it is older than the limit (ms).
    withheld_after: HashMap<String, u64>,
}

fn expect(processor: &mut Processor, rules: &Rules, only: Option<&str>, r: &RawRecord) -> Expected {
    let only_index = only.and_then(|c| rules.channels.iter().position(|x| x.name == c));
    let only = match (only, only_index) {
        (Some(_), None) => Some(usize::MAX),
        (_, i) => i,
    };
    let meta = RecordMeta {
        key: r.key.as_deref(),
        timestamp_ms: r.timestamp_ms,
    };
    let mut by_topic: HashMap<String, (Vec<u8>, Option<Vec<u8>>)> = HashMap::new();
    let mut withheld_after = HashMap::new();
    let fresh = processor.process(rules, only, meta, &r.value, i64::MIN / 4, |ci, out| {
        if let ChannelOutput::Publish { value, .. } = out {
            by_topic.insert(rules.channels[ci].topic.clone(), (value.to_vec(), None));
        }
    });
    let source_ms = match fresh {
        Ok(ts) => ts,
        Err(_) => {
            return Expected {
                version: rules.version.clone(),
                rejected: true,
                source_ms: 0,
                by_topic,
                withheld_after,
            };
        }
    };
    let _ = processor.process(rules, only, meta, &r.value, i64::MAX / 4, |ci, out| {
        let channel = &rules.channels[ci];
        match out {
            ChannelOutput::Publish { value, .. } => {
                if let Some(slot) = by_topic.get_mut(&channel.topic) {
                    slot.1 = Some(value.to_vec());
                }
            }
            ChannelOutput::WithheldStale if channel.stale_policy == StalePolicy::Withhold => {
                if let Some(limit) = channel.stale_after_ms {
                    withheld_after.insert(channel.topic.clone(), limit);
                }
            }
            _ => {}
        }
    });
    Expected {
        version: rules.version.clone(),
        rejected: false,
        source_ms,
        by_topic,
        withheld_after,
    }
}

/// Compares raw partition `partition` (its records in `[start, end)`) with its outputs.
/// `now_ms` bounds when records without a later output were priced.
pub fn check_partition(
    partition: i32,
    range: (i64, i64),
    raw: &[RawRecord],
    outputs: &[Output],
    versions: &Versions,
    only_channel: Option<&str>,
    now_ms: i64,
) -> PartitionReport {
    let (start, end) = range;
    let raw_at: HashMap<i64, &RawRecord> = raw.iter().map(|r| (r.offset, r)).collect();
    let in_range = |o: i64| o >= start && o < end;

    // The rules version each raw offset was priced with, from any output.
    let mut version_at: BTreeMap<i64, &str> = BTreeMap::new();
    for out in outputs {
        for r in &out.records {
            if let (Some(o), Some(v)) = (r.raw_offset, r.version.as_deref())
                && in_range(o)
            {
                version_at.entry(o).or_insert(v);
            }
        }
    }
    let version_for = |o: i64| -> Option<&Arc<Rules>> {
        let v = version_at
            .range(..=o)
            .next_back()
            .or_else(|| version_at.range(o..).next())
            .map(|(_, v)| *v);
        match v {
            Some(v) => versions.by_version.get(v),
            None => Some(&versions.current),
        }
    };

    let mut processor = Processor::new();
    let mut expected: HashMap<i64, Expected> = HashMap::new();
    let mut unverified = 0u64;
    for r in raw {
        match version_for(r.offset) {
            Some(rules) => {
                expected.insert(r.offset, expect(&mut processor, rules, only_channel, r));
            }
            None => unverified += 1,
        }
    }

    let mut reports = Vec::new();
    for out in outputs {
        let mut rep = OutputReport::new(&out.topic);
        let mut count: HashMap<i64, u32> = HashMap::new();
        let mut previous: Option<i64> = None;
        // Per raw offset: the output's timestamp of the first record at or above it (for the
        // stale check of records absent from a withholding channel).
        let mut first_time: BTreeMap<i64, i64> = BTreeMap::new();
        for r in &out.records {
            let Some(o) = r.raw_offset else {
                rep.foreign += 1;
                continue;
            };
            if !in_range(o) {
                continue;
            }
            rep.records += 1;
            if let Some(t) = r.timestamp_ms {
                first_time.entry(o).or_insert(t);
            }
            let n = count.entry(o).or_default();
            *n += 1;
            if *n == 2 {
                rep.doubled.push(o);
            }
            if previous.is_some_and(|p| o < p) {
                rep.out_of_order.push(o);
            }
            previous = Some(o);
            let Some(raw) = raw_at.get(&o) else {
                rep.unexpected.push(o);
                continue;
            };
            check_record(
                &mut rep,
                out,
                r,
                raw,
                partition,
                versions,
                only_channel,
                expected.get(&o),
                &mut processor,
            );
        }

        // What is absent.
        for r in raw {
            if count.contains_key(&r.offset) {
                continue;
            }
            let Some(e) = expected.get(&r.offset) else {
                continue;
            };
            let wanted = match out.kind {
                OutputKind::DeadLetter => e.rejected,
                OutputKind::Channel => e.by_topic.contains_key(&out.topic),
            };
            if !wanted {
                continue;
            }
            if let Some(limit) = e.withheld_after.get(&out.topic) {
                // Priced no later than the next record this channel holds (or now): if the
                // price was already stale by then, withholding it was right.
                let priced_by = first_time
                    .range(r.offset..)
                    .next()
                    .map_or(now_ms, |(_, t)| *t);
                if e.source_ms.saturating_add(*limit as i64) < priced_by {
                    rep.possibly_withheld += 1;
                    continue;
                }
            }
            rep.missing.push(r.offset);
        }
        for list in [
            &mut rep.doubled,
            &mut rep.wrong_partition,
            &mut rep.wrong_price,
            &mut rep.unexpected,
        ] {
            list.sort_unstable();
            list.dedup();
        }
        reports.push(rep);
    }
    PartitionReport {
        partition,
        start,
        end,
        raw_records: raw.len() as u64,
        unverified,
        outputs: reports,
    }
}

#[allow(clippy::too_many_arguments)]
fn check_record(
    rep: &mut OutputReport,
    out: &Output,
    r: &OutputRecord,
    raw: &RawRecord,
    partition: i32,
    versions: &Versions,
    only_channel: Option<&str>,
    in_effect: Option<&Expected>,
    processor: &mut Processor,
) {
    let o = raw.offset;
    let rules = match r.version.as_deref() {
        Some(v) => versions.by_version.get(v),
        None => None,
    };
    let Some(rules) = rules else {
        rep.unverified += 1;
        return;
    };
    // The record's own version, if it differs from the one in effect for its raw offset.
    let own;
    let e = match in_effect {
        Some(e) if e.version == rules.version => e,
        _ => {
            own = expect(processor, rules, only_channel, raw);
            &own
        }
    };
    match out.kind {
        OutputKind::DeadLetter => {
            if r.raw_partition.is_some_and(|p| p != partition) {
                rep.wrong_partition.push(o);
            } else if !e.rejected {
                rep.unexpected.push(o);
            } else if r.value != raw.value {
                rep.wrong_price.push(o);
            }
        }
        OutputKind::Channel => match e.by_topic.get(&out.topic) {
            None => rep.unexpected.push(o),
            Some((fresh, stale)) => {
                if r.value == *fresh || stale.as_ref().is_some_and(|s| r.value == *s) {
                    return;
                }
                let symbol_of = |v: &[u8]| {
                    serde_json::from_slice::<serde_json::Value>(v)
                        .ok()
                        .and_then(|j| j.get("symbol").and_then(|s| s.as_str().map(String::from)))
                };
                if symbol_of(&r.value) != symbol_of(fresh) {
                    rep.wrong_partition.push(o);
                } else {
                    rep.wrong_price.push(o);
                }
            }
        },
    }
}
