//! Per-symbol throttling of one subscription: at most one price per symbol per interval, and
//! always the latest. A price that comes too soon after the last one sent for its symbol is held
//! (a newer one replaces it) and goes out when the interval has passed, marked as conflated when
//! it stood in for prices that were skipped. It sits between a subscription's cursors and the
//! outbox as a [`Sink`], so the cursors read the log as fast as ever: throttling never makes a
//! client lag.

use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::cursor::Sink;
use crate::edge::log::entry::Entry;
use crate::edge::log::symbols::SymbolId;

/// The fastest rate a client may ask for, in updates per second per symbol.
pub const MAX_RATE: f64 = 1000.0;

/// The interval between two prices of a symbol at `rate` updates per second, rounded up to the
/// millisecond (so the rate is never exceeded), or why the rate is not one.
pub fn interval(rate: f64) -> Result<Duration, String> {
    if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
        return Err(format!(
            "maxRate must be a number of updates per second per symbol above 0 and at most \
             {MAX_RATE} (got {rate})"
        ));
    }
    Ok(Duration::from_millis((1000.0 / rate).ceil() as u64))
}

/// The rate an interval gives, for `subscribed`.
pub fn rate(interval: Duration) -> f64 {
    1000.0 / interval.as_millis().max(1) as f64
}

struct Slot {
    /// When the next price of this symbol may go out.
    next_at: Instant,
    /// The latest price not yet sent, and whether it replaced others (the client never sees
    /// those).
    held: Option<(Entry, bool)>,
}

pub struct Throttle {
    interval: Duration,
    slots: FxHashMap<SymbolId, Slot>,
    /// Symbols with a held price.
    held: usize,
}

impl Throttle {
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            slots: FxHashMap::default(),
            held: 0,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Changes the interval from the next price on; held prices stay held.
    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// When the next held price is due (`None`: nothing is held).
    pub fn next_due(&self) -> Option<Instant> {
        if self.held == 0 {
            return None;
        }
        self.slots
            .values()
            .filter(|s| s.held.is_some())
            .map(|s| s.next_at)
            .min()
    }

    /// Sends a price now when its symbol is due, or holds it.
    fn offer(&mut self, e: &Entry, conflated: bool, now: Instant, out: &mut impl Sink) {
        let interval = self.interval;
        let slot = self.slots.entry(e.symbol).or_insert(Slot {
            next_at: now,
            held: None,
        });
        if slot.held.is_none() && now >= slot.next_at {
            emit(out, e, conflated);
            slot.next_at = now + interval;
            return;
        }
        let replaced = match slot.held.take() {
            Some(_) => true,
            None => {
                self.held += 1;
                false
            }
        };
        slot.held = Some((e.clone(), replaced || conflated));
    }

    /// Sends the held prices whose interval has passed.
    pub fn release(&mut self, now: Instant, out: &mut impl Sink) {
        if self.held == 0 {
            return;
        }
        for slot in self.slots.values_mut() {
            if now >= slot.next_at
                && let Some((e, skipped)) = slot.held.take()
            {
                emit(out, &e, skipped);
                slot.next_at = now + self.interval;
                self.held -= 1;
            }
        }
    }

    /// A sink that passes prices through this throttle into `out`.
    pub fn sink<'a, S: Sink>(&'a mut self, out: &'a mut S, now: Instant) -> Throttled<'a, S> {
        Throttled {
            throttle: self,
            out,
            now,
        }
    }
}

fn emit(out: &mut impl Sink, e: &Entry, conflated: bool) {
    if conflated {
        out.conflated(e);
    } else {
        out.price(e);
    }
}

pub struct Throttled<'a, S> {
    throttle: &'a mut Throttle,
    out: &'a mut S,
    now: Instant,
}

impl<S: Sink> Sink for Throttled<'_, S> {
    fn price(&mut self, e: &Entry) {
        self.throttle.offer(e, false, self.now, self.out);
    }

    fn conflated(&mut self, e: &Entry) {
        self.throttle.offer(e, true, self.now, self.out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::log::entry::sample;

    #[derive(Default)]
    struct Seen(Vec<(i64, bool)>);

    impl Sink for Seen {
        fn price(&mut self, e: &Entry) {
            self.0.push((e.offset, false));
        }
        fn conflated(&mut self, e: &Entry) {
            self.0.push((e.offset, true));
        }
    }

    #[test]
    fn rates_become_intervals_rounded_so_the_rate_is_never_exceeded() {
        assert_eq!(interval(2.0), Ok(Duration::from_millis(500)));
        assert_eq!(interval(0.2), Ok(Duration::from_millis(5000)));
        assert_eq!(interval(3.0), Ok(Duration::from_millis(334)));
        assert_eq!(interval(1000.0), Ok(Duration::from_millis(1)));
        for bad in [0.0, -1.0, 1000.5, f64::NAN, f64::INFINITY] {
            assert!(interval(bad).unwrap_err().contains("maxRate"), "{bad}");
        }
        assert_eq!(rate(Duration::from_millis(5000)), 0.2);
    }

    #[test]
    fn one_price_per_symbol_per_interval_and_the_latest_is_held() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut th = Throttle::new(Duration::from_millis(100));
        let mut seen = Seen::default();
        // Symbol 1 at offsets 10, 12, 14; symbol 2 at 11 — all at once.
        for (o, sym) in [(10, 1), (11, 2), (12, 1), (14, 1)] {
            th.sink(&mut seen, t0).price(&sample(o, sym));
        }
        assert_eq!(seen.0, [(10, false), (11, false)]);
        assert_eq!(th.next_due(), Some(ms(100)));
        th.release(ms(99), &mut seen);
        assert_eq!(seen.0.len(), 2, "nothing before the interval");
        th.release(ms(100), &mut seen);
        // 14 stands in for 12: conflated.
        assert_eq!(seen.0[2..], [(14, true)]);
        assert_eq!(th.next_due(), None);
        // One price held without skipping any is a plain price when released.
        th.sink(&mut seen, ms(150)).price(&sample(16, 1));
        th.release(ms(200), &mut seen);
        assert_eq!(seen.0[3..], [(16, false)]);
        // After a quiet interval a price goes straight out.
        th.sink(&mut seen, ms(400)).price(&sample(18, 1));
        assert_eq!(seen.0[4..], [(18, false)]);
    }

    #[test]
    fn a_conflated_price_stays_marked() {
        let t0 = Instant::now();
        let mut th = Throttle::new(Duration::from_millis(100));
        let mut seen = Seen::default();
        th.sink(&mut seen, t0).conflated(&sample(10, 1));
        th.sink(&mut seen, t0).price(&sample(12, 2));
        th.sink(&mut seen, t0).conflated(&sample(14, 2));
        th.release(t0 + Duration::from_millis(100), &mut seen);
        assert_eq!(seen.0, [(10, true), (12, false), (14, true)]);
    }
}
