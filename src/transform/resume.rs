//! The resume rule that makes output exactly-once without transactions.
//!
//! Every record a worker writes for raw partition `p` goes to partition `p` of its output topic
//! and carries the raw offset it came from in a header. One idempotent producer writes each
//! output partition in raw-offset order, so the last record of an output partition tells how far
//! that output got. When a worker is assigned raw partition `p` it reads, for each output topic,
//! the raw offset `L` of the last record in partition `p`, and then:
//!
//! * starts consuming at `max(C, min(L + 1))`, where `C` is the group's committed offset (only
//!   ever committed after every output below it was acknowledged, so it is a safe lower bound
//!   for outputs that rarely receive records);
//! * writes to an output only records with a raw offset above that output's `L` (its *floor*).
//!
//! Nothing is written twice, because everything at or below a floor is already there; nothing is
//! missed, because the start is at or below every floor + 1 and at or below the committed offset.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Headers;

use crate::kafka::{self, ReadFrom};

/// Header with the raw-topic offset a record derives from (decimal ASCII).
pub const RAW_OFFSET_HEADER: &str = "pricefeed-raw-offset";
/// Header with the version of the rules a record was made with.
pub const RULES_VERSION_HEADER: &str = "pricefeed-rules-version";

/// Where to resume one raw partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionResume {
    pub partition: i32,
    /// First raw offset to consume.
    pub start: i64,
    /// Per output topic: raw offsets `<=` this are already written there.
    pub floors: Vec<(String, i64)>,
}

/// The start offset for a partition: `max(committed, min over outputs of last + 1)`.
/// `last_written[i]` is `None` for an output partition with no records.
pub fn start_offset(committed: Option<i64>, last_written: &[Option<i64>]) -> i64 {
    let committed = committed.unwrap_or(0).max(0);
    let outputs_need = last_written
        .iter()
        .map(|l| l.map_or(0, |o| o + 1))
        .min()
        .unwrap_or(committed);
    committed.max(outputs_need)
}

/// Reads the raw offset of the last record of every `(output topic, partition)`.
pub fn last_written(
    reader: &BaseConsumer,
    outputs: &[String],
    partitions: &[i32],
    timeout: Duration,
) -> kafka::Result<HashMap<(String, i32), i64>> {
    let starts: Vec<(String, i32, ReadFrom)> = outputs
        .iter()
        .flat_map(|t| {
            partitions
                .iter()
                .map(move |p| (t.clone(), *p, ReadFrom::Last))
        })
        .collect();
    let mut last: HashMap<(String, i32), i64> = HashMap::new();
    kafka::read_to_end(reader, &starts, timeout, |m| {
        if let Some(raw) = raw_offset_of(m) {
            let slot = last
                .entry((m.topic().to_string(), m.partition()))
                .or_insert(raw);
            *slot = (*slot).max(raw);
        }
    })?;
    Ok(last)
}

/// Plans the resume of `partitions` given their committed offsets.
pub fn plan(
    partitions: &[(i32, Option<i64>)],
    outputs: &[String],
    last: &HashMap<(String, i32), i64>,
) -> Vec<PartitionResume> {
    partitions
        .iter()
        .map(|&(partition, committed)| {
            let written: Vec<Option<i64>> = outputs
                .iter()
                .map(|t| last.get(&(t.clone(), partition)).copied())
                .collect();
            PartitionResume {
                partition,
                start: start_offset(committed, &written),
                floors: outputs
                    .iter()
                    .zip(&written)
                    .filter_map(|(t, w)| w.map(|o| (t.clone(), o)))
                    .collect(),
            }
        })
        .collect()
}

/// The raw offset header of a record written by pricefeed.
pub fn raw_offset_of<M: Message>(m: &M) -> Option<i64> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == RAW_OFFSET_HEADER)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_the_lowest_output_need_above_the_commit() {
        assert_eq!(start_offset(None, &[]), 0);
        assert_eq!(start_offset(Some(40), &[]), 40);
        assert_eq!(start_offset(None, &[Some(9), Some(4)]), 5);
        assert_eq!(start_offset(Some(7), &[Some(9), Some(4)]), 7);
        assert_eq!(start_offset(Some(3), &[Some(9), None]), 3);
        assert_eq!(start_offset(None, &[Some(9), None]), 0);
    }

    #[test]
    fn plan_keeps_floors_only_for_outputs_with_records() {
        let outputs = vec!["a".to_string(), "b".to_string()];
        let mut last = HashMap::new();
        last.insert(("a".to_string(), 0), 10);
        last.insert(("b".to_string(), 1), 3);
        let plan = plan(&[(0, Some(2)), (1, None)], &outputs, &last);
        assert_eq!(plan[0].start, 2);
        assert_eq!(plan[0].floors, vec![("a".to_string(), 10)]);
        assert_eq!(plan[1].start, 0);
        assert_eq!(plan[1].floors, vec![("b".to_string(), 3)]);
    }
}
