//! One topic a session is subscribed to: a cursor (the next Kafka offset to deliver) per
//! partition and the pull that turns cursors into frames: live from the hub, catching up after a
//! resume (from memory, or from Kafka when memory does not reach back far enough), and the slow
//! client policy when a live cursor falls too far behind.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{Notify, mpsc};

use super::hub::{Budget, Hub, ReadOutcome, SymbolSet, TopicLog, passes};
use super::outbox::Outbox;
use super::protocol;
use super::replay::{ReplayItem, ReplayPool};
use crate::config::SlowClientPolicy;

/// A frame ready to write, with the source timestamp of the price it carries (0: control).
enum Mode {
    Live,
    /// Replaying from memory until `target`; then live once within `max_lag` of the end, or
    /// after [`MAX_RETARGETS`] new targets (a client slower than the feed meets its policy).
    CatchingUp {
        target: i64,
        retargets: u8,
    },
    /// Replaying from Kafka until memory reaches back to the cursor.
    Kafka {
        rx: mpsc::Receiver<ReplayItem>,
        target: i64,
        retargets: u8,
    },
}

/// How often a catch-up may chase the moving end before the slow-client policy applies.
const MAX_RETARGETS: u8 = 3;

struct Cursor {
    next: i64,
    mode: Mode,
}

/// Why a pull could not go on.
#[derive(Debug, PartialEq, Eq)]
pub enum Trouble {
    /// The client fell behind on a channel whose policy is `close`.
    SlowConsumer,
    /// A resume asked for records Kafka no longer holds, or could not replay them.
    Gap(String),
}

/// Everything a pull may need besides the subscription.
pub struct PullContext<'a> {
    pub hub: &'a Arc<Hub>,
    pub replay: &'a Arc<ReplayPool>,
    pub waker: &'a Arc<Notify>,
    pub max_lag: usize,
    /// The socket pushed back since the last pull (a write did not complete at once): only then
    /// is a backlog the client's slowness rather than a burst of the feed.
    pub blocked: bool,
}

impl<'a> PullContext<'a> {
    pub fn new(edge: &'a super::Edge, waker: &'a Arc<Notify>, blocked: bool) -> Self {
        PullContext {
            hub: &edge.hub,
            replay: &edge.replay,
            waker,
            max_lag: edge.settings.max_lag_records,
            blocked,
        }
    }

    /// A cursor mode that takes `partition` from Kafka, starting at `from`, until memory reaches
    /// back to it; then catching up to `target` (with the retargets used so far).
    fn replay_from_kafka(
        &self,
        topic: &Arc<TopicLog>,
        partition: usize,
        from: i64,
        target: i64,
        retargets: u8,
    ) -> Mode {
        let rx = self.replay.start(
            self.hub.clone(),
            topic.clone(),
            partition,
            from,
            self.waker.clone(),
        );
        Mode::Kafka {
            rx,
            target,
            retargets,
        }
    }
}

pub struct Subscription {
    pub topic: Arc<TopicLog>,
    pub filter: Option<SymbolSet>,
    /// The symbols as the client sees them in `subscribed` (`None`: all).
    pub symbols: Option<Vec<String>>,
    pub policy: SlowClientPolicy,
    cursors: Vec<Cursor>,
    /// `Some(replayed)` while a resume is catching up.
    resuming: Option<u64>,
}

/// The latest price per symbol of `partitions` (all when `None`) and where each partition's
/// live stream continues.
pub fn snapshot(
    topic: &TopicLog,
    filter: Option<&SymbolSet>,
    partitions: Option<&[usize]>,
) -> (String, Vec<(usize, i64)>) {
    let mut prices = Vec::new();
    let mut nexts = Vec::new();
    for (p, log) in topic.partitions.iter().enumerate() {
        if partitions.is_some_and(|ps| !ps.contains(&p)) {
            continue;
        }
        let (entries, next) = log.latest(filter, i64::MIN);
        prices.extend(entries.into_iter().map(|e| (p, e)));
        nexts.push((p, next));
    }
    let up_to: Vec<(usize, i64)> = nexts.iter().map(|(p, n)| (*p, n - 1)).collect();
    let frame = protocol::snapshot(&topic.channel, &up_to, prices.iter().map(|(p, e)| (*p, e)));
    (frame, nexts)
}

/// What a resume found for one partition before it starts.
pub enum Start {
    /// Deliver from this offset.
    At(i64),
    /// The asked offset is past the end of the log.
    Beyond { asked: i64, end: i64 },
}

impl Subscription {
    /// A fresh subscription: the snapshot frame to send, then live from the snapshot's point.
    pub fn subscribe(
        topic: Arc<TopicLog>,
        filter: Option<SymbolSet>,
        symbols: Option<Vec<String>>,
        policy: SlowClientPolicy,
    ) -> (Subscription, String) {
        let (frame, nexts) = snapshot(&topic, filter.as_ref(), None);
        let cursors = nexts
            .into_iter()
            .map(|(_, next)| Cursor {
                next,
                mode: Mode::Live,
            })
            .collect();
        let sub = Subscription {
            topic,
            filter,
            symbols,
            policy,
            cursors,
            resuming: None,
        };
        (sub, frame)
    }

    /// A subscription that replays each partition of `from` after the seqNo given and takes a
    /// snapshot of the partitions not given. Returns the snapshot frame when there is one.
    pub fn resume(
        topic: Arc<TopicLog>,
        filter: Option<SymbolSet>,
        symbols: Option<Vec<String>>,
        policy: SlowClientPolicy,
        from: &BTreeMap<i32, i64>,
        ctx: &PullContext<'_>,
    ) -> (Subscription, Option<String>) {
        let missing: Vec<usize> = (0..topic.partitions.len())
            .filter(|p| !from.contains_key(&(*p as i32)))
            .collect();
        let (snap, snap_nexts) = if missing.is_empty() {
            (None, Vec::new())
        } else {
            let (frame, nexts) = snapshot(&topic, filter.as_ref(), Some(&missing));
            (Some(frame), nexts)
        };
        let mut cursors = Vec::with_capacity(topic.partitions.len());
        for (p, log) in topic.partitions.iter().enumerate() {
            let (memory_from, next) = log.bounds();
            let cursor = match from.get(&(p as i32)) {
                None => {
                    let next = snap_nexts
                        .iter()
                        .find(|(sp, _)| *sp == p)
                        .map_or(next, |(_, n)| *n);
                    Cursor {
                        next,
                        mode: Mode::Live,
                    }
                }
                Some(seq) => {
                    let start = seq + 1;
                    if start >= next {
                        Cursor {
                            next: start.min(next),
                            mode: Mode::Live,
                        }
                    } else if start >= memory_from {
                        Cursor {
                            next: start,
                            mode: Mode::CatchingUp {
                                target: next,
                                retargets: 0,
                            },
                        }
                    } else {
                        Cursor {
                            next: start,
                            mode: ctx.replay_from_kafka(&topic, p, start, next, 0),
                        }
                    }
                }
            };
            cursors.push(cursor);
        }
        let from_kafka = cursors.iter().any(|c| matches!(c.mode, Mode::Kafka { .. }));
        crate::telemetry::edge_resume(if from_kafka { "kafka" } else { "memory" });
        let sub = Subscription {
            topic,
            filter,
            symbols,
            policy,
            cursors,
            resuming: Some(0),
        };
        (sub, snap)
    }

    /// Moves cursors forward, pushing frames into `out` within `budget`.
    pub fn pull(
        &mut self,
        ctx: &PullContext<'_>,
        budget: &mut Budget,
        out: &mut Outbox,
    ) -> Result<(), Trouble> {
        let topic = self.topic.clone();
        let filter = self.filter.as_ref();
        for (p, cursor) in self.cursors.iter_mut().enumerate() {
            let log = &topic.partitions[p];
            // A partition can change mode several times in one pull (Kafka → memory → live).
            loop {
                if budget.exhausted() {
                    break;
                }
                let before = out.prices;
                let mut push = |e: &super::hub::Entry| out.price(e);
                match &mut cursor.mode {
                    Mode::Live => {
                        let max_lag = ctx.blocked.then_some(ctx.max_lag);
                        match log.read(cursor.next, filter, max_lag, budget, &mut push) {
                            ReadOutcome::Advanced(n) => cursor.next = n,
                            ReadOutcome::BeforeMemory if !ctx.blocked => {
                                // Memory turned over faster than this session pulled, but the
                                // client is not pushing back: a burst is not its fault, so
                                // nothing is skipped; the records come from Kafka.
                                cursor.mode =
                                    ctx.replay_from_kafka(&topic, p, cursor.next, log.next(), 0);
                                continue;
                            }
                            ReadOutcome::Lagged | ReadOutcome::BeforeMemory => {
                                if self.policy == SlowClientPolicy::Close {
                                    return Err(Trouble::SlowConsumer);
                                }
                                let (latest, next) = log.latest(filter, cursor.next);
                                for e in &latest {
                                    budget.take(e.frame.len());
                                    out.conflated(e);
                                }
                                cursor.next = next;
                                crate::telemetry::edge_conflated(&topic.channel);
                            }
                        }
                        break;
                    }
                    Mode::CatchingUp { target, retargets } => {
                        let (target, retargets) = (*target, *retargets);
                        let outcome = log.read(cursor.next, filter, None, budget, &mut push);
                        if let Some(r) = self.resuming.as_mut() {
                            *r += (out.prices - before) as u64;
                        }
                        match outcome {
                            ReadOutcome::Advanced(n) => {
                                cursor.next = n;
                                if n >= target {
                                    let end = log.next();
                                    cursor.mode = if (end - n) as u64 <= ctx.max_lag as u64
                                        || retargets >= MAX_RETARGETS
                                    {
                                        Mode::Live
                                    } else {
                                        Mode::CatchingUp {
                                            target: end,
                                            retargets: retargets + 1,
                                        }
                                    };
                                }
                                break;
                            }
                            ReadOutcome::BeforeMemory => {
                                // The client read slower than memory turned over: go to Kafka.
                                cursor.mode = ctx.replay_from_kafka(
                                    &topic,
                                    p,
                                    cursor.next,
                                    target,
                                    retargets,
                                );
                            }
                            ReadOutcome::Lagged => unreachable!("no lag limit while catching up"),
                        }
                    }
                    Mode::Kafka {
                        rx,
                        target,
                        retargets,
                    } => {
                        let (target, retargets) = (*target, *retargets);
                        match rx.try_recv() {
                            Ok(ReplayItem::Record(e)) => {
                                if e.offset >= cursor.next {
                                    if passes(filter, e.symbol) {
                                        budget.take(e.frame.len());
                                        if let Some(r) = self.resuming.as_mut() {
                                            *r += 1;
                                        }
                                        out.price(&e);
                                    }
                                    cursor.next = e.offset + 1;
                                }
                            }
                            Ok(ReplayItem::Reached(at)) => {
                                cursor.next = cursor.next.max(at);
                                cursor.mode = Mode::CatchingUp { target, retargets };
                            }
                            Ok(ReplayItem::Gap { wanted, low }) => {
                                crate::telemetry::edge_resume("gap");
                                return Err(Trouble::Gap(format!(
                                    "partition {p}: seqNo {} is no longer in Kafka (the log starts at {low})",
                                    wanted - 1
                                )));
                            }
                            Ok(ReplayItem::Failed(why)) => {
                                return Err(Trouble::Gap(format!(
                                    "partition {p}: replay from Kafka failed: {why}"
                                )));
                            }
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => {
                                return Err(Trouble::Gap(format!(
                                    "partition {p}: replay from Kafka stopped"
                                )));
                            }
                        }
                    }
                }
            }
        }
        if let Some(replayed) = self.resuming
            && self.cursors.iter().all(|c| matches!(c.mode, Mode::Live))
        {
            out.control(&protocol::resumed(&topic.channel, replayed));
            self.resuming = None;
        }
        Ok(())
    }

    /// True when a live cursor is further behind than `max_lag` (checked while the socket is
    /// still busy with the previous write).
    pub fn lagging(&self, max_lag: usize) -> bool {
        self.cursors.iter().enumerate().any(|(p, c)| {
            matches!(c.mode, Mode::Live)
                && (self.topic.partitions[p].next() - c.next) as u64 > max_lag as u64
        })
    }
}

/// Where a resume for `seq` (last processed) on `partition` may start, given the hub's end.
pub fn start_for(hub_next: i64, seq: i64) -> Start {
    let start = seq + 1;
    if start > hub_next {
        Start::Beyond {
            asked: seq,
            end: hub_next - 1,
        }
    } else {
        Start::At(start)
    }
}
