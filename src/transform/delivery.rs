//! A worker's output producer: its delivery reports (a failed delivery is fatal to the worker,
//! a purge is not), how it is created (idempotent or transactional), and the flush that waits
//! for every report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tracing::{error, warn};

use super::latest::LatestBook;
use crate::config::Delivery;
use crate::kafka::KafkaSettings;
use crate::telemetry;

/// How long a transaction call (init, send offsets, commit, abort) may block.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// The first unrecoverable error of a worker; once set the worker stops without committing.
#[derive(Default)]
pub struct Fatal {
    set: AtomicBool,
    message: Mutex<Option<String>>,
}

impl Fatal {
    pub fn set(&self, message: String) {
        let mut m = self.message.lock().unwrap_or_else(|e| e.into_inner());
        if m.is_none() {
            error!("{message}");
            *m = Some(message);
        }
        self.set.store(true, Ordering::Release);
    }

    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    pub fn message(&self) -> Option<String> {
        self.message
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What a delivery report says about the record it reports on.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Written at this offset.
    Written,
    /// Dropped on purpose by this worker (a lost assignment): not an error.
    Purged,
    /// Not written, or not known to be written: the worker must stop before committing past it.
    Failed(String),
}

/// Classifies a delivery report from its error (if any) and the offset it gives.
///
/// librdkafka reports a batch the broker answered with `DUPLICATE_SEQUENCE_NUMBER` as delivered,
/// with offset -1: the broker claims it already has the batch, but nothing confirms where, and a
/// broker that is wrong about it leaves a silent hole. Such a record counts as failed.
pub fn classify(error: Option<&KafkaError>, offset: i64) -> Outcome {
    match error {
        Some(e)
            if matches!(
                e.rdkafka_error_code(),
                Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
            ) =>
        {
            Outcome::Purged
        }
        Some(e) => Outcome::Failed(e.to_string()),
        None if offset < 0 => Outcome::Failed(
            "the broker acknowledged it without an offset (a duplicate-sequence reply), so it \
             cannot be confirmed as written"
                .to_string(),
        ),
        None => Outcome::Written,
    }
}

/// Producer callbacks: a delivery that failed for good stops the worker (so nothing is
/// committed past it and the resume rule rewrites it after a restart); one that succeeded goes
/// to the latest-price book. Each record carries the book's generation as its opaque.
pub struct DeliveryContext {
    pub fatal: Arc<Fatal>,
    pub latest: Arc<LatestBook>,
    /// In a transaction a failed record fails the commit, which aborts and rewinds: not fatal.
    pub transactional: bool,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, generation: usize) {
        let (delivery, topic, partition) = match result {
            Ok(m) => (classify(None, m.offset()), m.topic(), m.partition()),
            Err((e, m)) => (classify(Some(e), m.offset()), m.topic(), m.partition()),
        };
        if let (Outcome::Written, Ok(m)) = (&delivery, result) {
            self.latest.delivered(
                generation,
                topic,
                partition,
                m.offset(),
                m.key(),
                m.payload(),
            );
        }
        if let Outcome::Failed(why) = delivery {
            telemetry::produce_error();
            if self.transactional {
                warn!("delivery to {topic}/{partition} failed: {why}; the transaction will abort");
                return;
            }
            self.fatal.set(format!(
                "delivery to {topic}/{partition} failed: {why}; stopping so that nothing is \
                 committed past it (run `pricefeed reconcile` if the broker may have lost it)"
            ));
        }
    }
}

pub type OutputProducer = ThreadedProducer<DeliveryContext>;

/// A producer for a worker's output; its failures land in `fatal`. A transactional one gets a
/// `transactional.id` of its own (`<group>-<random>`: fencing comes from the group generation
/// sent with the offsets, KIP-447, not from the id) and is initialised.
pub fn create_producer(
    kafka: &KafkaSettings,
    fatal: Arc<Fatal>,
    latest: Arc<LatestBook>,
    delivery: Delivery,
    group_id: &str,
) -> Result<OutputProducer, crate::kafka::KafkaFailure> {
    let transactional = delivery == Delivery::Transactional;
    let id = transactional.then(|| format!("{group_id}-{:016x}", rand::random::<u64>()));
    let producer: OutputProducer = kafka.output_producer(
        id.as_deref(),
        DeliveryContext {
            fatal,
            latest,
            transactional,
        },
    )?;
    if transactional {
        producer
            .init_transactions(TRANSACTION_TIMEOUT)
            .map_err(crate::kafka::ctx("initialising transactions"))?;
    }
    Ok(producer)
}

/// Sends every queued record at once and waits until each has its delivery report (served by
/// the producer's own polling thread); `Err` with how many are left after `timeout`.
///
/// Not `Producer::flush`: rdkafka 0.39's flush polls in steps of 100 ms that never end early, so
/// every checkpoint held the worker (and every price behind it) for at least 100 ms: the p99 of
/// raw record → client was ~95 ms at 200 prices/s with it, ~20 ms without.
pub fn flush(producer: &OutputProducer, timeout: Duration) -> Result<(), i32> {
    // A zero timeout only wakes the broker threads so that nothing waits for linger.ms.
    let _ = producer.flush(Duration::ZERO);
    let deadline = Instant::now() + timeout;
    loop {
        let left = producer.in_flight_count();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(left);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_without_an_offset_is_a_failure_and_a_purge_is_not() {
        assert_eq!(classify(None, 41), Outcome::Written);
        assert_eq!(classify(None, 0), Outcome::Written);
        // What librdkafka reports for a batch the broker answered with DUPLICATE_SEQUENCE_NUMBER.
        assert!(matches!(classify(None, -1), Outcome::Failed(why) if why.contains("duplicate")));
        let purged = KafkaError::MessageProduction(RDKafkaErrorCode::PurgeQueue);
        assert_eq!(classify(Some(&purged), -1), Outcome::Purged);
        let purged = KafkaError::MessageProduction(RDKafkaErrorCode::PurgeInflight);
        assert_eq!(classify(Some(&purged), -1), Outcome::Purged);
        let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert!(matches!(classify(Some(&timed_out), -1), Outcome::Failed(_)));
    }
}
