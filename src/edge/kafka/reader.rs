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
use super::recover::{Recovery, StallFault};
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
    /// It takes the place of the log the hub has for its channel (the topic was created again).
    replaces: bool,
    waits: FxHashMap<i32, i64>,
    since: Instant,
    /// In the consumer's assignment (an assignment that failed is retried).
    assigned: bool,
}

/// How long an added channel may take to be read up to its end before the edge says so.
const JOINING_WARN_AFTER: Duration = Duration::from_secs(30);

/// What the reader keeps per channel topic, by partition: no lookup by name and no allocation
/// per record.
struct Reading {
    log: Arc<TopicLog>,
    records_in: metrics::Counter,
    /// The offset of the last record turned into a frame (`prev` of the next); `None` until the
    /// first, then the partition's own `previous`.
    previous: Vec<Option<i64>>,
    /// Records read in this batch, appended to the log after it (the buffers are kept).
    batch: Vec<Vec<Entry>>,
    /// At start: the offset whose read means this partition is caught up.
    target: Vec<Option<i64>>,
}

impl Reading {
    fn new(log: Arc<TopicLog>) -> Reading {
        let n = log.partitions.len();
        Reading {
            records_in: telemetry::edge_records_in(&log.channel),
            previous: vec![None; n],
            batch: (0..n).map(|_| Vec::new()).collect(),
            target: vec![None; n],
            log,
        }
    }
}

/// Wakes the sessions of the topics that received records, at most once per `every` (0: at
/// once). The first batch after a quiet spell wakes at once; later ones wait for the window.
struct WakeSchedule {
    every: Duration,
    last: Instant,
    pending: Vec<usize>,
}

impl WakeSchedule {
    /// Due now, or when (`None`: nothing pending).
    fn due(&self) -> Option<Instant> {
        (!self.pending.is_empty()).then(|| self.last + self.every)
    }

    fn wake_if_due(&mut self, topics: &[Reading]) {
        let now = Instant::now();
        if self.due().is_some_and(|d| now >= d) {
            for i in self.pending.drain(..) {
                topics[i].log.wake();
            }
            self.last = now;
        }
    }
}

/// How the reader runs.
pub struct ReaderOptions {
    /// Sessions are woken at most once per this (0: after every batch).
    pub coalesce: Duration,
    /// Fault injection for tests.
    pub fault: Option<StallFault>,
}

/// Reads until `shutdown`; run it on a blocking thread. Topics sent on `added` are read too.
pub fn run(
    consumer: BaseConsumer,
    targets: Targets,
    hub: Arc<Hub>,
    kafka_error: Arc<AtomicBool>,
    added: Receiver<NewTopic>,
    opts: ReaderOptions,
    shutdown: CancellationToken,
) {
    let coalesce = opts.coalesce;
    let mut recovery = Recovery::new(opts.fault);
    let mut topics: Vec<Reading> = hub
        .topics()
        .values()
        .map(|t| Reading::new(t.clone()))
        .collect();
    let mut index: FxHashMap<String, usize> = FxHashMap::default();
    let mut waiting = 0;
    for (i, t) in topics.iter_mut().enumerate() {
        index.insert(t.log.kafka_topic.clone(), i);
        for (p, target) in t.target.iter_mut().enumerate() {
            *target = targets
                .0
                .get(&(t.log.kafka_topic.clone(), p as i32))
                .copied();
            waiting += usize::from(target.is_some());
        }
    }
    if waiting == 0 {
        hub.set_caught_up();
    }
    let mut limiter = LogLimiter::new(Duration::from_secs(10));
    let mut joining: FxHashMap<String, Joining> = FxHashMap::default();
    let mut waker = WakeSchedule {
        every: coalesce,
        last: Instant::now()
            .checked_sub(coalesce)
            .unwrap_or_else(Instant::now),
        pending: Vec::new(),
    };
    let mut touched = vec![false; topics.len()];
    while !shutdown.is_cancelled() {
        while let Ok(new) = added.try_recv() {
            let t = new.log;
            let replaces = match index.get(&t.kafka_topic) {
                // The topic was deleted and created again: the old life's partitions leave the
                // assignment (with whatever librdkafka still holds of them) and the new log
                // reads the new one.
                Some(&i) => {
                    let old = topics[i].log.clone();
                    let _ = consumer.incremental_unassign(&whole(&old));
                    topics[i] = Reading::new(t.clone());
                    tracing::warn!(channel = %t.channel, topic = %t.kafka_topic, old = %old.epoch, new = %t.epoch, "the channel topic was deleted and created again: reading its new life");
                    true
                }
                None => {
                    index.insert(t.kafka_topic.clone(), topics.len());
                    topics.push(Reading::new(t.clone()));
                    touched.push(false);
                    false
                }
            };
            let waits = (t.partitions.iter().zip(&new.ends).enumerate())
                .filter(|(_, (log, end))| **end > log.next())
                .map(|(p, (_, end))| (p as i32, *end))
                .collect();
            let since = Instant::now();
            joining.insert(
                t.kafka_topic.clone(),
                Joining {
                    log: t,
                    replaces,
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
        let mut wait = match waker.due() {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::from_millis(100),
        };
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
            let Some(&i) = index.get(m.topic()) else {
                continue;
            };
            let t = &mut topics[i];
            let p = m.partition() as usize;
            if p >= t.batch.len() {
                continue;
            }
            t.records_in.increment(1);
            let key = m.key().and_then(|k| std::str::from_utf8(k).ok());
            let fallback_ts = m.timestamp().to_millis().unwrap_or(0);
            let entry = key.ok_or(()).and_then(|symbol| {
                let id = hub.symbols.intern(symbol);
                let prev = t.previous[p].unwrap_or_else(|| t.log.partitions[p].previous());
                encode_entry(
                    &t.log.channel,
                    p as i32,
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
                    t.previous[p] = Some(e.offset);
                    t.batch[p].push(e);
                    touched[i] = true;
                }
                Err(()) => {
                    telemetry::edge_bad_record(&t.log.channel);
                    if limiter.allow("edge-bad-record") {
                        tracing::warn!(
                            topic = %m.topic(),
                            partition = p,
                            offset = m.offset(),
                            "skipping a channel record without a UTF-8 key or a JSON object value"
                        );
                    }
                }
            }
            if t.target[p].is_some_and(|target| m.offset() >= target) {
                t.target[p] = None;
                waiting -= 1;
                if waiting == 0 {
                    tracing::info!("edge caught up with every channel topic");
                    hub.set_caught_up();
                }
            }
        }
        if waiting > 0 {
            waiting = caught_up_by_position(&consumer, &mut topics);
            if waiting == 0 {
                tracing::info!("edge caught up with every channel topic");
                hub.set_caught_up();
            }
        }
        for (i, t) in topics.iter_mut().enumerate() {
            if !std::mem::take(&mut touched[i]) {
                continue;
            }
            for (p, entries) in t.batch.iter_mut().enumerate() {
                if !entries.is_empty() {
                    t.log.partitions[p].append(entries.drain(..), hub.history);
                }
            }
            if !waker.pending.contains(&i) {
                waker.pending.push(i);
            }
        }
        hub.records_in.fetch_add(n as u64, Ordering::Relaxed);
        waker.wake_if_due(&topics);
        if !joining.is_empty() {
            join_read_topics(&consumer, &hub, &mut joining, &mut limiter);
        }
        recovery.tick(&consumer, topics.iter().map(|t| &t.log), hub.caught_up());
    }
    let _ = consumer.unassign();
}

/// Every partition of `log`'s topic.
fn whole(log: &TopicLog) -> rdkafka::TopicPartitionList {
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..log.partitions.len() {
        tpl.add_partition(&log.kafka_topic, p as i32);
    }
    tpl
}

/// Not caught up yet: the last offsets may hold nothing to read (transaction markers, aborted
/// records). A partition is caught up where the consumer's position (local, no request to
/// Kafka) has passed its target. Returns how many partitions still wait.
fn caught_up_by_position(consumer: &BaseConsumer, topics: &mut [Reading]) -> usize {
    let Ok(positions) = consumer.position() else {
        return topics
            .iter()
            .flat_map(|t| &t.target)
            .filter(|t| t.is_some())
            .count();
    };
    let mut waiting = 0;
    for t in topics {
        for (p, target) in t.target.iter_mut().enumerate() {
            let Some(end) = *target else { continue };
            let passed = positions
                .find_partition(&t.log.kafka_topic, p as i32)
                .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o > end));
            if passed {
                *target = None;
            } else {
                waiting += 1;
            }
        }
    }
    waiting
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
            if j.replaces {
                tracing::info!(channel = %j.log.channel, epoch = %j.log.epoch, "serving the new life of a channel topic; its sessions start over with a snapshot");
                hub.replace_topic(j.log.clone());
            } else {
                tracing::info!(channel = %j.log.channel, topic = %j.log.kafka_topic, "serving a channel added to channels.toml");
                hub.add_topic(j.log.clone());
            }
            return false;
        }
        if j.since.elapsed() > JOINING_WARN_AFTER && limiter.allow("edge-joining") {
            tracing::warn!(channel = %j.log.channel, partitions = ?j.waits.keys().collect::<Vec<_>>(), "an added channel is still being read up to where its topic ended when found");
        }
        true
    });
}
