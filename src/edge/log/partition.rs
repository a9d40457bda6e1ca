//! One partition of a channel topic in memory: the recent records (already encoded) and the
//! latest record per symbol (for snapshots and conflation). One writer (the Kafka reader), many
//! readers (sessions, each at its own cursor).

use std::collections::VecDeque;
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};

use rustc_hash::FxHashMap;

use super::entry::Entry;
use super::progress::Progress;
use super::symbols::{SymbolId, SymbolSet, passes};

/// What a session finds at its cursor.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Frames were taken (possibly none); the cursor is now here.
    Advanced(i64),
    /// The cursor is more than `max_lag` records behind the end.
    Lagged,
    /// The cursor is before what memory holds: the records must come from Kafka.
    BeforeMemory,
}

#[derive(Default)]
struct PartInner {
    ring: VecDeque<Entry>,
    /// Offset after the last record read from Kafka.
    next: i64,
    /// Memory holds every record in `[memory_from, next)`.
    memory_from: i64,
    /// The offset of the last record read, or before the first one read: of the last record
    /// before the start (or one less than the start when that is not known).
    previous: i64,
    latest: FxHashMap<SymbolId, Latest>,
}

/// A symbol's latest record, and the offset of its record before that (−1: none seen), which
/// tells a throttled session whether the latest one stands in for others.
struct Latest {
    entry: Entry,
    before: i64,
}

/// One partition of a channel topic.
#[derive(Default)]
pub struct PartitionLog {
    inner: RwLock<PartInner>,
    /// `inner.next`, readable without the lock: a session woken for another partition finds
    /// nothing new here without touching the lock (taking a read lock writes to shared memory).
    end: AtomicI64,
    /// Whether the reader keeps up with Kafka here.
    pub progress: Progress,
}

/// Per-session limits on one pull.
pub struct Budget {
    pub frames: usize,
    pub bytes: usize,
}

impl Budget {
    pub fn exhausted(&self) -> bool {
        self.frames == 0 || self.bytes == 0
    }

    pub fn take(&mut self, len: usize) {
        self.frames = self.frames.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(len);
    }
}

impl PartitionLog {
    /// Where the reader starts: nothing before `offset` is in memory; `previous` is the offset
    /// of the last record before it (see [`encode_entry`]'s `prev`).
    pub fn start_at(&self, offset: i64, previous: i64) {
        let mut g = self.inner.write().expect("partition lock");
        g.next = offset;
        g.memory_from = offset;
        g.previous = previous;
        self.end.store(offset, Ordering::Release);
    }

    /// The latest price of symbols from before the start (from the latest-price topic), where
    /// memory holds nothing newer.
    pub fn seed_latest(&self, entries: Vec<Entry>) {
        let mut g = self.inner.write().expect("partition lock");
        for e in entries {
            if g.latest
                .get(&e.symbol)
                .is_none_or(|held| held.entry.offset < e.offset)
            {
                g.latest.insert(
                    e.symbol,
                    Latest {
                        entry: e,
                        before: -1,
                    },
                );
            }
        }
    }

    /// The offset of the last record read (or the last one before the start).
    pub fn previous(&self) -> i64 {
        self.inner.read().expect("partition lock").previous
    }

    /// Appends records read from Kafka (in offset order) and trims memory to `history`.
    pub fn append(&self, entries: impl IntoIterator<Item = Entry>, history: usize) {
        let mut g = self.inner.write().expect("partition lock");
        for e in entries {
            if e.offset < g.next {
                continue; // already seen (a re-fetch after a reconnect)
            }
            g.next = e.offset + 1;
            g.previous = e.offset;
            let before = g.latest.get(&e.symbol).map_or(-1, |l| l.entry.offset);
            let entry = e.clone();
            g.latest.insert(e.symbol, Latest { entry, before });
            g.ring.push_back(e);
        }
        while g.ring.len() > history {
            if let Some(old) = g.ring.pop_front() {
                g.memory_from = old.offset + 1;
            }
        }
        self.end.store(g.next, Ordering::Release);
    }

    /// Offset after the last record seen.
    #[inline]
    pub fn next(&self) -> i64 {
        self.end.load(Ordering::Acquire)
    }

    /// `(memory_from, next)`: memory holds every record in between.
    pub fn bounds(&self) -> (i64, i64) {
        let g = self.inner.read().expect("partition lock");
        (g.memory_from, g.next)
    }

    /// Pushes the frames at or after `cursor` that pass `filter` into `out`, within `budget`.
    /// With `max_lag`, a cursor further behind than that is reported as [`ReadOutcome::Lagged`].
    pub fn read(
        &self,
        cursor: i64,
        filter: Option<&SymbolSet>,
        max_lag: Option<usize>,
        budget: &mut Budget,
        out: &mut impl FnMut(&Entry),
    ) -> ReadOutcome {
        if cursor >= self.next() {
            return ReadOutcome::Advanced(cursor);
        }
        let g = self.inner.read().expect("partition lock");
        if cursor >= g.next {
            return ReadOutcome::Advanced(cursor);
        }
        if cursor < g.memory_from {
            return ReadOutcome::BeforeMemory;
        }
        if max_lag.is_some_and(|m| (g.next - cursor) as u64 > m as u64) {
            return ReadOutcome::Lagged;
        }
        let start = g.ring.partition_point(|e| e.offset < cursor);
        let mut at = cursor;
        for e in g.ring.range(start..) {
            if budget.exhausted() {
                return ReadOutcome::Advanced(at);
            }
            if passes(filter, e.symbol) {
                budget.take(e.frame.len());
                out(e);
            }
            at = e.offset + 1;
        }
        ReadOutcome::Advanced(g.next)
    }

    /// The latest record of each symbol passing `filter` whose offset is at or after `since`,
    /// and the offset after the last record seen.
    pub fn latest(&self, filter: Option<&SymbolSet>, since: i64) -> (Vec<Entry>, i64) {
        let g = self.inner.read().expect("partition lock");
        let mut v: Vec<Entry> = g
            .latest
            .values()
            .filter(|l| l.entry.offset >= since && passes(filter, l.entry.symbol))
            .map(|l| l.entry.clone())
            .collect();
        v.sort_by_key(|e| e.offset);
        (v, g.next)
    }

    /// [`Self::latest`], each with whether it stands in for other records of its symbol at or
    /// after `since` (which the caller skips).
    pub fn latest_since(
        &self,
        filter: Option<&SymbolSet>,
        since: i64,
    ) -> (Vec<(Entry, bool)>, i64) {
        let g = self.inner.read().expect("partition lock");
        let mut v: Vec<(Entry, bool)> = g
            .latest
            .values()
            .filter(|l| l.entry.offset >= since && passes(filter, l.entry.symbol))
            .map(|l| (l.entry.clone(), l.before >= since))
            .collect();
        v.sort_by_key(|(e, _)| e.offset);
        (v, g.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::log::entry::sample as entry;

    fn read_all(
        log: &PartitionLog,
        cursor: i64,
        filter: Option<&SymbolSet>,
    ) -> (Vec<i64>, ReadOutcome) {
        let mut got = Vec::new();
        let mut budget = Budget {
            frames: usize::MAX,
            bytes: usize::MAX,
        };
        let r = log.read(cursor, filter, None, &mut budget, &mut |e| {
            got.push(e.offset)
        });
        (got, r)
    }

    #[test]
    fn reads_resume_at_the_cursor_filter_and_trim() {
        let log = PartitionLog::default();
        log.start_at(10, 9);
        log.append((10..20).map(|o| entry(o, (o % 2) as u32)), 5);
        assert_eq!(log.bounds(), (15, 20));
        assert_eq!(read_all(&log, 12, None).1, ReadOutcome::BeforeMemory);
        let (got, r) = read_all(&log, 16, None);
        assert_eq!((got, r), (vec![16, 17, 18, 19], ReadOutcome::Advanced(20)));
        let mut odd = SymbolSet::default();
        odd.insert(1);
        assert_eq!(read_all(&log, 15, Some(&odd)).0, vec![15, 17, 19]);
        assert_eq!(
            read_all(&log, 20, None),
            (vec![], ReadOutcome::Advanced(20))
        );
        // Lag is measured against the end.
        let mut budget = Budget {
            frames: 100,
            bytes: 1 << 20,
        };
        assert_eq!(
            log.read(15, None, Some(3), &mut budget, &mut |_| {}),
            ReadOutcome::Lagged
        );
        // The budget stops a read part-way, at the next offset to deliver.
        let mut budget = Budget {
            frames: 2,
            bytes: 1 << 20,
        };
        assert_eq!(
            log.read(15, None, None, &mut budget, &mut |_| {}),
            ReadOutcome::Advanced(17)
        );
    }

    #[test]
    fn latest_per_symbol_since_an_offset() {
        let log = PartitionLog::default();
        log.append((0..10).map(|o| entry(o, (o % 3) as u32)), 100);
        let (v, next) = log.latest(None, 0);
        assert_eq!(
            v.iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        assert_eq!(next, 10);
        assert_eq!(log.latest(None, 9).0.len(), 1);
        // Since 5: symbol 1 at 7 (4 is before 5: no other), 2 at 8 (and 5), 0 at 9 (and 6).
        let (v, _) = log.latest_since(None, 5);
        let v: Vec<(i64, bool)> = v.iter().map(|(e, skipped)| (e.offset, *skipped)).collect();
        assert_eq!(v, [(7, false), (8, true), (9, true)]);
    }
}
