//! Reading ranges of partitions to their end (the resume rule, the edge's start, reconcile).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::failure::{KafkaFailure, Result, ctx};
use super::settings::ADMIN_TIMEOUT;

/// Where [`read_to_end`] starts in a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    Offset(i64),
    /// The last record (`high watermark - 1`).
    Last,
}

/// Reads partitions from the given start offsets up to the end they had when called (their high
/// watermark), calling `on` for every record, and returns once each partition's end has been
/// reached: the record at `high - 1` was read, or the consumer's position passed it (the last
/// offsets may hold no record a consumer sees, such as transaction markers). For a start offset
/// at or past the end nothing is read.
pub fn read_to_end(
    reader: &BaseConsumer,
    starts: &[(String, i32, ReadFrom)],
    timeout: Duration,
    on: impl FnMut(&BorrowedMessage<'_>),
) -> Result<()> {
    let mut ranges = Vec::new();
    for (topic, partition, start) in starts {
        let (low, high) = watermarks(reader, topic, *partition)?;
        let start = match start {
            ReadFrom::Offset(o) => (*o).max(low).max(0),
            ReadFrom::Last => (high - 1).max(low).max(0),
        };
        ranges.push((topic.clone(), *partition, start, high));
    }
    read_range(reader, &ranges, timeout, on)
}

/// The low and high watermarks of a partition. A partition whose leader is being elected (a topic
/// just created, a broker restarting) answers `NotLeaderForPartition` or `LeaderNotAvailable` for
/// a moment: asked again until [`ADMIN_TIMEOUT`] passes.
pub fn watermarks<C: rdkafka::consumer::ConsumerContext>(
    client: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64)> {
    use rdkafka::error::RDKafkaErrorCode as Code;
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    loop {
        match client.fetch_watermarks(topic, partition, ADMIN_TIMEOUT) {
            Ok(w) => return Ok(w),
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(Code::NotLeaderForPartition | Code::LeaderNotAvailable)
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(ctx(format!("reading watermarks of {topic}/{partition}"))(e)),
        }
    }
}

/// The first offset at or after `time_ms`, or the high watermark when there is none.
pub fn offset_for_time(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    time_ms: i64,
    high: i64,
) -> Result<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(time_ms))
        .map_err(ctx("building a time lookup"))?;
    let found = reader
        .offsets_for_times(tpl, ADMIN_TIMEOUT)
        .map_err(ctx(format!("looking up a time in {topic}/{partition}")))?;
    Ok(found
        .find_partition(topic, partition)
        .and_then(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => Some(o),
            _ => None,
        })
        .unwrap_or(high))
}

/// Reads each `(topic, partition, start, end)` from `start` up to `end` (exclusive), calling
/// `on` for every record below `end`. A partition is done once a record at or past `end - 1` was
/// read or the consumer's position reached `end` (offsets taken by transaction markers or
/// aborted records are never delivered).
pub fn read_range(
    reader: &BaseConsumer,
    ranges: &[(String, i32, i64, i64)],
    timeout: Duration,
    mut on: impl FnMut(&BorrowedMessage<'_>),
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    // Per partition, the end offset (exclusive).
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, start, end) in ranges {
        if end > start {
            ends.insert((topic.clone(), *partition), *end);
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*start))
                .map_err(ctx("building an assignment"))?;
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    reader
        .assign(&tpl)
        .map_err(ctx("assigning partitions to read"))?;
    let result = (|| {
        while !ends.is_empty() {
            if Instant::now() > deadline {
                let pending: Vec<String> = ends.keys().map(|(t, p)| format!("{t}/{p}")).collect();
                return Err(KafkaFailure::Other(format!(
                    "timed out reading {} to their end",
                    pending.join(", ")
                )));
            }
            match reader.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let key = (m.topic().to_string(), m.partition());
                    let Some(end) = ends.get(&key).copied() else {
                        continue;
                    };
                    if m.offset() < end {
                        on(&m);
                    }
                    if m.offset() + 1 >= end {
                        ends.remove(&key);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {
                    // Nothing more to read: done where the position is at the end.
                    let positions = reader.position().map_err(ctx("reading positions"))?;
                    ends.retain(|(t, p), end| {
                        !positions
                            .find_partition(t, *p)
                            .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= *end))
                    });
                }
                Some(Err(e)) => return Err(ctx("reading records")(e)),
            }
        }
        Ok(())
    })();
    let _ = reader.unassign();
    result
}
