//! One topic a session is subscribed to: a [`Cursor`] per partition, the Kafka replays the
//! cursors asked for, and the frames that say where a subscription starts (the snapshot) and
//! when a resume is done (`resumed`). The cursors decide; this module carries out what they ask.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};

use super::cursor::{Cursor, Limits, Step};
use super::outbox::Outbox;
use super::throttle::Throttle;
use crate::config::SlowClientPolicy;
use crate::edge::kafka::replay::{ReplayItem, ReplayPool};
use crate::edge::log::partition::Budget;
use crate::edge::log::symbols::SymbolSet;
use crate::edge::log::topic::{Hub, TopicLog};
use crate::edge::wire::server;

/// Why a pull could not go on.
#[derive(Debug, PartialEq, Eq)]
pub enum Trouble {
    /// The client fell behind on a channel whose policy is `close`.
    SlowConsumer,
    /// A resume asked for records this edge cannot give without a gap.
    Gap(String),
}

/// What pulls need from outside the subscription: where replays come from and whom they wake.
pub struct PullContext<'a> {
    pub hub: &'a Arc<Hub>,
    pub replay: &'a Arc<ReplayPool>,
    pub waker: &'a Arc<Notify>,
    pub limits: Limits,
}

struct Part {
    cursor: Cursor,
    /// The Kafka replay this partition's cursor takes records from.
    replay: Option<mpsc::Receiver<ReplayItem>>,
}

/// A resume in progress: prices delivered so far, and whether it was counted by source.
struct Resuming {
    replayed: u64,
    counted: bool,
}

/// The symbols a subscription is limited to: as a filter, and as the client sees them in
/// `subscribed`.
struct Only {
    filter: SymbolSet,
    symbols: Vec<String>,
}

fn only(filter: Option<SymbolSet>, symbols: Option<Vec<String>>) -> Option<Box<Only>> {
    match (filter, symbols) {
        (Some(filter), symbols) => Some(Box::new(Only {
            filter,
            symbols: symbols.unwrap_or_default(),
        })),
        (None, _) => None,
    }
}

pub struct Subscription {
    topic: Arc<TopicLog>,
    /// `None`: every symbol. Boxed: most subscriptions take every symbol, and an idle
    /// connection should cost little.
    only: Option<Box<Only>>,
    policy: SlowClientPolicy,
    parts: Vec<Part>,
    resuming: Option<Resuming>,
    /// Prices delivered and not yet added to the topic's shared counter ([`Self::flush_count`]).
    delivered: u64,
    /// At most one price per symbol per interval (`None`: every price).
    throttle: Option<Box<Throttle>>,
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
    let frame = server::snapshot(
        &topic.channel,
        &topic.epoch,
        &up_to,
        prices.iter().map(|(p, e)| (*p, e)),
    );
    (frame, nexts)
}

/// Starts a Kafka replay of `topic`/`p` from `from`, waking the session as items arrive.
fn start_replay(
    ctx: &PullContext<'_>,
    topic: &Arc<TopicLog>,
    p: usize,
    from: i64,
) -> mpsc::Receiver<ReplayItem> {
    ctx.replay
        .start(ctx.hub.clone(), topic.clone(), p, from, ctx.waker.clone())
}

impl Subscription {
    fn new(
        topic: Arc<TopicLog>,
        filter: Option<SymbolSet>,
        symbols: Option<Vec<String>>,
        policy: SlowClientPolicy,
        cursors: impl Iterator<Item = Cursor>,
        resuming: bool,
    ) -> Subscription {
        Subscription {
            topic,
            only: only(filter, symbols),
            policy,
            parts: cursors
                .map(|cursor| Part {
                    cursor,
                    replay: None,
                })
                .collect(),
            resuming: resuming.then_some(Resuming {
                replayed: 0,
                counted: false,
            }),
            delivered: 0,
            throttle: None,
        }
    }

    /// The same subscription with at most one price per symbol every `interval`.
    pub fn throttled(mut self, interval: Option<Duration>) -> Subscription {
        self.throttle = interval.map(|i| Box::new(Throttle::new(i)));
        self
    }

    /// Throttles to at most one price per symbol every `ceiling` (a token's `max_rate`), unless
    /// it already is at least that slow.
    pub fn limit(&mut self, ceiling: Duration) {
        match self.throttle.as_mut() {
            Some(t) if t.interval() >= ceiling => {}
            Some(t) => t.set_interval(ceiling),
            None => self.throttle = Some(Box::new(Throttle::new(ceiling))),
        }
    }

    /// Whether records wake this subscription (a throttled one ticks on its own timer).
    pub fn per_record(&self) -> bool {
        self.throttle.is_none()
    }

    /// The shortest interval between two prices of a symbol, when throttled.
    pub fn interval(&self) -> Option<Duration> {
        self.throttle.as_ref().map(|t| t.interval())
    }

    /// A fresh subscription: the snapshot frame to send, then live from the snapshot's point.
    pub fn subscribe(
        topic: Arc<TopicLog>,
        filter: Option<SymbolSet>,
        symbols: Option<Vec<String>>,
        policy: SlowClientPolicy,
    ) -> (Subscription, String) {
        let (frame, nexts) = snapshot(&topic, filter.as_ref(), None);
        let cursors = nexts.into_iter().map(|(p, next)| Cursor::live(p, next));
        let sub = Subscription::new(topic, filter, symbols, policy, cursors, false);
        (sub, frame)
    }

    /// A subscription that resumes each partition of `from` after the seqNo given (waiting
    /// until `until` for offsets this edge has not read yet) and takes a snapshot of the
    /// partitions not given. Returns the snapshot frame when there is one.
    pub fn resume(
        topic: Arc<TopicLog>,
        filter: Option<SymbolSet>,
        symbols: Option<Vec<String>>,
        policy: SlowClientPolicy,
        from: &BTreeMap<i32, i64>,
        until: Instant,
    ) -> (Subscription, Option<String>) {
        let missing: Vec<usize> = (0..topic.partitions.len())
            .filter(|p| !from.contains_key(&(*p as i32)))
            .collect();
        let (snap, nexts) = if missing.is_empty() {
            (None, Vec::new())
        } else {
            let (frame, nexts) = snapshot(&topic, filter.as_ref(), Some(&missing));
            (Some(frame), nexts)
        };
        let cursors: Vec<Cursor> = (0..topic.partitions.len())
            .map(|p| match from.get(&(p as i32)) {
                Some(seq) => Cursor::resume(p, *seq, until),
                None => {
                    let next = nexts.iter().find(|(sp, _)| *sp == p).map(|(_, n)| *n);
                    Cursor::live(p, next.unwrap_or_else(|| topic.partitions[p].next()))
                }
            })
            .collect();
        let sub = Subscription::new(topic, filter, symbols, policy, cursors.into_iter(), true);
        (sub, snap)
    }

    /// The same subscription started over from a fresh snapshot (after a gap).
    pub fn restart(&self) -> (Subscription, String) {
        self.restart_on(self.topic.clone())
    }

    /// The same subscription started over from a fresh snapshot of `topic` (the log that now
    /// serves the channel).
    pub fn restart_on(&self, topic: Arc<TopicLog>) -> (Subscription, String) {
        let (sub, snap) = Subscription::subscribe(
            topic,
            self.filter().cloned(),
            self.symbols().map(<[String]>::to_vec),
            self.policy,
        );
        (sub.throttled(self.interval()), snap)
    }

    /// Adds the prices delivered since the last call to the topic's counter.
    pub fn flush_count(&mut self) {
        if self.delivered > 0 {
            self.topic
                .delivered
                .increment(std::mem::take(&mut self.delivered));
        }
    }

    pub fn topic(&self) -> &Arc<TopicLog> {
        &self.topic
    }

    pub fn channel(&self) -> &str {
        &self.topic.channel
    }

    pub fn symbols(&self) -> Option<&[String]> {
        self.only.as_ref().map(|o| o.symbols.as_slice())
    }

    fn filter(&self) -> Option<&SymbolSet> {
        self.only.as_ref().map(|o| &o.filter)
    }

    pub fn policy(&self) -> SlowClientPolicy {
        self.policy
    }

    /// When a waiting resume or a throttle's tick must be looked at even if no record arrives.
    pub fn deadline(&self) -> Option<Instant> {
        let waiting = self
            .parts
            .iter()
            .filter_map(|p| match p.cursor.mode() {
                super::cursor::Mode::Waiting { until } => Some(until),
                _ => None,
            })
            .min();
        let tick = self.throttle.as_ref().map(|t| t.next_tick());
        waiting.into_iter().chain(tick).min()
    }

    /// True when a live cursor is further behind than `max_lag` (never for a throttled
    /// subscription: it takes the latest prices at each tick, however far the log has moved).
    pub fn lagging(&self, max_lag: usize) -> bool {
        self.throttle.is_none()
            && self
                .parts
                .iter()
                .enumerate()
                .any(|(p, part)| part.cursor.lagging(&self.topic.partitions[p], max_lag))
    }

    /// A resume waits until this edge has read every offset it asks for (or its deadline):
    /// until then nothing is delivered. Returns whether it still waits.
    fn settle(&mut self, ctx: &PullContext<'_>) -> Result<bool, Trouble> {
        if !self.parts.iter().any(|p| p.cursor.is_waiting()) {
            return Ok(false);
        }
        let (mut waiting, mut gaps) = (false, Vec::new());
        for p in 0..self.parts.len() {
            let log = &self.topic.partitions[p];
            match self.parts[p].cursor.settle(log, ctx.limits.now) {
                None => {}
                Some(Step::Replay { from }) => {
                    self.parts[p].replay = Some(start_replay(ctx, &self.topic, p, from));
                }
                Some(Step::WaitUntil(_)) => waiting = true,
                Some(Step::Gap(why)) => gaps.push(why),
                Some(other) => unreachable!("settle does not return {other:?}"),
            }
        }
        if !gaps.is_empty() {
            crate::telemetry::edge_resume("gap");
            return Err(Trouble::Gap(gaps.join("; ")));
        }
        Ok(waiting)
    }

    /// Moves cursors forward, pushing frames into `out` within `budget`.
    pub fn pull(
        &mut self,
        ctx: &PullContext<'_>,
        budget: &mut Budget,
        out: &mut Outbox,
    ) -> Result<(), Trouble> {
        let before = out.prices;
        let result = self.pull_cursors(ctx, budget, out);
        self.delivered += (out.prices - before) as u64;
        result
    }

    fn pull_cursors(
        &mut self,
        ctx: &PullContext<'_>,
        budget: &mut Budget,
        out: &mut Outbox,
    ) -> Result<(), Trouble> {
        if let Some(th) = self.throttle.as_mut() {
            // Ticks on its own timer from the latest prices: no resume, no replay, no lag.
            let filter = self.only.as_ref().map(|o| &o.filter);
            let cursors = self.parts.iter_mut().map(|p| {
                p.replay = None;
                &mut p.cursor
            });
            th.tick(&self.topic, filter, cursors, ctx.limits.now, out);
            self.resuming = None;
            return Ok(());
        }
        if self.settle(ctx)? {
            return Ok(());
        }
        if let Some(r) = self.resuming.as_mut()
            && !r.counted
        {
            r.counted = true;
            let from_kafka = self.parts.iter().any(|p| p.replay.is_some());
            crate::telemetry::edge_resume(if from_kafka { "kafka" } else { "memory" });
        }
        let filter = self.only.as_ref().map(|o| &o.filter);
        for (p, part) in self.parts.iter_mut().enumerate() {
            let log = &self.topic.partitions[p];
            loop {
                let (before, resuming) = (out.prices, !part.cursor.is_live());
                let step = part
                    .cursor
                    .pull(log, filter, self.policy, &ctx.limits, budget, out);
                let next = match step {
                    Step::AwaitReplay => {
                        let item = match part.replay.as_mut().map(|rx| rx.try_recv()) {
                            Some(Ok(item)) => Some(item),
                            Some(Err(mpsc::error::TryRecvError::Empty)) => break,
                            Some(Err(mpsc::error::TryRecvError::Disconnected)) | None => None,
                        };
                        if matches!(item, Some(ReplayItem::Reached(_))) {
                            part.replay = None;
                        }
                        if let Err(why) = part.cursor.replayed(item, filter, budget, out) {
                            crate::telemetry::edge_resume("gap");
                            return Err(Trouble::Gap(why));
                        }
                        true
                    }
                    Step::Replay { from } => {
                        part.replay = Some(start_replay(ctx, &self.topic, p, from));
                        true
                    }
                    Step::Conflated => {
                        crate::telemetry::edge_conflated(&self.topic.channel);
                        false
                    }
                    Step::Close => return Err(Trouble::SlowConsumer),
                    Step::Gap(why) => return Err(Trouble::Gap(why)),
                    Step::Wait | Step::Full | Step::WaitUntil(_) => false,
                };
                if resuming && let Some(r) = self.resuming.as_mut() {
                    r.replayed += (out.prices - before) as u64;
                }
                if !next || budget.exhausted() {
                    break;
                }
            }
        }
        if let Some(r) = &self.resuming
            && self.parts.iter().all(|p| p.cursor.is_live())
        {
            out.control(&server::resumed(&self.topic.channel, r.replayed));
            self.resuming = None;
        }
        Ok(())
    }
}
