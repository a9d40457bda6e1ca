//! The only consumer of the channel topics on an edge: assigns every partition (no consumer
//! group, so any number of edge nodes read the same topics side by side), starts each partition
//! `snapshot_lookback_records` before its end (so snapshots know every symbol that ticked in that
//! window; memory keeps the last `history_per_partition`), and appends what it reads to the
//! [`Hub`]. A channel added to channels.toml while the edge runs is found by the
//! [probe](super::probe) thread (which may wait on Kafka), positioned the same way and handed to
//! the reader, which adds its partitions to the assignment (the others are not touched) and the
//! topic to the hub once it has read the topic up to where it ended when found.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use tokio_util::sync::CancellationToken;

use super::hub::{Entry, Hub, TopicLog, encode_entry};
use crate::kafka::{self, ADMIN_TIMEOUT, KafkaFailure, KafkaSettings};
use crate::telemetry::{self, LogLimiter};

/// Most records appended per wake-up of the sessions.
const MAX_BATCH: usize = 4096;

/// Waits until every channel topic exists and returns its partition count.
pub async fn wait_for_topics(
    settings: &KafkaSettings,
    topics: &[String],
    shutdown: &CancellationToken,
) -> Result<Option<Vec<usize>>, KafkaFailure> {
    let reader = Arc::new(settings.reader()?);
    let mut counts = Vec::with_capacity(topics.len());
    for t in topics {
        let mut logged = false;
        loop {
            let count = tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                c = kafka::partition_count_off_thread(&reader, t) => c,
            };
            match count {
                Ok(Some(n)) => {
                    counts.push(n as usize);
                    break;
                }
                Ok(None) if !logged => {
                    tracing::info!(topic = %t, "waiting for the channel topic (the transform workers create it)");
                    logged = true;
                }
                Err(e) if !logged => {
                    tracing::info!("waiting for Kafka at {}: {e}", settings.brokers);
                    logged = true;
                }
                _ => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
    Ok(Some(counts))
}

/// A consumer tuned for low latency reads of the channel topics.
pub fn consumer(settings: &KafkaSettings) -> Result<BaseConsumer, KafkaFailure> {
    use rdkafka::config::FromClientConfig;
    let mut c = settings.reader_config();
    // Settings given by the operator win; these are only defaults.
    if !settings
        .options
        .iter()
        .any(|(k, _)| k.ends_with("fetch.wait.max.ms"))
    {
        c.set("fetch.wait.max.ms", "10");
    }
    BaseConsumer::from_config(&c).map_err(kafka::ctx("creating the edge's Kafka consumer"))
}

/// Positions every partition of `topic` `back` records before its end (or at its start) and
/// returns each partition's end.
pub fn position(
    client: &BaseConsumer,
    topic: &TopicLog,
    back: usize,
) -> Result<Vec<i64>, KafkaFailure> {
    let mut ends = Vec::with_capacity(topic.partitions.len());
    for (p, log) in topic.partitions.iter().enumerate() {
        let (low, high) = client
            .fetch_watermarks(&topic.kafka_topic, p as i32, ADMIN_TIMEOUT)
            .map_err(kafka::ctx(format!(
                "reading watermarks of {}/{p}",
                topic.kafka_topic
            )))?;
        let start = high.saturating_sub(back as i64).max(low).max(0);
        let previous = last_record_before(client, &topic.kafka_topic, p as i32, low, start)?;
        log.start_at(start, previous);
        ends.push(high);
    }
    Ok(ends)
}

/// The offset of the last record before `start` that the edge can serve, so that the first
/// record it reads says which one came before it (`prev`). Offsets below `start` may hold no
/// record (transaction markers, aborted transactions): windows further and further back are
/// read. Without one in the last 262,144 offsets, `start - 1` stands in (a client may then be
/// told of a gap that is not one, never the other way round).
fn last_record_before(
    client: &BaseConsumer,
    topic: &str,
    partition: i32,
    low: i64,
    start: i64,
) -> Result<i64, KafkaFailure> {
    let mut end = start;
    for window in [64, 4096, 262_144] {
        if end <= low {
            // Nothing before: what is below `low` is gone from Kafka.
            return Ok(low.min(start) - 1);
        }
        let from = start.saturating_sub(window).max(low);
        let mut last = None;
        kafka::read_range(
            client,
            &[(topic.to_string(), partition, from, end)],
            ADMIN_TIMEOUT,
            |m| {
                let servable = m.key().is_some_and(|k| std::str::from_utf8(k).is_ok())
                    && m.payload().is_some_and(|v| {
                        let v = v.trim_ascii();
                        v.starts_with(b"{") && v.ends_with(b"}")
                    });
                if servable {
                    last = Some(m.offset());
                }
            },
        )?;
        if let Some(o) = last {
            return Ok(o);
        }
        end = from;
    }
    Ok(start - 1)
}

/// Positions every partition and returns the consumer; `hub` knows where each one starts.
pub fn assign(
    settings: &KafkaSettings,
    hub: &Hub,
) -> Result<(BaseConsumer, Targets), KafkaFailure> {
    let consumer = consumer(settings)?;
    let mut targets = Targets::default();
    let topics = hub.topics();
    for topic in topics.values() {
        let ends = position(&consumer, topic, hub.read_back)?;
        for ((p, log), high) in topic.partitions.iter().enumerate().zip(ends) {
            if high > log.next() {
                // Caught up once the record at high - 1 is read.
                targets
                    .0
                    .insert((topic.kafka_topic.clone(), p as i32), high - 1);
            }
        }
    }
    consumer
        .assign(&partitions(topics.values())?)
        .map_err(kafka::ctx("assigning the channel topics"))?;
    Ok((consumer, targets))
}

/// The end offsets each partition had when the edge started.
#[derive(Default)]
pub struct Targets(FxHashMap<(String, i32), i64>);

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
    edge: Arc<super::Edge>,
    added: Receiver<NewTopic>,
    shutdown: CancellationToken,
) {
    let hub = edge.hub.clone();
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
                    edge.kafka_error.store(true, Ordering::Release);
                    if limiter.allow("edge-consume") {
                        tracing::warn!("reading channel topics: {e}");
                    }
                    break;
                }
            };
            wait = Duration::ZERO;
            n += 1;
            edge.kafka_error.store(false, Ordering::Release);
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

/// Every partition of `topics`, each from the offset after the last one the hub holds.
fn partitions<'a>(
    topics: impl IntoIterator<Item = &'a Arc<TopicLog>>,
) -> Result<TopicPartitionList, KafkaFailure> {
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for (p, log) in t.partitions.iter().enumerate() {
            tpl.add_partition_offset(&t.kafka_topic, p as i32, Offset::Offset(log.next()))
                .map_err(kafka::ctx("building the edge's assignment"))?;
        }
    }
    Ok(tpl)
}

/// Adds the partitions of `topic` to the assignment, leaving the others as they are.
fn add_to_assignment(consumer: &BaseConsumer, topic: &Arc<TopicLog>) -> Result<(), KafkaFailure> {
    consumer
        .incremental_assign(&partitions([topic])?)
        .map_err(kafka::ctx("adding to the edge's assignment"))
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
