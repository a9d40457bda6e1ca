//! librdkafka callbacks of a transform worker: delivery reports, consumer statistics, and the
//! rebalance hook where the resume rule runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{debug, error, info};

use super::resume::{self, PartitionResume};
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

/// Producer callbacks: a delivery that failed for good stops the worker (so nothing is
/// committed past it and the resume rule rewrites it after a restart).
pub struct DeliveryContext {
    pub fatal: Arc<Fatal>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            telemetry::produce_error();
            self.fatal.set(format!(
                "delivery to {}/{} failed: {e}; stopping so the record is rewritten on restart",
                m.topic(),
                m.partition()
            ));
        }
    }
}

pub type OutputProducer = ThreadedProducer<DeliveryContext>;

/// Partition changes for the poll loop, produced inside the rebalance callback.
#[derive(Debug)]
pub enum AssignmentEvent {
    Assigned(Vec<PartitionResume>),
    Revoked,
}

/// Consumer callbacks of a worker.
pub struct WorkerContext {
    pub producer: Arc<OutputProducer>,
    pub kafka: KafkaSettings,
    pub raw_topic: String,
    /// Output topics the resume rule checks, computed by the loop from the live rules.
    pub outputs: Mutex<Vec<String>>,
    pub events: Mutex<Vec<AssignmentEvent>>,
    pub has_events: AtomicBool,
    pub fatal: Arc<Fatal>,
    pub ready: Arc<AtomicBool>,
}

const RESUME_TIMEOUT: Duration = Duration::from_secs(30);
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

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
    fn push(&self, event: AssignmentEvent) {
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

    /// Waits for every enqueued output record, then commits the stored raw offsets. Never
    /// commits after a failed delivery.
    pub fn checkpoint(&self, consumer: &BaseConsumer<WorkerContext>, mode: CommitMode) -> bool {
        if let Err(left) = flush(&self.producer, FLUSH_TIMEOUT) {
            self.fatal.set(format!(
                "{left} output records not acknowledged within {FLUSH_TIMEOUT:?}"
            ));
        }
        if self.fatal.is_set() {
            return false;
        }
        match consumer.commit_consumer_state(mode) {
            Ok(()) => true,
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => true,
            Err(e) => {
                // Not fatal: the commit is only a lower bound for the resume rule.
                debug!("offset commit failed: {e}");
                false
            }
        }
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
                // Everything polled so far is enqueued: wait for it, commit, then let go.
                self.checkpoint(consumer, CommitMode::Sync);
                // The new owner reports these partitions' lag from now on.
                for e in tpl.elements_for_topic(&self.raw_topic) {
                    telemetry::consumer_lag(e.partition(), 0);
                }
                self.push(AssignmentEvent::Revoked);
                let _ = consumer.unassign();
                info!("raw partitions revoked");
            }
            other => {
                error!("rebalance error: {:?}", other);
                self.checkpoint(consumer, CommitMode::Sync);
                self.push(AssignmentEvent::Revoked);
                let _ = consumer.unassign();
            }
        }
    }
}
