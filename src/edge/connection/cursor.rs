//! One partition's cursor: the next Kafka offset to deliver to one subscription, and the state
//! machine that moves it. It does no I/O: each step reads the in-memory log, puts frames into a
//! [`Sink`], and returns what the caller must do next ([`Step`]): wait for the log to grow, write
//! and come back, start a Kafka replay, wait until a deadline, or give up.
//!
//! ```text
//!   resume ──▶ Waiting ──(this edge reached the offset)──▶ CatchingUp ──(within max_lag)──▶ Live
//!                 │                                          │    ▲                        │
//!             (deadline)                    (memory turned over)  (replay reached memory)   │
//!                 ▼                                          ▼    │                        │
//!               Closed ◀──(gap, replay failed)──────────── Replaying ◀──(burst, not lag)───┘
//!                 ▲                                                                        │
//!                 └──────────────(lag on a `close` channel)──────── Live ◀──(conflate)─────┘
//! ```

use std::time::Instant;

use crate::config::SlowClientPolicy;
use crate::edge::kafka::replay::ReplayItem;
use crate::edge::log::entry::Entry;
use crate::edge::log::partition::{Budget, PartitionLog, ReadOutcome};
use crate::edge::log::symbols::{SymbolSet, passes};

/// How often a catch-up may chase the moving end before the slow-client policy applies.
pub const MAX_RETARGETS: u8 = 3;

/// Where frames go.
pub trait Sink {
    fn price(&mut self, e: &Entry);
    /// The latest price of a symbol standing in for those the client was too slow to take.
    fn conflated(&mut self, e: &Entry);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A resume asked for offsets this edge has not read yet (the client comes from an edge a
    /// little ahead): it waits for them until the deadline.
    Waiting { until: Instant },
    /// Delivering as records arrive.
    Live,
    /// Replaying from memory until `target`; then live once within `max_lag` of the end, or
    /// after [`MAX_RETARGETS`] new targets (a client slower than the feed meets its policy).
    CatchingUp { target: i64, retargets: u8 },
    /// Taking records from a Kafka replay until memory reaches back to the cursor.
    Replaying { target: i64, retargets: u8 },
    /// Gave up (a gap, or a slow client on a `close` channel).
    Closed,
}

/// What the caller does after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Everything available was delivered: pull again when the log grows.
    Wait,
    /// The budget ran out: pull again once this batch is written.
    Full,
    /// Start a Kafka replay of this partition from `from` and feed its items to
    /// [`Cursor::replayed`].
    Replay { from: i64 },
    /// A replay runs: feed its next item, when there is one.
    AwaitReplay,
    /// Pull again at `Instant` (or when the log grows, whichever comes first).
    WaitUntil(Instant),
    /// The client was too slow and was skipped ahead to the latest prices; now live.
    Conflated,
    /// The client fell behind on a channel whose policy is `close`.
    Close,
    /// The subscription cannot go on without a gap, for this reason.
    Gap(String),
}

/// What a step may depend on besides the log.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_lag: usize,
    /// The socket pushed back on the last write: only then is a backlog the client's slowness
    /// rather than a burst of the feed.
    pub blocked: bool,
    pub now: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    partition: usize,
    next: i64,
    mode: Mode,
}

impl Cursor {
    /// Live from `next`.
    pub fn live(partition: usize, next: i64) -> Cursor {
        Cursor {
            partition,
            next,
            mode: Mode::Live,
        }
    }

    /// A resume after `seq` (the last offset the client has): it settles on its first step,
    /// waiting until `until` if this edge has not read that far.
    pub fn resume(partition: usize, seq: i64, until: Instant) -> Cursor {
        Cursor {
            partition,
            next: seq.saturating_add(1),
            mode: Mode::Waiting { until },
        }
    }

    pub fn next(&self) -> i64 {
        self.next
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn is_live(&self) -> bool {
        self.mode == Mode::Live
    }

    /// Still waiting for this edge to reach the resume point.
    pub fn is_waiting(&self) -> bool {
        matches!(self.mode, Mode::Waiting { .. })
    }

    /// A live cursor further behind the end than `max_lag`.
    pub fn lagging(&self, log: &PartitionLog, max_lag: usize) -> bool {
        self.is_live() && (log.next() - self.next) as u64 > max_lag as u64
    }

    /// Moves the cursor as far as the log, the budget and its state allow.
    pub fn pull(
        &mut self,
        log: &PartitionLog,
        filter: Option<&SymbolSet>,
        policy: SlowClientPolicy,
        lim: &Limits,
        budget: &mut Budget,
        out: &mut impl Sink,
    ) -> Step {
        loop {
            if budget.exhausted() {
                return Step::Full;
            }
            match self.mode {
                Mode::Closed => return Step::Wait,
                Mode::Replaying { .. } => return Step::AwaitReplay,
                Mode::Waiting { .. } => {
                    if let Some(step) = self.settle(log, lim.now) {
                        return step;
                    }
                }
                Mode::Live => {
                    let max_lag = lim.blocked.then_some(lim.max_lag);
                    let mut push = |e: &Entry| out.price(e);
                    match log.read(self.next, filter, max_lag, budget, &mut push) {
                        ReadOutcome::Advanced(n) => {
                            self.next = n;
                            return if budget.exhausted() && n < log.next() {
                                Step::Full
                            } else {
                                Step::Wait
                            };
                        }
                        // Memory turned over faster than this session pulled, but the client
                        // is not pushing back: a burst is not its fault, so nothing is skipped;
                        // the records come from Kafka.
                        ReadOutcome::BeforeMemory if !lim.blocked => {
                            return self.replay(log.next(), 0);
                        }
                        ReadOutcome::Lagged | ReadOutcome::BeforeMemory => {
                            if policy == SlowClientPolicy::Close {
                                self.mode = Mode::Closed;
                                return Step::Close;
                            }
                            let (latest, end) = log.latest(filter, self.next);
                            for e in &latest {
                                budget.take(e.frame.len());
                                out.conflated(e);
                            }
                            self.next = end;
                            return Step::Conflated;
                        }
                    }
                }
                Mode::CatchingUp { target, retargets } => {
                    let mut push = |e: &Entry| out.price(e);
                    match log.read(self.next, filter, None, budget, &mut push) {
                        ReadOutcome::Advanced(n) => {
                            self.next = n;
                            if n < target {
                                return Step::Full;
                            }
                            let end = log.next();
                            self.mode = if (end - n) as u64 <= lim.max_lag as u64
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
                        // The client read slower than memory turned over: go to Kafka.
                        ReadOutcome::BeforeMemory => return self.replay(target, retargets),
                        ReadOutcome::Lagged => unreachable!("no lag limit while catching up"),
                    }
                }
            }
        }
    }

    /// A waiting cursor checks whether this edge has read up to it: then it is live (at the
    /// end), catching up (from memory) or replaying (from Kafka), and `None` means "pull on";
    /// otherwise it keeps waiting until its deadline, and past it gives up.
    pub fn settle(&mut self, log: &PartitionLog, now: Instant) -> Option<Step> {
        let Mode::Waiting { until } = self.mode else {
            return None;
        };
        let (memory_from, end) = log.bounds();
        if self.next > end {
            if now < until {
                return Some(Step::WaitUntil(until));
            }
            self.mode = Mode::Closed;
            return Some(Step::Gap(format!(
                "partition {}: seqNo {} is past the end of the log ({})",
                self.partition,
                self.next - 1,
                end - 1
            )));
        }
        if self.next == end {
            self.mode = Mode::Live;
        } else if self.next >= memory_from {
            self.mode = Mode::CatchingUp {
                target: end,
                retargets: 0,
            };
        } else {
            return Some(self.replay(end, 0));
        }
        None
    }

    fn replay(&mut self, target: i64, retargets: u8) -> Step {
        self.mode = Mode::Replaying { target, retargets };
        Step::Replay { from: self.next }
    }

    /// Takes one item of the replay started for [`Step::Replay`]. `None`: the replay stopped
    /// without saying why. Returns the reason when the subscription cannot go on.
    pub fn replayed(
        &mut self,
        item: Option<ReplayItem>,
        filter: Option<&SymbolSet>,
        budget: &mut Budget,
        out: &mut impl Sink,
    ) -> Result<(), String> {
        let Mode::Replaying { target, retargets } = self.mode else {
            return Ok(()); // a late item of a replay this cursor no longer waits for
        };
        let p = self.partition;
        let why = match item {
            Some(ReplayItem::Record(e)) => {
                if e.offset >= self.next {
                    if passes(filter, e.symbol) {
                        budget.take(e.frame.len());
                        out.price(&e);
                    }
                    self.next = e.offset + 1;
                }
                return Ok(());
            }
            Some(ReplayItem::Reached(at)) => {
                self.next = self.next.max(at);
                self.mode = Mode::CatchingUp { target, retargets };
                return Ok(());
            }
            Some(ReplayItem::Gap { wanted, low }) => format!(
                "partition {p}: seqNo {} is no longer in Kafka (the log starts at {low})",
                wanted - 1
            ),
            Some(ReplayItem::Failed(why)) => {
                format!("partition {p}: replay from Kafka failed: {why}")
            }
            None => format!("partition {p}: replay from Kafka stopped"),
        };
        self.mode = Mode::Closed;
        Err(why)
    }
}

#[cfg(test)]
#[path = "cursor_tests.rs"]
mod tests;
