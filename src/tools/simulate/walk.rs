//! A random walk of plausible quotes, in whole ticks (no floating point on prices), plus the
//! malformed records a real feed sometimes sends.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

use crate::pricing::Instrument;
use crate::pricing::decimal::to_fixed;

/// Plausible reference mids for well-known symbols; others start at 100.
fn reference_mid(symbol: &str) -> &'static str {
    match symbol {
        "EURUSD" => "1.0850",
        "GBPUSD" => "1.2700",
        "USDJPY" => "151.50",
        "USDCHF" => "0.8850",
        "AUDUSD" => "0.6550",
        "USDCAD" => "1.3600",
        "NZDUSD" => "0.6000",
        "EURJPY" => "164.30",
        "XAUUSD" => "2650.00",
        "BTCUSD" => "97000.00",
        "ETHUSD" => "3400.00",
        "AAPL" => "229.50",
        "MSFT" => "415.00",
        "ES" => "6000.00",
        _ => "100",
    }
}

/// A typical trade size of the instrument (FX in units of the base currency, gold in ounces,
/// bitcoin in coins, shares, contracts): the size of one depth level is 1 to 4 of these.
pub fn lot(symbol: &str) -> i64 {
    match symbol {
        "XAUUSD" => 100,
        "BTCUSD" | "ETHUSD" => 1,
        "AAPL" | "MSFT" => 1_000,
        "ES" => 10,
        s if s.len() == 6 && s.bytes().all(|b| b.is_ascii_uppercase()) => 1_000_000,
        _ => 100,
    }
}

struct SimInstrument {
    symbol: String,
    lot: i64,
    tick: Decimal,
    precision: u32,
    reference: i64,
    mid: i64,
    max_spread: i64,
    step: i64,
}

/// One generated record: the Kafka key and the JSON value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimRecord {
    pub key: String,
    pub value: String,
    pub malformed: bool,
}

/// The generator.
pub struct Walk {
    instruments: Vec<SimInstrument>,
    rng: SmallRng,
    seq: u64,
    malformed_ratio: f64,
    depth: usize,
}

impl Walk {
    /// `malformed_ratio` is the probability (0 to 1) that a record is deliberately broken.
    pub fn new(instruments: &[Instrument], seed: u64, malformed_ratio: f64) -> Self {
        let instruments = instruments
            .iter()
            .map(|i| {
                let tick = i.tick.size();
                let mid: Decimal = reference_mid(&i.symbol).parse().expect("static decimal");
                let ticks = (mid / tick)
                    .round()
                    .try_into()
                    .unwrap_or(10_000i64)
                    .max(100);
                SimInstrument {
                    symbol: i.symbol.clone(),
                    lot: lot(&i.symbol),
                    tick,
                    precision: i.precision,
                    reference: ticks,
                    mid: ticks,
                    // Spreads up to about 1 bp, moves of about 0.2 bp per update.
                    max_spread: (ticks / 10_000).max(1),
                    step: (ticks / 50_000).max(1),
                }
            })
            .collect();
        Self {
            instruments,
            rng: SmallRng::seed_from_u64(seed),
            seq: 0,
            malformed_ratio: malformed_ratio.clamp(0.0, 1.0),
            depth: 0,
        }
    }

    /// Records carry a depth ladder of `levels` per side (`bids`/`asks`, at most 50); 0 (the
    /// default) sends only the top of book with a size.
    pub fn with_depth(mut self, levels: usize) -> Self {
        self.depth = levels.min(crate::ingest::depth::MAX_LEVELS);
        self
    }

    /// The next record with source time `ts_ms`.
    pub fn next_record(&mut self, ts_ms: i64) -> SimRecord {
        self.seq += 1;
        let i = self.rng.random_range(0..self.instruments.len());
        let ins = &mut self.instruments[i];
        let mut step = self.rng.random_range(-ins.step..=ins.step);
        // Mean reversion keeps the walk within a few percent of the reference.
        if (ins.mid - ins.reference).abs() > ins.reference / 20 {
            step = (ins.reference - ins.mid).signum() * ins.step;
        }
        ins.mid = (ins.mid + step).max(ins.max_spread + 1);
        let spread = self.rng.random_range(1..=ins.max_spread);
        let bid_ticks = ins.mid - spread / 2;
        let ask_ticks = bid_ticks + spread;
        let bid = to_fixed(Decimal::from(bid_ticks) * ins.tick, ins.precision);
        let ask = to_fixed(Decimal::from(ask_ticks) * ins.tick, ins.precision);
        let symbol = ins.symbol.clone();
        let seq = self.seq;
        if self.malformed_ratio > 0.0 && self.rng.random_bool(self.malformed_ratio) {
            return self.malformed(symbol, bid, ask, ts_ms);
        }
        if self.depth == 0 {
            return SimRecord {
                value: format!(
                    r#"{{"symbol":"{symbol}","bid":"{bid}","ask":"{ask}","ts":{ts_ms},"bid_size":"1000000","ask_size":"1000000","id":"sim-{seq}","source":"simulator"}}"#
                ),
                key: symbol,
                malformed: false,
            };
        }
        let (bids, asks) = self.depth_levels(i, bid_ticks, ask_ticks);
        SimRecord {
            value: format!(
                r#"{{"symbol":"{symbol}","bid":"{bid}","ask":"{ask}","ts":{ts_ms},"bids":[{bids}],"asks":[{asks}],"id":"sim-{seq}","source":"simulator"}}"#
            ),
            key: symbol,
            malformed: false,
        }
    }

    /// `self.depth` levels per side from the top of book outward, one to a few ticks apart, each
    /// of 1 to 4 lots: `["1.08412","2000000"],…` for each side.
    fn depth_levels(&mut self, i: usize, bid_ticks: i64, ask_ticks: i64) -> (String, String) {
        let (tick, precision, lot, gap) = {
            let ins = &self.instruments[i];
            (ins.tick, ins.precision, ins.lot, ins.max_spread.max(2) / 2)
        };
        let mut sides = [String::new(), String::new()];
        for (side, (top, dir)) in sides.iter_mut().zip([(bid_ticks, -1i64), (ask_ticks, 1)]) {
            let mut ticks = top;
            for k in 0..self.depth {
                if k > 0 {
                    ticks += dir * self.rng.random_range(1..=gap);
                    side.push(',');
                }
                if ticks <= 0 {
                    side.pop();
                    break;
                }
                let size = lot * self.rng.random_range(1..=4);
                let price = to_fixed(Decimal::from(ticks) * tick, precision);
                side.push_str(&format!(r#"["{price}","{size}"]"#));
            }
        }
        let [bids, asks] = sides;
        (bids, asks)
    }

    fn malformed(&mut self, symbol: String, bid: String, ask: String, ts: i64) -> SimRecord {
        let (key, value) = match self.rng.random_range(0..5) {
            0 => (
                symbol.clone(),
                format!(r#"{{"symbol":"{symbol}","bid":"{bid}","#),
            ),
            1 => (
                "NOSUCH".to_string(),
                format!(r#"{{"symbol":"NOSUCH","bid":"{bid}","ask":"{ask}","ts":{ts}}}"#),
            ),
            2 => (
                symbol.clone(),
                format!(r#"{{"symbol":"{symbol}","bid":"-{bid}","ask":"{ask}","ts":{ts}}}"#),
            ),
            3 => (
                symbol.clone(),
                format!(r#"{{"symbol":"{symbol}","bid":"{ask}","ask":"{bid}","ts":{ts}}}"#),
            ),
            _ => (
                symbol.clone(),
                format!(r#"{{"symbol":"{symbol}","bid":"{bid}","ts":{ts}}}"#),
            ),
        };
        SimRecord {
            key,
            value,
            malformed: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rules;
    use crate::ingest::Decoder;

    fn rules() -> Rules {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/channels.toml")).unwrap();
        Rules::parse(&text, "channels.toml").unwrap()
    }

    #[test]
    fn valid_records_decode_on_the_tick_grid_near_the_reference() {
        let rules = rules();
        let mut walk = Walk::new(&rules.instruments, 3, 0.0);
        let mut decoder = Decoder::new();
        for n in 0..5_000 {
            let r = walk.next_record(1_700_000_000_000 + n);
            assert!(!r.malformed);
            let p = decoder.decode(r.value.as_bytes()).unwrap();
            assert_eq!(p.symbol, r.key);
            let ins = &rules.instruments[rules.instrument_index(p.symbol).unwrap()];
            assert!(p.bid < p.ask, "{}", r.value);
            assert!(ins.tick.is_multiple(p.bid) && ins.tick.is_multiple(p.ask));
            let reference: Decimal = reference_mid(p.symbol).parse().unwrap();
            let drift = ((p.bid - reference) / reference).abs();
            assert!(drift < Decimal::new(6, 2), "{} drifted {drift}", p.symbol);
        }
    }

    #[test]
    fn malformed_records_are_all_rejected() {
        let rules = rules();
        let mut walk = Walk::new(&rules.instruments, 4, 1.0);
        let mut decoder = Decoder::new();
        for n in 0..500 {
            let r = walk.next_record(n);
            assert!(r.malformed);
            let ok = decoder
                .decode(r.value.as_bytes())
                .ok()
                .filter(|p| rules.instrument_index(p.symbol).is_some());
            assert!(ok.is_none(), "accepted {}", r.value);
        }
    }

    #[test]
    fn depth_ladders_decode_with_the_top_of_book_as_their_first_level() {
        let rules = rules();
        let mut walk = Walk::new(&rules.instruments, 5, 0.0).with_depth(5);
        let mut decoder = Decoder::new();
        for n in 0..2_000 {
            let r = walk.next_record(n);
            let p = decoder.decode(r.value.as_bytes()).unwrap();
            assert_eq!(p.bids.len(), 5, "{}", r.value);
            assert_eq!(p.asks.len(), 5, "{}", r.value);
            assert_eq!((p.bids[0].price, p.asks[0].price), (p.bid, p.ask));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_walk() {
        let rules = rules();
        let mut a = Walk::new(&rules.instruments, 9, 0.1);
        let mut b = Walk::new(&rules.instruments, 9, 0.1);
        for n in 0..100 {
            assert_eq!(a.next_record(n), b.next_record(n));
        }
    }
}
