//! The next write of one connection: frames go straight into its write buffer as WebSocket
//! frames (copied once from the hub's encoded bytes), with what the session needs to know about
//! them (how many, how many prices, the oldest price's source time).

use super::cursor::Sink;
use crate::edge::log::entry::Entry;
use crate::edge::wire::frames as wire;

#[derive(Default)]
pub struct Outbox {
    pub buf: Vec<u8>,
    /// Frames in `buf`.
    pub frames: usize,
    /// Of which prices (`message`, live or replayed, conflated or not).
    pub prices: usize,
    /// Source timestamp (ms) of the oldest price in `buf`, `i64::MAX` when none.
    pub oldest_ts: i64,
    /// Earliest receipt by this edge ([`crate::edge::log::entry::clock_us`]) of a price in `buf`.
    pub oldest_received_us: u64,
}

impl Outbox {
    pub fn new(buf: Vec<u8>) -> Outbox {
        Outbox {
            buf,
            frames: 0,
            prices: 0,
            oldest_ts: i64::MAX,
            oldest_received_us: u64::MAX,
        }
    }

    pub fn control(&mut self, frame: &str) {
        wire::put_text(&mut self.buf, frame);
        self.frames += 1;
    }

    fn priced(&mut self, e: &Entry) {
        self.frames += 1;
        self.prices += 1;
        self.oldest_ts = self.oldest_ts.min(e.ts_ms);
        self.oldest_received_us = self.oldest_received_us.min(e.received_us);
    }
}

impl Sink for Outbox {
    fn price(&mut self, e: &Entry) {
        wire::put_text(&mut self.buf, &e.frame);
        self.priced(e);
    }

    fn conflated(&mut self, e: &Entry) {
        let [a, b, c] = e.conflated_parts();
        wire::put_frame(
            &mut self.buf,
            wire::OP_TEXT,
            &[a.as_bytes(), b.as_bytes(), c.as_bytes()],
        );
        self.priced(e);
    }
}
