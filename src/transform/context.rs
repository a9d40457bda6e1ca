//! librdkafka callbacks of a transform worker: delivery reports, consumer statistics, and the
//! rebalance hook where the resume rule runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rdkafka::client::ClientContext;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use super::resume::{self, PartitionResume};
use crate::config::Delivery;
use crate::kafka::KafkaSettings;
use crate::telemetry;

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
/// committed past it and the resume rule rewrites it after a restart).
pub struct DeliveryContext {
    pub fatal: Arc<Fatal>,
    /// In a transaction a failed record fails the commit, which aborts and rewinds: not fatal.
    pub transactional: bool,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let (delivery, topic, partition) = match result {
            Ok(m) => (classify(None, m.offset()), m.topic(), m.partition()),
            Err((e, m)) => (classify(Some(e), m.offset()), m.topic(), m.partition()),
        };
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
    delivery: Delivery,
    group_id: &str,
) -> Result<OutputProducer, String> {
    let transactional = delivery == Delivery::Transactional;
    let config = if transactional {
        kafka.transactional_producer_config(&format!("{group_id}-{:016x}", rand::random::<u64>()))
    } else {
        kafka.producer_config()
    };
    let producer = OutputProducer::from_config_and_context(
        &config,
        DeliveryContext {
            fatal,
            transactional,
        },
    )
    .map_err(|e| format!("creating the producer: {}", crate::kafka::shown(&e)))?;
    if transactional {
        producer
            .init_transactions(TRANSACTION_TIMEOUT)
            .map_err(|e| format!("initialising transactions: {e}"))?;
    }
    Ok(producer)
}

/// How long a transaction call (init, send offsets, commit, abort) may block.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Partition changes for the poll loop, produced inside the rebalance callback.
#[derive(Debug)]
pub enum AssignmentEvent {
    Assigned(Vec<PartitionResume>),
    Revoked,
    /// The producer was replaced: the loop must pick up the new one.
    ProducerReplaced,
}

/// Consumer callbacks of a worker.
pub struct WorkerContext {
    /// Replaced (and the old one dropped, which purges what it still holds) when the worker
    /// loses its assignment; the loop picks the new one up after each poll.
    pub producer: ArcSwap<OutputProducer>,
    pub kafka: KafkaSettings,
    pub raw_topic: String,
    /// Output topics the resume rule checks, computed by the loop from the live rules.
    pub outputs: Mutex<Vec<String>>,
    /// Per raw partition: the offset after the last record whose output is enqueued.
    pub positions: Mutex<HashMap<i32, i64>>,
    pub events: Mutex<Vec<AssignmentEvent>>,
    pub has_events: AtomicBool,
    pub fatal: Arc<Fatal>,
    pub ready: Arc<AtomicBool>,
    pub delivery: Delivery,
    pub group_id: String,
    /// Transactional delivery: a transaction is open.
    pub txn_open: AtomicBool,
    /// Transactional delivery: per raw partition, the offset the group has committed (where a
    /// rewind after an aborted transaction goes back to).
    pub committed: Mutex<HashMap<i32, i64>>,
    /// When the transactional producer was last replaced.
    pub renewed: Mutex<Option<Instant>>,
    /// The loop gave up a record because librdkafka said the assignment was lost.
    pub lost_seen: AtomicBool,
    /// How long the loop went without polling before the current poll, in ms.
    pub poll_gap_ms: std::sync::atomic::AtomicU64,
    /// When the loop's last poll returned.
    pub last_poll: Mutex<Instant>,
    /// The consumer's `max.poll.interval.ms`: a gap this long means the group has let go of
    /// this worker, whatever the revocation says.
    pub max_poll_interval: Duration,
}

const RESUME_TIMEOUT: Duration = Duration::from_secs(30);
/// How long output may take to be acknowledged before the worker stops (without committing).
/// Well below `message.timeout.ms` (at least 300 s, see `check_options`), so a worker stops
/// before librdkafka can time a record out, which would let a later record land after it.
pub const OUTPUT_STALL_LIMIT: Duration = Duration::from_secs(60);

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

impl WorkerContext {
    pub(super) fn push(&self, event: AssignmentEvent) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
        self.has_events.store(true, Ordering::Release);
    }

    pub fn take_events(&self) -> Vec<AssignmentEvent> {
        if !self.has_events.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records that every output of raw record `offset` of `partition` is enqueued.
    #[inline]
    pub fn handled(&self, partition: i32, offset: i64) {
        self.positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(partition, offset + 1);
    }

    /// Commits the raw offsets of the records handled so far, once all their output is
    /// acknowledged. Never commits after a failed delivery.
    ///
    /// The offsets are taken before the flush and committed as an explicit list: librdkafka's
    /// stored offsets are read later on its own thread, by when the loop has moved past
    /// records whose output is only queued, and a commit covering those loses them on a crash.
    pub fn checkpoint(&self, consumer: &BaseConsumer<WorkerContext>, mode: CommitMode) -> bool {
        let offsets = self.offsets();
        if self.delivery == Delivery::Transactional {
            return self.commit_transaction(consumer, offsets);
        }
        if let Err(left) = flush(&self.producer.load(), OUTPUT_STALL_LIMIT) {
            self.fatal.set(format!(
                "{left} output records not acknowledged within {OUTPUT_STALL_LIMIT:?}"
            ));
        }
        if self.fatal.is_set() {
            return false;
        }
        if offsets.count() == 0 {
            return true;
        }
        match consumer.commit(&offsets, mode) {
            Ok(()) => true,
            Err(e) => {
                // Not fatal: the commit is only a lower bound for the resume rule.
                debug!("offset commit failed: {e}");
                false
            }
        }
    }

    /// The positions of the records handled so far, as offsets to commit.
    pub fn offsets(&self) -> TopicPartitionList {
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in self
            .positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ =
                offsets.add_partition_offset(&self.raw_topic, *partition, Offset::Offset(*next));
        }
        offsets
    }

    /// The assignment is gone without a clean handover (the group expelled this worker: a
    /// stalled process, a missed session): another worker may already be writing these
    /// partitions from what it found in the outputs. Whatever this worker still holds must not
    /// reach Kafka, and nothing is committed. Dropping the producer purges its queue; records
    /// already on the wire cannot be called back (see docs/architecture.md, "zombie").
    fn discard(&self) {
        let queued = self.producer.load().in_flight_count();
        if self.delivery == Delivery::Transactional {
            // Aborted, nothing of it is ever visible to read_committed readers (and had the
            // group moved on, the commit would have been refused anyway).
            self.abort_transaction();
            warn!(
                queued,
                "raw partitions lost without a handover: transaction aborted"
            );
            return;
        }
        match create_producer(
            &self.kafka,
            self.fatal.clone(),
            self.delivery,
            &self.group_id,
        ) {
            Ok(fresh) => {
                drop(self.producer.swap(Arc::new(fresh)));
            }
            Err(e) => self.fatal.set(e),
        }
        warn!(
            queued,
            "raw partitions lost without a handover (this worker was expelled from the group): \
             dropping its unsent output and committing nothing"
        );
    }

    fn revoke(&self, consumer: &BaseConsumer<WorkerContext>, lost: bool) {
        if lost {
            self.discard();
        } else {
            // Everything polled so far is enqueued: wait for it, commit, then let go.
            self.checkpoint(consumer, CommitMode::Sync);
        }
        // Nothing of these partitions is this worker's to commit any more.
        self.positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.push(AssignmentEvent::Revoked);
        let _ = consumer.unassign();
    }

    fn assign(&self, consumer: &BaseConsumer<WorkerContext>, tpl: &mut TopicPartitionList) {
        let partitions: Vec<i32> = tpl
            .elements_for_topic(&self.raw_topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let outputs = self
            .outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match self.plan(consumer, tpl, &partitions, &outputs) {
            Ok(plan) => {
                for r in &plan {
                    let _ = tpl.set_partition_offset(
                        &self.raw_topic,
                        r.partition,
                        Offset::Offset(r.start),
                    );
                    info!(
                        partition = r.partition,
                        start = r.start,
                        "resuming raw partition"
                    );
                }
                self.push(AssignmentEvent::Assigned(plan));
                match consumer.assign(tpl) {
                    Ok(()) => self.ready.store(true, Ordering::Release),
                    Err(e) => self.fatal.set(format!("assigning partitions failed: {e}")),
                }
            }
            Err(e) => {
                self.fatal.set(format!(
                    "cannot compute where to resume {partitions:?}: {e}"
                ));
                let _ = consumer.unassign();
            }
        }
    }

    fn plan(
        &self,
        consumer: &BaseConsumer<WorkerContext>,
        tpl: &TopicPartitionList,
        partitions: &[i32],
        outputs: &[String],
    ) -> Result<Vec<PartitionResume>, String> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let committed = consumer
            .committed_offsets(tpl.clone(), RESUME_TIMEOUT)
            .map_err(|e| format!("reading committed offsets: {e}"))?;
        let committed: Vec<(i32, Option<i64>)> = partitions
            .iter()
            .map(|p| {
                let offset =
                    committed
                        .find_partition(&self.raw_topic, *p)
                        .and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        });
                (*p, offset)
            })
            .collect();
        if self.delivery == Delivery::Transactional {
            // The committed offsets are exact: they were committed in the same transactions as
            // the output (and read with require_stable, so a pending one is waited for).
            let plan = resume::plan(&committed, &[], &HashMap::new());
            let mut baseline = self.committed.lock().unwrap_or_else(|e| e.into_inner());
            for r in &plan {
                baseline.insert(r.partition, r.start);
            }
            return Ok(plan);
        }
        let reader = self.kafka.reader().map_err(|e| e.to_string())?;
        let last = resume::last_written(&reader, outputs, partitions, RESUME_TIMEOUT)
            .map_err(|e| e.to_string())?;
        Ok(resume::plan(&committed, outputs, &last))
    }
}

impl ClientContext for WorkerContext {
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.raw_topic) {
            for (partition, p) in &topic.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    telemetry::consumer_lag(*partition, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for WorkerContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // A revocation that arrives after the loop went longer than max.poll.interval.ms
                // without polling (stuck on a full queue, stopped) comes after the group has
                // already let go: librdkafka may deliver it as an ordinary one.
                let gap = Duration::from_millis(self.poll_gap_ms.load(Ordering::Acquire));
                let lost = consumer.assignment_lost()
                    || self.lost_seen.swap(false, Ordering::AcqRel)
                    || gap >= self.max_poll_interval;
                // The new owner reports these partitions' lag from now on.
                for e in tpl.elements_for_topic(&self.raw_topic) {
                    telemetry::consumer_lag(e.partition(), 0);
                }
                self.revoke(consumer, lost);
                info!(lost, ?gap, "raw partitions revoked");
            }
            other => {
                error!("rebalance error: {:?}", other);
                self.revoke(consumer, true);
            }
        }
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
