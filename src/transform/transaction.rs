//! Transactional delivery: each commit interval's output and the raw offsets it covers are
//! committed together in one Kafka transaction, with the group's metadata (KIP-447), so that
//! a worker the group has expelled cannot commit anything any more.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use tracing::{info, warn};

use super::context::{AssignmentEvent, WorkerContext};
use super::delivery::{OutputProducer, TRANSACTION_TIMEOUT, create_producer, flush};
use super::output::{Send, write_latest};
use crate::telemetry;

/// A producer is replaced at most this often.
const RENEW_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// How often a commit that failed with a retriable error is tried again before aborting.
const COMMIT_ATTEMPTS: usize = 3;

impl WorkerContext {
    /// Opens a transaction unless one is open. `false` when the producer refused: the record
    /// at hand is not handled (the worker was rewound, or stops).
    #[inline]
    pub fn begin(&self, consumer: &BaseConsumer<WorkerContext>) -> bool {
        if self.txn_open.load(Ordering::Acquire) {
            return true;
        }
        match self.producer.load().begin_transaction() {
            Ok(()) => {
                self.txn_open.store(true, Ordering::Release);
                true
            }
            Err(e) if fatal(&e) => {
                self.renew_producer(consumer, &e);
                false
            }
            Err(e) => {
                self.fatal.set(format!("cannot begin a transaction: {e}"));
                false
            }
        }
    }

    /// The producer was fenced (the coordinator aborted a transaction that outlived
    /// `transaction.timeout.ms`: the process was stopped, or the broker was down that long) and
    /// can do nothing more: its transaction is gone, so the worker goes back to the committed
    /// offsets with a new producer (at most one a second; a producer that cannot even be
    /// created stops the worker).
    fn renew_producer(&self, consumer: &BaseConsumer<WorkerContext>, e: &KafkaError) {
        let mut last = self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = *last {
            std::thread::sleep(RENEW_AT_MOST_EVERY.saturating_sub(t.elapsed()));
        }
        *last = Some(Instant::now());
        drop(last);
        telemetry::produce_error();
        warn!("the transactional producer failed for good ({e}): replacing it");
        self.txn_open.store(false, Ordering::Release);
        self.latest.aborted();
        match create_producer(
            &self.kafka,
            self.fatal.clone(),
            self.latest.clone(),
            self.delivery,
            &self.group_id,
        ) {
            Ok(fresh) => drop(self.producer.swap(Arc::new(fresh))),
            Err(e) => {
                self.fatal.set(e.to_string());
                return;
            }
        }
        self.push(AssignmentEvent::ProducerReplaced);
        self.rewind(consumer);
    }

    /// Commits the open transaction with `offsets`. On an abortable failure the transaction is
    /// aborted and the consumer rewound to the last committed offsets, so that the records are
    /// priced again in the next transaction.
    pub fn commit_transaction(
        &self,
        consumer: &BaseConsumer<WorkerContext>,
        offsets: TopicPartitionList,
    ) -> bool {
        if !self.txn_open.load(Ordering::Acquire) {
            return !self.fatal.is_set();
        }
        let producer = self.producer.load();
        let Some(group) = consumer.group_metadata() else {
            self.fatal
                .set("no consumer group metadata for the transaction".into());
            return false;
        };
        if offsets.count() == 0 {
            // Output without offsets would commit without the group's fencing: never.
            self.abort_and_rewind(consumer);
            return false;
        }
        // The latest prices go into this transaction, naming the offsets its channel records
        // got: wait for those first (the commit would wait for them anyway).
        if let Err(e) = self.add_latest(consumer, &producer) {
            telemetry::produce_error();
            warn!("{e}: aborting the transaction and pricing again");
            self.abort_and_rewind(consumer);
            return false;
        }
        let mut last = None;
        for _ in 0..COMMIT_ATTEMPTS {
            let result = producer
                .send_offsets_to_transaction(&offsets, &group, TRANSACTION_TIMEOUT)
                .and_then(|()| producer.commit_transaction(TRANSACTION_TIMEOUT));
            match result {
                Ok(()) => {
                    self.txn_open.store(false, Ordering::Release);
                    let mut committed = self.committed.lock().unwrap_or_else(|e| e.into_inner());
                    for e in offsets.elements() {
                        if let Offset::Offset(o) = e.offset() {
                            committed.insert(e.partition(), o);
                        }
                    }
                    return true;
                }
                Err(e) if retriable(&e) => last = Some(e),
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        let e = last.expect("at least one attempt");
        if fatal(&e) {
            self.renew_producer(consumer, &e);
            return false;
        }
        telemetry::produce_error();
        warn!("committing the transaction failed ({e}): aborting it and pricing again");
        self.abort_and_rewind(consumer);
        false
    }

    /// Aborts the open transaction (its records never become visible).
    pub fn abort_transaction(&self) {
        if !self.txn_open.swap(false, Ordering::AcqRel) {
            return;
        }
        let aborted = self.producer.load().abort_transaction(TRANSACTION_TIMEOUT);
        self.latest.aborted();
        if let Err(e) = aborted {
            // A fenced producer (the coordinator already aborted this transaction, after an
            // outage longer than transaction.timeout.ms) has nothing left to abort: the next
            // `begin` fails for good and replaces it, and the worker rewinds. Stopping the
            // worker here took a whole process down after a broker outage.
            warn!("aborting a transaction failed: {e}");
        }
    }

    /// Sends the latest prices the open transaction changed, once its channel records are
    /// acknowledged (their offsets known). Costs one produce round trip per transaction.
    fn add_latest(
        &self,
        consumer: &BaseConsumer<WorkerContext>,
        producer: &OutputProducer,
    ) -> Result<(), String> {
        // Every report of the transaction's records, not only those in so far: one coming
        // after the commit would land in the next transaction, which may abort.
        flush(producer, TRANSACTION_TIMEOUT)
            .map_err(|left| format!("{left} output records not acknowledged in time"))?;
        match write_latest(producer, consumer) {
            Ok(_) => Ok(()),
            Err(Send::Failed(e)) => Err(format!("writing the latest prices: {e}")),
            Err(Send::GaveUp) => Err("the worker gave up its partitions".into()),
        }
    }

    /// Aborts, then moves the consumer back to the last committed offsets.
    fn abort_and_rewind(&self, consumer: &BaseConsumer<WorkerContext>) {
        self.abort_transaction();
        self.rewind(consumer);
    }

    /// Moves the consumer back to the last committed offsets.
    fn rewind(&self, consumer: &BaseConsumer<WorkerContext>) {
        let committed = self
            .committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut positions = self.positions.lock().unwrap_or_else(|e| e.into_inner());
        // Every held partition, not only those with records since the commit: the record the
        // loop was about to handle must come again.
        for (partition, offset) in committed {
            positions.remove(&partition);
            match consumer.seek(
                &self.raw_topic,
                partition,
                Offset::Offset(offset),
                TRANSACTION_TIMEOUT,
            ) {
                Ok(()) => info!(partition, offset, "rewound to the last committed offset"),
                Err(e) => warn!(partition, "cannot rewind to the last committed offset: {e}"),
            }
        }
    }
}

fn retriable(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(t) if t.is_retriable())
}

fn fatal(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(t) if t.is_fatal())
}
