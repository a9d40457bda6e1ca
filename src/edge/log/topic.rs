//! The channel topics an edge serves: per topic its partitions and the sessions to wake when
//! records arrive; the [`Hub`] holds them all.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;
use tokio::sync::Notify;

use super::partition::PartitionLog;
use super::symbols::Symbols;

/// A channel topic: its partitions and the sessions to wake when records arrive.
pub struct TopicLog {
    pub channel: String,
    pub kafka_topic: String,
    /// The Kafka topic id ("" when unknown): seqNos are positions in this life of the topic.
    pub epoch: String,
    /// The topic was deleted and created again: a new log serves it, and the sessions on this
    /// one start over there.
    retired: AtomicBool,
    pub partitions: Vec<PartitionLog>,
    /// Per session, its wake-up and whether records wake it (a throttled session wakes on its own
    /// timer).
    subscribers: Mutex<FxHashMap<u64, (Arc<Notify>, bool)>>,
    pub delivered: metrics::Counter,
}

impl TopicLog {
    pub fn new(channel: &str, kafka_topic: &str, partitions: usize) -> TopicLog {
        TopicLog {
            channel: channel.to_string(),
            kafka_topic: kafka_topic.to_string(),
            epoch: String::new(),
            retired: AtomicBool::new(false),
            partitions: (0..partitions).map(|_| PartitionLog::default()).collect(),
            subscribers: Mutex::default(),
            delivered: crate::telemetry::edge_delivered(channel),
        }
    }

    /// The same log, for the life of the topic with id `epoch`.
    pub fn with_epoch(mut self, epoch: Option<String>) -> TopicLog {
        self.epoch = epoch.unwrap_or_default();
        self
    }

    /// Whether a new log serves this topic now (it was deleted and created again).
    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Registers a session; `per_record`: woken when records arrive.
    pub fn add_subscriber(&self, session: u64, waker: Arc<Notify>, per_record: bool) {
        self.subscribers
            .lock()
            .expect("subscribers lock")
            .insert(session, (waker, per_record));
    }

    pub fn remove_subscriber(&self, session: u64) {
        self.subscribers
            .lock()
            .expect("subscribers lock")
            .remove(&session);
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers.lock().expect("subscribers lock").len()
    }

    /// Wakes every subscriber woken per record (each keeps one pending wake, so wakes coalesce).
    pub fn wake(&self) {
        for (n, per_record) in self.subscribers.lock().expect("subscribers lock").values() {
            if *per_record {
                n.notify_one();
            }
        }
    }
}

/// Every channel topic this edge serves, by channel name.
pub type Topics = FxHashMap<String, Arc<TopicLog>>;

/// Every channel topic this edge serves. A channel added to channels.toml while the edge runs
/// joins once the reader has read its topic up to where it was when it was found
/// ([`Hub::add_topic`]); none leaves.
pub struct Hub {
    topics: ArcSwap<Topics>,
    pub symbols: Symbols,
    /// Records kept per partition, and how far before its end the reader starts each one.
    pub history: usize,
    caught_up: Arc<crate::ready::ReadyFlag>,
    /// A partition has been stalled for `[edge] stall_unready_after_ms`.
    stalled: AtomicBool,
    pub records_in: AtomicU64,
}

impl Hub {
    pub fn new(topics: Vec<TopicLog>, symbols: Symbols, history: usize) -> Hub {
        Hub {
            topics: ArcSwap::from_pointee(
                topics
                    .into_iter()
                    .map(|t| (t.channel.clone(), Arc::new(t)))
                    .collect(),
            ),
            symbols,
            history,
            caught_up: Default::default(),
            stalled: AtomicBool::new(false),
            records_in: AtomicU64::new(0),
        }
    }

    pub fn topic(&self, channel: &str) -> Option<Arc<TopicLog>> {
        self.topics.load().get(channel).cloned()
    }

    /// The channel topics served now.
    pub fn topics(&self) -> Arc<Topics> {
        self.topics.load_full()
    }

    /// Serves one more channel topic (it keeps its place if the channel is already served).
    pub fn add_topic(&self, log: Arc<TopicLog>) {
        self.topics.rcu(|current| {
            let mut next = Topics::clone(current);
            next.entry(log.channel.clone())
                .or_insert_with(|| log.clone());
            next
        });
    }

    /// Serves `log` in place of the channel's current log (its topic was deleted and created
    /// again), which retires: its sessions are woken to start over on `log`.
    pub fn replace_topic(&self, log: Arc<TopicLog>) {
        let old = self.topic(&log.channel);
        self.topics.rcu(|current| {
            let mut next = Topics::clone(current);
            next.insert(log.channel.clone(), log.clone());
            next
        });
        if let Some(old) = old {
            old.retired.store(true, Ordering::Release);
            old.wake();
        }
    }

    /// Set once every partition has been read to the end it had at start.
    pub fn caught_up_flag(&self) -> &Arc<crate::ready::ReadyFlag> {
        &self.caught_up
    }

    pub fn set_caught_up(&self) {
        self.caught_up.set(true);
    }

    /// Set by the probe: some partition has been stalled for `[edge] stall_unready_after_ms`.
    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::Release);
    }

    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Acquire)
    }

    /// True once every partition has been read to the end it had at start.
    pub fn caught_up(&self) -> bool {
        self.caught_up.get()
    }
}
