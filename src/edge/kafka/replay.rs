//! Replays a partition from Kafka for a resume that reaches back past what the hub holds in
//! memory. Consumers are pooled and the number of concurrent replays is bounded, so a resume
//! storm cannot open a Kafka client per client.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::task::TaskTracker;

use crate::edge::log::entry::{Entry, encode_entry};
use crate::edge::log::topic::{Hub, TopicLog};
use crate::kafka::{ADMIN_TIMEOUT, KafkaSettings};

/// What a replay sends to its session.
#[derive(Debug)]
pub enum ReplayItem {
    Record(Entry),
    /// Memory holds everything from this offset on: continue from the hub.
    Reached(i64),
    /// Kafka no longer holds `wanted` (it starts at `low`).
    Gap {
        wanted: i64,
        low: i64,
    },
    Failed(String),
}

/// Concurrent Kafka replays per edge process.
const MAX_REPLAYS: usize = 4;
/// A replay that receives nothing for this long gives up.
const STALL: Duration = Duration::from_secs(15);

pub struct ReplayPool {
    settings: KafkaSettings,
    /// Records per second each running replay may send: `[edge] replay_records_per_second`
    /// shared by the [`MAX_REPLAYS`] replays that can run at once.
    per_replay: f64,
    /// The edge's tasks: replays are awaited on shutdown like sessions.
    tasks: TaskTracker,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<BaseConsumer>>,
}

impl ReplayPool {
    /// `records_per_second`: what all replays of this edge together may send (0: no limit).
    pub fn new(
        settings: KafkaSettings,
        tasks: TaskTracker,
        records_per_second: u64,
    ) -> Arc<ReplayPool> {
        Arc::new(ReplayPool {
            settings,
            per_replay: records_per_second as f64 / MAX_REPLAYS as f64,
            tasks,
            permits: Arc::new(Semaphore::new(MAX_REPLAYS)),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Starts replaying `topic`/`partition` from offset `from`; items arrive on the returned
    /// channel and `waker` is notified after each batch.
    pub fn start(
        self: &Arc<Self>,
        hub: Arc<Hub>,
        topic: Arc<TopicLog>,
        partition: usize,
        from: i64,
        waker: Arc<Notify>,
    ) -> mpsc::Receiver<ReplayItem> {
        let (tx, rx) = mpsc::channel(512);
        let pool = self.clone();
        self.tasks.spawn(async move {
            let Ok(permit) = pool.permits.clone().acquire_owned().await else {
                return;
            };
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            // A thread of its own, below the live path's priority (see `lower_priority`).
            let spawned = std::thread::Builder::new()
                .name("edge-replay".into())
                .spawn(move || {
                    lower_priority();
                    let consumer = pool.idle.lock().expect("replay pool").pop();
                    let consumer = match consumer {
                        Some(c) => c,
                        None => match pool.settings.live_reader() {
                            Ok(c) => c,
                            Err(e) => {
                                let _ = tx.blocking_send(ReplayItem::Failed(e.to_string()));
                                waker.notify_one();
                                return;
                            }
                        },
                    };
                    let pace = Pace::new(pool.per_replay);
                    let reusable =
                        replay(&consumer, &hub, &topic, partition, from, &tx, &waker, pace);
                    let _ = consumer.unassign();
                    if reusable {
                        pool.idle.lock().expect("replay pool").push(consumer);
                    }
                    drop(permit);
                    let _ = done_tx.send(());
                });
            match spawned {
                Ok(_) => {
                    let _ = done_rx.await;
                }
                Err(e) => tracing::warn!("cannot start a replay thread: {e}"),
            }
        });
        rx
    }
}

/// Replays run below the live path: a storm of resumes reaching back into Kafka (each record
/// read and encoded per client) must not delay live prices. On Linux the replay thread takes nice
/// 10, and so do the threads librdkafka starts for a replay consumer created on it; the live
/// reader and the sessions keep the process's priority. Elsewhere, nothing changes.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain libc calls about the calling thread; a failure leaves its priority as it was.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

/// Holds a replay to its share of `[edge] replay_records_per_second`, so that replays, however
/// many clients ask, leave the live path its CPU: a replay that is ahead of its rate sleeps.
struct Pace {
    per_second: f64,
    started: Instant,
    sent: u64,
}

impl Pace {
    fn new(per_second: f64) -> Pace {
        Pace {
            per_second,
            started: Instant::now(),
            sent: 0,
        }
    }

    /// One record sent; sleeps (every 64 records) while ahead of the rate.
    fn record(&mut self) {
        self.sent += 1;
        if self.per_second <= 0.0 || !self.sent.is_multiple_of(64) {
            return;
        }
        let due = Duration::from_secs_f64(self.sent as f64 / self.per_second);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
}

/// Returns whether the consumer is fit for reuse.
#[allow(clippy::too_many_arguments)]
fn replay(
    consumer: &BaseConsumer,
    hub: &Hub,
    topic: &TopicLog,
    partition: usize,
    from: i64,
    tx: &mpsc::Sender<ReplayItem>,
    waker: &Notify,
    mut pace: Pace,
) -> bool {
    let send = |item: ReplayItem| {
        let ok = tx.blocking_send(item).is_ok();
        waker.notify_one();
        ok
    };
    let log = &topic.partitions[partition];
    let (low, _high) =
        match consumer.fetch_watermarks(&topic.kafka_topic, partition as i32, ADMIN_TIMEOUT) {
            Ok(w) => w,
            Err(e) => {
                send(ReplayItem::Failed(format!("reading watermarks: {e}")));
                return false;
            }
        };
    if from < low {
        send(ReplayItem::Gap { wanted: from, low });
        return true;
    }
    let mut tpl = TopicPartitionList::new();
    if tpl
        .add_partition_offset(&topic.kafka_topic, partition as i32, Offset::Offset(from))
        .is_err()
        || consumer.assign(&tpl).is_err()
    {
        send(ReplayItem::Failed("assigning the partition".into()));
        return false;
    }
    let mut last_progress = Instant::now();
    let mut at = from;
    // The client has everything up to `from - 1`: the first record's `prev`.
    let mut prev = from - 1;
    loop {
        if tx.is_closed() {
            return true; // the session went away (or the edge is shutting down)
        }
        let (memory_from, _) = log.bounds();
        if at >= memory_from {
            send(ReplayItem::Reached(at));
            return true;
        }
        if last_progress.elapsed() > STALL {
            send(ReplayItem::Failed(format!(
                "no record from Kafka for {}s at offset {at}",
                STALL.as_secs()
            )));
            return false;
        }
        let m = match consumer.poll(Duration::from_millis(100)) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => {
                // The last offsets may hold no record (transaction markers, aborted records):
                // once the position passes what memory holds, nothing is left to replay.
                let (_, next) = log.bounds();
                if let Some(position) = position(consumer, &topic.kafka_topic, partition)
                    && position >= next
                    && position > at
                {
                    at = position;
                    last_progress = Instant::now();
                }
                continue;
            }
            Some(Err(e)) => {
                send(ReplayItem::Failed(e.to_string()));
                return false;
            }
            Some(Ok(m)) => m,
        };
        last_progress = Instant::now();
        let Some(symbol) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            at = m.offset() + 1;
            continue;
        };
        let id = hub.symbols.intern(symbol);
        let fallback = m.timestamp().to_millis().unwrap_or(0);
        // A record the edge cannot serve is skipped everywhere, and is no `prev` either.
        if let Ok(e) = encode_entry(
            &topic.channel,
            partition as i32,
            m.offset(),
            prev,
            id,
            m.payload().unwrap_or_default(),
            fallback,
        ) {
            if !send(ReplayItem::Record(e)) {
                return true; // the session went away
            }
            prev = m.offset();
            pace.record();
        }
        at = m.offset() + 1;
    }
}

/// The consumer's position in a partition (local: no request to Kafka).
fn position(consumer: &BaseConsumer, topic: &str, partition: usize) -> Option<i64> {
    let tpl = consumer.position().ok()?;
    match tpl.find_partition(topic, partition as i32)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}
