//! A worker's checkpoint: every commit interval (and at the end) the raw offsets of the records
//! handled so far are committed, once their output and the latest prices it changed are
//! acknowledged (in transactional mode: in the transaction, see `transaction`).

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::debug;

use super::context::{OUTPUT_STALL_LIMIT, WorkerContext};
use super::delivery::flush;
use super::output::{Send, write_latest};
use crate::config::Delivery;

impl WorkerContext {
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
        let producer = self.producer.load();
        if let Err(left) = flush(&producer, OUTPUT_STALL_LIMIT) {
            self.fatal.set(format!(
                "{left} output records not acknowledged within {OUTPUT_STALL_LIMIT:?}"
            ));
        }
        if self.fatal.is_set() {
            return false;
        }
        // The latest prices name offsets acknowledged above; they are written before the raw
        // offsets are committed, so a crash in between prices the records again and the resume
        // rule skips what is written (the latest prices of such records are then only in the
        // channel topic, until their symbols tick again: docs/architecture.md).
        match write_latest(&producer, consumer) {
            Ok(0) => {}
            Ok(_) => {
                if let Err(left) = flush(&producer, OUTPUT_STALL_LIMIT) {
                    self.fatal.set(format!(
                        "{left} latest-price records not acknowledged within {OUTPUT_STALL_LIMIT:?}"
                    ));
                    return false;
                }
            }
            Err(Send::Failed(e)) => {
                self.fatal.set(e.to_string());
                return false;
            }
            Err(Send::GaveUp) => return false,
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
}
