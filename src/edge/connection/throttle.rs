//! Per-symbol throttling of one subscription: at most one price per symbol per interval, and
//! always the latest. A throttled subscription is not woken by records: it ticks on its own timer,
//! once per interval, and at each tick takes, per partition, the latest price of every symbol
//! that changed since the last tick from the partition's latest-per-symbol map (as conflation
//! does), marked as conflated when it stands in for other prices of its symbol. Its cost follows
//! the prices it sends, not the records the edge reads.

use std::time::{Duration, Instant};

use super::cursor::{Cursor, Sink};
use crate::edge::log::symbols::SymbolSet;
use crate::edge::log::topic::TopicLog;

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

pub struct Throttle {
    interval: Duration,
    next_tick: Instant,
}

impl Throttle {
    /// A throttle whose first tick is due at once (it finds what came after the snapshot).
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            next_tick: Instant::now(),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Changes the interval from the next tick on.
    pub fn set_interval(&mut self, interval: Duration) {
        self.interval = interval;
    }

    /// When the next tick is due.
    pub fn next_tick(&self) -> Instant {
        self.next_tick
    }

    /// At a tick (nothing before): per partition, the latest price of each symbol with a record
    /// at or after its cursor, then every cursor moves to the end. Returns whether it ticked.
    pub fn tick<'a>(
        &mut self,
        topic: &TopicLog,
        filter: Option<&SymbolSet>,
        cursors: impl Iterator<Item = &'a mut Cursor>,
        now: Instant,
        out: &mut impl Sink,
    ) -> bool {
        if now < self.next_tick {
            return false;
        }
        for (p, cursor) in cursors.enumerate() {
            let (latest, end) = topic.partitions[p].latest_since(filter, cursor.next());
            for (e, stood_in) in &latest {
                if *stood_in {
                    out.conflated(e);
                } else {
                    out.price(e);
                }
            }
            *cursor = Cursor::live(p, end);
        }
        // From now, not from the tick that was due: a late tick never makes two come quickly.
        self.next_tick = now + self.interval;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::log::entry::{Entry, sample};

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
    fn one_price_per_symbol_per_tick_the_latest_marked_when_it_stands_in_for_others() {
        let topic = TopicLog::new("vip", "prices.vip", 1);
        topic.partitions[0].start_at(10, 9);
        let mut cursors = [Cursor::live(0, 10)];
        let mut th = Throttle::new(Duration::from_millis(100));
        let t0 = th.next_tick();
        let mut seen = Seen::default();
        // Symbol 1 at 10, 12, 14; symbol 2 at 11.
        topic.partitions[0].append(
            [10, 11, 12, 14].map(|o| sample(o, 1 + (o == 11) as u32)),
            100,
        );
        assert!(th.tick(&topic, None, cursors.iter_mut(), t0, &mut seen));
        assert_eq!(seen.0, [(11, false), (14, true)]);
        assert_eq!(cursors[0].next(), 15);
        // Nothing until the interval has passed, however many records come.
        topic.partitions[0].append([15, 16].map(|o| sample(o, 2)), 100);
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(!th.tick(&topic, None, cursors.iter_mut(), ms(99), &mut seen));
        assert_eq!(seen.0.len(), 2);
        assert!(th.tick(&topic, None, cursors.iter_mut(), ms(100), &mut seen));
        assert_eq!(seen.0[2..], [(16, true)]);
        // One new price since the last tick is a plain price; a quiet tick sends nothing.
        topic.partitions[0].append([sample(17, 1)], 100);
        assert!(th.tick(&topic, None, cursors.iter_mut(), ms(200), &mut seen));
        assert!(th.tick(&topic, None, cursors.iter_mut(), ms(300), &mut seen));
        assert_eq!(seen.0[3..], [(17, false)]);
        // A filter keeps other symbols out.
        topic.partitions[0].append([18, 19].map(|o| sample(o, o as u32 % 2 + 1)), 100);
        let mut only = SymbolSet::default();
        only.insert(2);
        assert!(th.tick(&topic, Some(&only), cursors.iter_mut(), ms(400), &mut seen));
        assert_eq!(seen.0[4..], [(19, false)]);
    }
}
