//! What the clients of a run count together.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A count that every client adds to on every read: one cell per thread (cache-line sized), so
/// that the clients' adds do not bounce one line between the cores; read as the sum.
#[derive(Default)]
pub struct Sharded([Shard; 8]);

#[derive(Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

impl Sharded {
    pub fn add(&self, n: u64) {
        use std::sync::atomic::AtomicUsize;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local!(static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % 8);
        MINE.with(|i| self.0[*i].0.fetch_add(n, Ordering::Relaxed));
    }

    pub fn total(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// Counters shared by every client of a run.
#[derive(Default)]
pub struct Counters {
    /// Frames read (every client, every read).
    pub frames: Sharded,
    pub conflated: AtomicU64,
    pub gaps: AtomicU64,
    pub connected: AtomicU64,
    pub subscribed: AtomicU64,
    /// Set once any client has read a price (recording or not).
    pub seen: AtomicBool,
    /// Counting (after a warm-up) or not.
    pub recording: AtomicBool,
    pub stop: AtomicBool,
}
