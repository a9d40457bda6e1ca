//! librdkafka callbacks of a transform worker: delivery reports, consumer statistics, and the
//! rebalance hook where the resume rule runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::producer::Producer;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{error, info, warn};

use super::delivery::{Fatal, OutputProducer, create_producer};
use super::latest::LatestBook;
use super::options::{TransformOptions, max_poll_interval};
use super::resume::{self, PartitionResume};
use crate::config::{Delivery, Rules};
use crate::kafka::KafkaSettings;
use crate::telemetry;

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
    /// The newest record per symbol of each channel, written to the latest-price topics at
    /// every checkpoint.
    pub latest: Arc<LatestBook>,
    pub ready: Arc<crate::ready::ReadyFlag>,
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

impl WorkerContext {
    pub fn new(
        opts: &TransformOptions,
        rules: &Rules,
        producer: Arc<OutputProducer>,
        fatal: Arc<Fatal>,
        latest: Arc<LatestBook>,
        ready: Arc<crate::ready::ReadyFlag>,
    ) -> WorkerContext {
        let delivery = rules.kafka.delivery;
        WorkerContext {
            producer: ArcSwap::new(producer),
            kafka: opts.kafka.clone(),
            raw_topic: rules.kafka.raw_topic.clone(),
            outputs: Default::default(),
            positions: Default::default(),
            events: Default::default(),
            has_events: AtomicBool::new(false),
            fatal,
            latest,
            ready,
            delivery,
            group_id: opts.group_id.clone(),
            txn_open: AtomicBool::new(false),
            committed: Default::default(),
            renewed: Default::default(),
            lost_seen: AtomicBool::new(false),
            poll_gap_ms: Default::default(),
            last_poll: Mutex::new(Instant::now()),
            max_poll_interval: max_poll_interval(&opts.kafka),
        }
    }

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
            self.latest.clone(),
            self.delivery,
            &self.group_id,
        ) {
            Ok(fresh) => {
                drop(self.producer.swap(Arc::new(fresh)));
            }
            Err(e) => self.fatal.set(e.to_string()),
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
                    Ok(()) => self.ready.set(true),
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
