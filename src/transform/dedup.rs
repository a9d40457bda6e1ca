//! Publish dedup across edges. An edge dedups `(publisher, messageId)` in its own memory; a
//! publisher that retries on another edge (after a failover) writes the price to the raw topic a
//! second time. The transform is where every copy meets, in raw-partition order, so it quotes a
//! published price once: a raw record with the publisher headers whose `(publisher, messageId)`
//! an earlier record of the partition carried, within `[edge] dedup_window_ms` of record time, is
//! not priced (counted and logged). Retries carry the same payload, so the same symbol and the same
//! partition.
//!
//! The decision depends only on the records (their offsets and Kafka timestamps), so a worker that
//! takes a partition over, or prices records again after a crash or an aborted transaction, decides
//! the same: on assignment it reads the window before its start position back from the raw topic
//! (Kafka's time index finds where), and a record seen again at its own offset is not a duplicate of
//! itself.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::ingest::publisher::{MESSAGE_ID_HEADER, PUBLISHER_HEADER};
use crate::kafka::{self, ADMIN_TIMEOUT, KafkaSettings};
use crate::telemetry::{self, LogLimiter};

/// How long reading back a partition's window may take.
const SEED_TIMEOUT: Duration = Duration::from_secs(30);

/// Per raw partition: the published ids seen within the window.
#[derive(Default)]
struct Partition {
    /// `publisher \0 messageId` → (offset, timestamp) of the first record that carried it.
    first: HashMap<Vec<u8>, (i64, i64)>,
    /// The same keys by timestamp, oldest first, to forget them.
    order: VecDeque<(i64, Vec<u8>)>,
    /// The newest timestamp seen: the window ends there.
    newest: i64,
}

/// See the module documentation.
pub struct PublishDedup {
    window_ms: i64,
    partitions: HashMap<i32, Partition>,
}

/// The dedup key of a raw record: `None` when it was not published through an edge.
pub fn key_of(m: &BorrowedMessage<'_>) -> Option<Vec<u8>> {
    let headers = m.headers()?;
    let (mut publisher, mut id) = (None, None);
    for h in headers.iter() {
        match h.key {
            PUBLISHER_HEADER => publisher = h.value,
            MESSAGE_ID_HEADER => id = h.value,
            _ => {}
        }
    }
    let (publisher, id) = (publisher?, id?);
    let mut key = Vec::with_capacity(publisher.len() + 1 + id.len());
    key.extend_from_slice(publisher);
    key.push(0);
    key.extend_from_slice(id);
    Some(key)
}

impl PublishDedup {
    pub fn new(window: Duration) -> PublishDedup {
        PublishDedup {
            window_ms: window.as_millis() as i64,
            partitions: HashMap::new(),
        }
    }

    pub fn set_window(&mut self, window: Duration) {
        self.window_ms = window.as_millis() as i64;
    }

    /// Whether the record at `offset` (timestamp `ts_ms`) carrying `key` is the first with it
    /// within the window (quote it) or a repeat (do not). Records must come in offset order per
    /// partition, and may come again (a replay) from an earlier offset.
    pub fn first(&mut self, partition: i32, key: Vec<u8>, offset: i64, ts_ms: i64) -> bool {
        if self.window_ms == 0 {
            return true;
        }
        let window = self.window_ms;
        let p = self.partitions.entry(partition).or_default();
        p.newest = p.newest.max(ts_ms);
        while let Some((ts, _)) = p.order.front() {
            if *ts >= p.newest - window {
                break;
            }
            let (_, old) = p.order.pop_front().expect("front");
            if p.first
                .get(&old)
                .is_some_and(|(_, t)| *t < p.newest - window)
            {
                p.first.remove(&old);
            }
        }
        match p.first.get(&key) {
            Some(&(at, ts)) if at < offset && ts_ms - ts <= window => false,
            Some(&(at, _)) if at == offset => true,
            _ => {
                p.first.insert(key.clone(), (offset, ts_ms));
                p.order.push_back((ts_ms.max(0), key));
                true
            }
        }
    }

    /// Whether raw record `m` repeats a published price quoted within the window (then it is
    /// counted and logged, and must not be quoted).
    pub fn is_repeat(
        &mut self,
        m: &BorrowedMessage<'_>,
        now_ms: i64,
        log: &mut LogLimiter,
    ) -> bool {
        let Some(key) = key_of(m) else {
            return false;
        };
        let ts = m.timestamp().to_millis().unwrap_or(now_ms);
        if self.first(m.partition(), key, m.offset(), ts) {
            return false;
        }
        telemetry::publish_repeat_dropped();
        if log.allow("publish-repeat") {
            tracing::info!(
                partition = m.partition(),
                offset = m.offset(),
                "a published price repeated within the dedup window (a retry through another edge): not quoted again"
            );
        }
        true
    }

    /// [`seed`](Self::seed) with a reader of its own; a failure is logged (the worker goes on:
    /// only a retry published just before it took the partition could then be quoted twice).
    pub fn seed_logged(
        &mut self,
        kafka: &KafkaSettings,
        raw_topic: &str,
        partition: i32,
        start: i64,
    ) {
        let seeded = kafka
            .reader()
            .and_then(|r| self.seed(&r, raw_topic, partition, start, SEED_TIMEOUT));
        match seeded {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                partition,
                published = n,
                "publish dedup: read back the window before the start"
            ),
            Err(e) => tracing::warn!(
                partition,
                "publish dedup: cannot read back the window ({e}); a retry published through another edge just before this worker took the partition may be quoted twice"
            ),
        }
    }

    /// Forgets a partition (revoked).
    pub fn forget_all(&mut self) {
        self.partitions.clear();
    }

    /// Reads back the window before `start` of raw partition `partition` (from the record at
    /// `start`, or now when there is none yet), so that a worker taking the partition over knows
    /// what was published within it.
    pub fn seed(
        &mut self,
        reader: &BaseConsumer,
        raw_topic: &str,
        partition: i32,
        start: i64,
        timeout: Duration,
    ) -> kafka::Result<usize> {
        self.partitions.remove(&partition);
        if self.window_ms == 0 || start <= 0 {
            return Ok(0);
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // The record at `start`, when there is one already (reading one that is not there yet
        // would wait for it: a worker taking an idle partition must not).
        let mut at_start = None;
        let (_, high) = kafka::watermarks(reader, raw_topic, partition)?;
        if start < high {
            kafka::read_range(
                reader,
                &[(raw_topic.to_string(), partition, start, start + 1)],
                timeout,
                |m| at_start = m.timestamp().to_millis(),
            )?;
        }
        let from_ts = at_start.unwrap_or(now_ms).min(now_ms) - self.window_ms;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(raw_topic, partition, Offset::Offset(from_ts.max(0)))
            .map_err(kafka::ctx("building a time lookup"))?;
        let found = reader
            .offsets_for_times(tpl, ADMIN_TIMEOUT)
            .map_err(kafka::ctx("looking up the dedup window in the raw topic"))?;
        let from = match found
            .find_partition(raw_topic, partition)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(o)) => o,
            // No record at or after that time: nothing in the window.
            _ => return Ok(0),
        };
        let mut seen = 0;
        kafka::read_range(
            reader,
            &[(raw_topic.to_string(), partition, from, start)],
            timeout,
            |m| {
                if let Some(key) = key_of(m) {
                    let ts = m.timestamp().to_millis().unwrap_or(now_ms);
                    self.first(partition, key, m.offset(), ts);
                    seen += 1;
                }
            },
        )?;
        Ok(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn a_repeat_within_the_window_is_not_quoted_and_a_replay_is_not_a_repeat() {
        let mut d = PublishDedup::new(Duration::from_secs(10));
        assert!(d.first(0, k("a\0m1"), 5, 1_000));
        assert!(!d.first(0, k("a\0m1"), 9, 4_000), "retried on another edge");
        assert!(d.first(0, k("b\0m1"), 10, 4_000), "another publisher");
        assert!(d.first(1, k("a\0m1"), 3, 4_000), "another partition");
        // Priced again from offset 5 (a rewind): the first record is itself, the repeat is not.
        assert!(d.first(0, k("a\0m1"), 5, 1_000));
        assert!(!d.first(0, k("a\0m1"), 9, 4_000));
        // Past the window (record time), the id may be used again.
        assert!(d.first(0, k("c\0x"), 20, 20_000));
        assert!(d.first(0, k("a\0m1"), 21, 20_000));
        assert!(!d.first(0, k("a\0m1"), 22, 20_500));
    }

    #[test]
    fn a_zero_window_quotes_everything() {
        let mut d = PublishDedup::new(Duration::ZERO);
        assert!(d.first(0, k("a\0m1"), 1, 1));
        assert!(d.first(0, k("a\0m1"), 2, 1));
    }
}
