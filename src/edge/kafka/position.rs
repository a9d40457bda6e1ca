//! Where the edge starts reading: it waits for the channel topics, then positions each
//! partition `snapshot_lookback_records` before its end (so snapshots know every symbol that
//! ticked in that window; memory keeps the last `history_per_partition`) and finds the record
//! before that start (the first frame's `prev`).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use tokio_util::sync::CancellationToken;

use crate::edge::log::topic::{Hub, TopicLog};
use crate::kafka::{self, ADMIN_TIMEOUT, KafkaFailure, KafkaSettings};

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
    let consumer = settings.live_reader()?;
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
pub struct Targets(pub FxHashMap<(String, i32), i64>);

/// Every partition of `topics`, each from the offset after the last one the hub holds.
pub fn partitions<'a>(
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
pub fn add_to_assignment(
    consumer: &BaseConsumer,
    topic: &Arc<TopicLog>,
) -> Result<(), KafkaFailure> {
    consumer
        .incremental_assign(&partitions([topic])?)
        .map_err(kafka::ctx("adding to the edge's assignment"))
}
