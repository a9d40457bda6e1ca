//! The only consumer of the channel topics on an edge: every partition assigned (no consumer
//! group, so any number of edge nodes read the same topics side by side), positioned by
//! [`super::position`], and what it reads appended to the in-memory log. A channel added to
//! channels.toml while the edge runs is found by the [probe](super::probe) thread (which may
//! wait on Kafka), positioned the same way and handed to the reader, which adds its partitions to
//! the assignment (the others are not touched) and the topic to the hub once it has read the
//! topic up to where it ended when found.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rustc_hash::FxHashMap;
use tokio_util::sync::CancellationToken;

use super::position::{Targets, add_to_assignment};
use crate::edge::log::entry::{Entry, encode_entry};
use crate::edge::log::topic::{Hub, TopicLog};
use crate::telemetry::{self, LogLimiter};

/// Most records appended per wake-up of the sessions.
const MAX_BATCH: usize = 4096;

/// A channel added to channels.toml after the edge started, positioned, with the end each
/// partition had when it was found.
pub struct NewTopic {
    pub log: Arc<TopicLog>,
    pub ends: Vec<i64>,
}

/// A [`NewTopic`] being read up to its ends before it joins the hub: the partitions still short
/// of theirs, with that end (the offset after the record that completes each).
struct Joining {
    log: Arc<TopicLog>,
    waits: FxHashMap<i32, i64>,
    since: Instant,
    /// In the consumer's assignment (an assignment that failed is retried).
    assigned: bool,
}

/// How long an added channel may take to be read up to its end before the edge says so.
const JOINING_WARN_AFTER: Duration = Duration::from_secs(30);

/// Reads until `shutdown`; run it on a blocking thread. Topics sent on `added` are read too.
pub fn run(
    consumer: BaseConsumer,
    mut targets: Targets,
    hub: Arc<Hub>,
    kafka_error: Arc<AtomicBool>,
    added: Receiver<NewTopic>,
    shutdown: CancellationToken,
) {
    let mut by_topic: FxHashMap<String, Arc<TopicLog>> = hub
        .topics()
        .values()
        .map(|t| (t.kafka_topic.clone(), t.clone()))
        .collect();
    let mut records_in: FxHashMap<String, metrics::Counter> = hub
        .topics()
        .values()
        .map(|t| {
            (
                t.kafka_topic.clone(),
                telemetry::edge_records_in(&t.channel),
            )
        })
        .collect();
    if targets.0.is_empty() {
        hub.set_caught_up();
    }
    let mut limiter = LogLimiter::new(Duration::from_secs(10));
    let mut batch: FxHashMap<(String, usize), Vec<Entry>> = FxHashMap::default();
    let mut touched: Vec<Arc<TopicLog>> = Vec::new();
    let mut joining: FxHashMap<String, Joining> = FxHashMap::default();
    // Per partition, the offset of the last record turned into a frame (`prev` of the next).
    let mut previous: FxHashMap<(String, i32), i64> = FxHashMap::default();
    while !shutdown.is_cancelled() {
        while let Ok(new) = added.try_recv() {
            let t = new.log;
            by_topic.insert(t.kafka_topic.clone(), t.clone());
            records_in.insert(
                t.kafka_topic.clone(),
                telemetry::edge_records_in(&t.channel),
            );
            let waits = (t.partitions.iter().zip(&new.ends).enumerate())
                .filter(|(_, (log, end))| **end > log.next())
                .map(|(p, (_, end))| (p as i32, *end))
                .collect();
            let since = Instant::now();
            joining.insert(
                t.kafka_topic.clone(),
                Joining {
                    log: t,
                    waits,
                    since,
                    assigned: false,
                },
            );
        }
        for j in joining.values_mut().filter(|j| !j.assigned) {
            // Only the new partitions: the others keep their fetch position and prefetched data.
            match add_to_assignment(&consumer, &j.log) {
                Ok(()) => j.assigned = true,
                Err(e) => {
                    if limiter.allow("edge-assign") {
                        tracing::warn!("adding a channel topic to the edge's assignment: {e}");
                    }
                }
            }
        }
        let mut n = 0;
        let mut wait = Duration::from_millis(100);
        while n < MAX_BATCH {
            let m = match consumer.poll(wait) {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(KafkaError::PartitionEOF(_))) => continue,
                Some(Err(e)) => {
                    kafka_error.store(true, Ordering::Release);
                    if limiter.allow("edge-consume") {
                        tracing::warn!("reading channel topics: {e}");
                    }
                    break;
                }
            };
            wait = Duration::ZERO;
            n += 1;
            kafka_error.store(false, Ordering::Release);
            let Some(topic) = by_topic.get(m.topic()) else {
                continue;
            };
            let partition = m.partition();
            if let Some(c) = records_in.get(m.topic()) {
                c.increment(1);
            }
            let key = m.key().and_then(|k| std::str::from_utf8(k).ok());
            let fallback_ts = m.timestamp().to_millis().unwrap_or(0);
            let entry = key.ok_or(()).and_then(|symbol| {
                let id = hub.symbols.intern(symbol);
                let prev = *previous
                    .entry((m.topic().to_string(), partition))
                    .or_insert_with(|| {
                        topic
                            .partitions
                            .get(partition as usize)
                            .map_or(m.offset() - 1, |l| l.previous())
                    });
                encode_entry(
                    &topic.channel,
                    partition,
                    m.offset(),
                    prev,
                    id,
                    m.payload().unwrap_or_default(),
                    fallback_ts,
                )
                .map_err(|_| ())
            });
            match entry {
                Ok(e) => {
                    previous.insert((m.topic().to_string(), partition), e.offset);
                    batch
                        .entry((m.topic().to_string(), partition as usize))
                        .or_default()
                        .push(e);
                }
                Err(()) => {
                    telemetry::edge_bad_record(&topic.channel);
                    if limiter.allow("edge-bad-record") {
                        tracing::warn!(
                            topic = %m.topic(),
                            partition,
                            offset = m.offset(),
                            "skipping a channel record without a UTF-8 key or a JSON object value"
                        );
                    }
                }
            }
            let key = (m.topic().to_string(), partition);
            if targets.0.get(&key).is_some_and(|t| m.offset() >= *t) {
                targets.0.remove(&key);
                if targets.0.is_empty() {
                    tracing::info!("edge caught up with every channel topic");
                    hub.set_caught_up();
                }
            }
        }
        if !targets.0.is_empty() {
            // Not caught up yet: the last offsets may hold nothing to read (transaction
            // markers, aborted records). Caught up where the position has reached the end.
            if let Ok(positions) = consumer.position() {
                targets.0.retain(|(t, p), target| {
                    !positions
                        .find_partition(t, *p)
                        .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o > *target))
                });
                if targets.0.is_empty() {
                    tracing::info!("edge caught up with every channel topic");
                    hub.set_caught_up();
                }
            }
        }
        for ((name, p), entries) in batch.drain() {
            let Some(topic) = by_topic.get(&name) else {
                continue;
            };
            if let Some(log) = topic.partitions.get(p) {
                log.append(entries, hub.history);
            }
            if !touched.iter().any(|t| Arc::ptr_eq(t, topic)) {
                touched.push(topic.clone());
            }
        }
        hub.records_in.fetch_add(n as u64, Ordering::Relaxed);
        for t in touched.drain(..) {
            t.wake();
        }
        if !joining.is_empty() {
            join_read_topics(&consumer, &hub, &mut joining, &mut limiter);
        }
    }
    let _ = consumer.unassign();
}

/// Moves every joining topic read up to its ends into the hub. A partition is read when the hub
/// holds its end, or when the consumer's position is there (the last records may be ones the
/// edge skips, or offsets Kafka does not return, such as transaction markers).
fn join_read_topics(
    consumer: &BaseConsumer,
    hub: &Hub,
    joining: &mut FxHashMap<String, Joining>,
    limiter: &mut LogLimiter,
) {
    let positions = consumer.position().ok(); // local: no request to Kafka
    joining.retain(|topic, j| {
        if !j.assigned {
            return true;
        }
        j.waits.retain(|&p, &mut end| {
            let held = j.log.partitions[p as usize].next() >= end;
            let passed = positions
                .as_ref()
                .and_then(|tpl| tpl.find_partition(topic, p))
                .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= end));
            !(held || passed)
        });
        if j.waits.is_empty() {
            tracing::info!(channel = %j.log.channel, topic = %j.log.kafka_topic, "serving a channel added to channels.toml");
            hub.add_topic(j.log.clone());
            return false;
        }
        if j.since.elapsed() > JOINING_WARN_AFTER && limiter.allow("edge-joining") {
            tracing::warn!(channel = %j.log.channel, partitions = ?j.waits.keys().collect::<Vec<_>>(), "an added channel is still being read up to where its topic ended when found");
        }
        true
    });
}
