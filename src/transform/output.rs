//! Writing output records: the headers they carry, the floors below which an output already
//! holds a raw offset's records, and the enqueue that waits on a full queue without outliving
//! the worker's assignment.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use tracing::warn;

use super::context::{OUTPUT_STALL_LIMIT, WorkerContext};
use super::delivery::OutputProducer;
use super::options::TransformError;
use super::resume::{RAW_OFFSET_HEADER, RULES_VERSION_HEADER};

type RawConsumer = BaseConsumer<WorkerContext>;

/// Headers of a dead-lettered record.
pub const ERROR_HEADER: &str = "pricefeed-error";
pub const ERROR_DETAIL_HEADER: &str = "pricefeed-error-detail";
pub const RAW_TOPIC_HEADER: &str = "pricefeed-raw-topic";
pub const RAW_PARTITION_HEADER: &str = "pricefeed-raw-partition";

/// Per raw partition: outputs that already hold records up to a raw offset (see `resume`).
#[derive(Default)]
pub struct Floors {
    pub max: i64,
    pub by_topic: HashMap<String, i64>,
}

impl Floors {
    #[inline]
    pub fn written(&self, topic: &str, offset: i64) -> bool {
        offset <= self.max && self.by_topic.get(topic).is_some_and(|f| offset <= *f)
    }
}

/// The headers of a dead letter: where the raw record was, the rules version, and why.
pub fn dead_letter_headers(
    m: &BorrowedMessage<'_>,
    rules_version: &str,
    code: &str,
    detail: &str,
) -> OwnedHeaders {
    let offset = m.offset().to_string();
    let partition = m.partition().to_string();
    OwnedHeaders::new_with_capacity(6)
        .insert(Header {
            key: RAW_OFFSET_HEADER,
            value: Some(&offset),
        })
        .insert(Header {
            key: RULES_VERSION_HEADER,
            value: Some(rules_version),
        })
        .insert(Header {
            key: ERROR_HEADER,
            value: Some(code),
        })
        .insert(Header {
            key: ERROR_DETAIL_HEADER,
            value: Some(detail),
        })
        .insert(Header {
            key: RAW_TOPIC_HEADER,
            value: Some(m.topic()),
        })
        .insert(Header {
            key: RAW_PARTITION_HEADER,
            value: Some(&partition),
        })
}

/// The dead letter of raw record `m`: its key and value as they were, with `headers`.
pub fn dead_letter_record<'a>(
    m: &'a BorrowedMessage<'_>,
    topic: &'a str,
    headers: OwnedHeaders,
    generation: usize,
) -> BaseRecord<'a, [u8], [u8], usize> {
    let record = BaseRecord::with_opaque_to(topic, generation)
        .partition(m.partition())
        .payload(m.payload().unwrap_or_default())
        .headers(headers);
    match m.key() {
        Some(key) => record.key(key),
        None => record,
    }
}

/// Why a record was not enqueued.
pub enum Send {
    /// The worker must stop.
    Failed(TransformError),
    /// The worker lost its partitions or is stopping: the record is not its to write any more.
    GaveUp,
}

/// Enqueues a record, waiting while librdkafka's local queue is full, but not past the moment
/// the worker loses its assignment (an expelled worker must not keep writing), a delivery
/// failure, or [`OUTPUT_STALL_LIMIT`].
pub fn send<'a>(
    producer: &OutputProducer,
    consumer: &RawConsumer,
    mut record: BaseRecord<'a, [u8], [u8], usize>,
) -> Result<(), Send> {
    let mut deadline = None;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                let context = consumer.context();
                if context.fatal.is_set() {
                    return Err(Send::GaveUp);
                }
                // librdkafka marks the assignment lost when it hears of it; past
                // max.poll.interval.ms without a poll the group has let go in any case (and
                // librdkafka says so only at the next poll).
                let unpolled = context
                    .last_poll
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .elapsed();
                if consumer.assignment_lost() || unpolled >= context.max_poll_interval {
                    context
                        .lost_seen
                        .store(true, std::sync::atomic::Ordering::Release);
                    warn!("the group let go of this worker while its output queue was full");
                    return Err(Send::GaveUp);
                }
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + OUTPUT_STALL_LIMIT);
                if Instant::now() >= deadline {
                    let message = format!(
                        "the output queue stayed full for {OUTPUT_STALL_LIMIT:?}: Kafka is not \
                         taking records for {}/{:?}",
                        record.topic, record.partition
                    );
                    context.fatal.set(message.clone());
                    return Err(Send::Failed(TransformError::Fatal(message)));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, r)) => {
                return Err(Send::Failed(TransformError::Enqueue {
                    topic: r.topic.to_string(),
                    partition: r.partition,
                    source: e,
                }));
            }
        }
    }
}

/// Sends the latest-price records of the symbols that changed since the last checkpoint (their
/// channel records are acknowledged by now). The caller waits for them (flush or commit)
/// before it commits the raw offsets.
pub fn write_latest(producer: &OutputProducer, consumer: &RawConsumer) -> Result<usize, Send> {
    let book = &consumer.context().latest;
    let pending = book.take_dirty();
    let generation = book.generation();
    for p in &pending {
        send(producer, consumer, p.record(generation))?;
    }
    Ok(pending.len())
}
