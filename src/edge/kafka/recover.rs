//! The reader's side of stall detection: it publishes its position in every partition for the
//! probe's checks ([`crate::edge::log::progress`]) and re-seeks a partition the probe found
//! stalled: resumed (in case fetching was paused), taken out of the assignment and put back at
//! the offset after the last record the edge holds, which gives it a fresh fetch state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::edge::log::topic::TopicLog;
use crate::kafka::{self, KafkaFailure};

/// How often the reader publishes its positions.
const PUBLISH_EVERY: Duration = Duration::from_millis(200);

/// Fault injection for tests: the reader pauses fetching of one partition of `channel` once the
/// edge has caught up, as a fetcher that stopped would, and pauses it again after each of the
/// first `repauses` re-seeks (so a stall can outlast the first recovery attempts).
#[derive(Clone, Debug)]
pub struct StallFault {
    pub channel: String,
    pub partition: i32,
    pub repauses: u32,
}

/// The reader's stall-recovery state.
pub struct Recovery {
    next_publish: Instant,
    fault: Option<(StallFault, bool)>,
}

impl Recovery {
    pub fn new(fault: Option<StallFault>) -> Recovery {
        Recovery {
            next_publish: Instant::now(),
            fault: fault.map(|f| (f, false)),
        }
    }

    /// Publishes positions (at most every [`PUBLISH_EVERY`]) and re-seeks what the probe asked
    /// for. `caught_up`: the edge has read every partition to its end once.
    pub fn tick<'a>(
        &mut self,
        consumer: &BaseConsumer,
        topics: impl Iterator<Item = &'a Arc<TopicLog>> + Clone,
        caught_up: bool,
    ) {
        if Instant::now() < self.next_publish {
            return;
        }
        self.next_publish = Instant::now() + PUBLISH_EVERY;
        if let Ok(positions) = consumer.position() {
            for t in topics.clone() {
                for (p, log) in t.partitions.iter().enumerate() {
                    let at = positions.find_partition(&t.kafka_topic, p as i32);
                    if let Some(Offset::Offset(o)) = at.map(|e| e.offset()) {
                        log.progress.set_position(o);
                    }
                }
            }
        }
        for t in topics {
            for (p, log) in t.partitions.iter().enumerate() {
                if log.progress.take_reseek() {
                    let at = log.next();
                    match reseek(consumer, &t.kafka_topic, p as i32, at) {
                        Ok(()) => {
                            tracing::warn!(channel = %t.channel, partition = p, offset = at, "re-seeked a stalled partition");
                            log.progress.set_position(at);
                        }
                        Err(e) => {
                            tracing::warn!(channel = %t.channel, partition = p, "re-seeking a stalled partition failed: {e}");
                        }
                    }
                    self.inject(consumer, t, p as i32, true);
                }
            }
            if caught_up {
                for p in 0..t.partitions.len() {
                    self.inject(consumer, t, p as i32, false);
                }
            }
        }
    }

    /// The test fault: the first pause once caught up; another after a re-seek while
    /// `repauses` last.
    fn inject(&mut self, consumer: &BaseConsumer, t: &TopicLog, p: i32, after_reseek: bool) {
        let Some((f, paused_once)) = self.fault.as_mut() else {
            return;
        };
        if f.channel != t.channel || f.partition != p {
            return;
        }
        let due = if after_reseek {
            *paused_once && f.repauses > 0
        } else {
            !*paused_once
        };
        if !due {
            return;
        }
        if after_reseek {
            f.repauses -= 1;
        }
        *paused_once = true;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&t.kafka_topic, p);
        match consumer.pause(&tpl) {
            Ok(()) => {
                tracing::warn!(channel = %t.channel, partition = p, "fault injection: fetching paused")
            }
            Err(e) => tracing::warn!("fault injection: pausing failed: {e}"),
        }
    }
}

/// Resumes `topic`/`partition`, takes it out of the assignment and assigns it again at `at`.
fn reseek(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    at: i64,
) -> Result<(), KafkaFailure> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    // Not an error when it was not paused.
    let _ = consumer.resume(&tpl);
    consumer.incremental_unassign(&tpl).map_err(kafka::ctx(
        "taking a stalled partition out of the assignment",
    ))?;
    let mut again = TopicPartitionList::new();
    again
        .add_partition_offset(topic, partition, Offset::Offset(at))
        .map_err(kafka::ctx("building a re-assignment"))?;
    consumer
        .incremental_assign(&again)
        .map_err(kafka::ctx("assigning a stalled partition again"))
}
