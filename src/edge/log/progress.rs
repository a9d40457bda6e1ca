//! Whether the reader keeps up with one partition: its position (published by the reader), the
//! partition's end (checked against Kafka by the probe) and, from the two, lag, how long the
//! position has not moved while Kafka had newer records, and whether that is a stall.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// One partition's reading progress. The reader writes `position`; the probe calls
/// [`Progress::observe`]; the reader takes re-seek requests with [`Progress::take_reseek`].
pub struct Progress {
    /// The reader's position (the next offset it will read); −1 until it publishes one.
    position: AtomicI64,
    reseek: AtomicBool,
    state: Mutex<Watch>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            position: AtomicI64::new(-1),
            reseek: AtomicBool::new(false),
            state: Mutex::default(),
        }
    }
}

#[derive(Default)]
struct Watch {
    end: i64,
    seen_position: i64,
    /// When the position last moved or was at the end (ms on the probe's clock).
    progressed_ms: u64,
    /// When the stall was found (`None`: not stalled).
    stalled_ms: Option<u64>,
    /// When the reader was last asked to re-seek.
    reseek_ms: u64,
    idle_ms: u64,
}

/// What one check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Records Kafka has that the reader has not read (end − position, never negative).
    pub lag: i64,
    /// How long the position has not moved while behind (0 when at the end).
    pub idle_ms: u64,
    pub event: Event,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    None,
    /// Not advanced for `stall_after_ms` while behind: found now (a re-seek is requested).
    Stalled,
    /// Still stalled; another re-seek was requested.
    Reseek,
    /// Moving again after a stall of `idle_ms`.
    Recovered {
        stalled_for_ms: u64,
    },
}

/// A snapshot for `/stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub position: i64,
    pub end: i64,
    pub lag: i64,
    pub idle_ms: u64,
    pub stalled: bool,
}

impl Progress {
    /// The reader's position now (the next offset it will read).
    pub fn set_position(&self, position: i64) {
        self.position.store(position, Ordering::Release);
    }

    /// True once: the probe asked the reader to re-seek this partition.
    pub fn take_reseek(&self) -> bool {
        self.reseek.swap(false, Ordering::AcqRel)
    }

    /// Checks the reader's position against the partition's `end` (Kafka's, for a read_committed
    /// reader the last stable offset) at `now_ms`. `fallback` is the position to assume before
    /// the reader published one. Behind and not moving for `stall_after_ms` is a stall; a re-seek
    /// is requested then and every `stall_after_ms` while it lasts.
    pub fn observe(
        &self,
        end: i64,
        fallback: i64,
        now_ms: u64,
        stall_after_ms: u64,
    ) -> Observation {
        let position = match self.position.load(Ordering::Acquire) {
            -1 => fallback,
            p => p,
        };
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        w.end = end;
        let lag = (end - position).max(0);
        let mut event = Event::None;
        if lag == 0 || position != w.seen_position {
            if let Some(since) = w.stalled_ms.take() {
                event = Event::Recovered {
                    stalled_for_ms: now_ms.saturating_sub(since) + stall_after_ms,
                };
            }
            w.seen_position = position;
            w.progressed_ms = now_ms;
        }
        let idle_ms = if lag == 0 {
            0
        } else {
            now_ms.saturating_sub(w.progressed_ms)
        };
        w.idle_ms = idle_ms;
        if lag > 0 && idle_ms >= stall_after_ms {
            let reseek_due = now_ms.saturating_sub(w.reseek_ms) >= stall_after_ms;
            if w.stalled_ms.is_none() {
                w.stalled_ms = Some(now_ms);
                event = Event::Stalled;
            } else if reseek_due {
                event = Event::Reseek;
            }
            if event != Event::None {
                w.reseek_ms = now_ms;
                self.reseek.store(true, Ordering::Release);
            }
        }
        Observation {
            lag,
            idle_ms,
            event,
        }
    }

    /// The last check's view.
    pub fn reading(&self) -> Reading {
        let w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let position = match self.position.load(Ordering::Acquire) {
            -1 => w.seen_position,
            p => p,
        };
        Reading {
            position,
            end: w.end,
            lag: (w.end - position).max(0),
            idle_ms: w.idle_ms,
            stalled: w.stalled_ms.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_that_stops_behind_the_end_is_a_stall_until_it_moves() {
        let p = Progress::default();
        p.set_position(10);
        // Caught up: nothing to say, however long.
        assert_eq!(p.observe(10, 0, 0, 1000).event, Event::None);
        assert_eq!(p.observe(10, 0, 5000, 1000).idle_ms, 0);
        // Kafka has more; the reader moves: no stall.
        assert_eq!(p.observe(20, 0, 5100, 1000).lag, 10);
        p.set_position(15);
        assert_eq!(p.observe(25, 0, 5900, 1000).event, Event::None);
        // Frozen at 15 while the end moves on.
        let o = p.observe(30, 0, 6500, 1000);
        assert_eq!((o.lag, o.idle_ms, o.event), (15, 600, Event::None));
        let o = p.observe(35, 0, 6900, 1000);
        assert_eq!((o.idle_ms, o.event), (1000, Event::Stalled));
        assert!(p.take_reseek() && !p.take_reseek());
        assert!(p.reading().stalled);
        // Still frozen: another re-seek once per stall_after_ms, not at every check.
        assert_eq!(p.observe(36, 0, 7200, 1000).event, Event::None);
        assert_eq!(p.observe(37, 0, 7900, 1000).event, Event::Reseek);
        assert!(p.take_reseek());
        // Moving again.
        p.set_position(30);
        let o = p.observe(38, 0, 8000, 1000);
        assert!(matches!(
            o.event,
            Event::Recovered {
                stalled_for_ms: 2100
            }
        ));
        assert!(!p.reading().stalled);
        assert_eq!(p.observe(38, 0, 8100, 1000).event, Event::None);
    }

    #[test]
    fn the_fallback_stands_in_until_the_reader_publishes_a_position() {
        let p = Progress::default();
        assert_eq!(p.observe(50, 40, 0, 1000).lag, 10);
        assert_eq!(p.observe(50, 50, 2000, 1000).event, Event::None);
    }
}
