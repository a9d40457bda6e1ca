//! Many load clients of one server, started together and stopped together.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::client::{Counters, Target, run};

pub struct Fleet {
    pub counters: Arc<Counters>,
    handles: Vec<JoinHandle<Vec<u32>>>,
}

impl Fleet {
    /// Starts `n` clients of `target` on `port` (500 at a time) and waits up to two minutes
    /// until they have subscribed. Each samples one latency every `sample_every` prices.
    pub fn start(rt: &Runtime, port: u16, target: &Target, n: usize, sample_every: u64) -> Fleet {
        let counters = Arc::new(Counters::default());
        let mut handles = Vec::with_capacity(n);
        for _ in 0..n {
            handles.push(rt.spawn(run(port, target.clone(), counters.clone(), sample_every)));
            if handles.len() % 500 == 0 {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while (counters.subscribed.load(Ordering::Relaxed) as usize) < n
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let fleet = Fleet { counters, handles };
        if fleet.subscribed() < n {
            println!(
                "warning: only {} of {n} clients subscribed within 2 minutes; the figures below are for them",
                fleet.subscribed()
            );
        }
        fleet
    }

    /// Clients that have subscribed.
    pub fn subscribed(&self) -> usize {
        self.counters.subscribed.load(Ordering::Relaxed) as usize
    }

    /// Stops every client; their latency samples (µs).
    pub fn stop(self, rt: &Runtime) -> Vec<u32> {
        self.counters.stop.store(true, Ordering::Relaxed);
        let mut samples = Vec::new();
        for h in self.handles {
            if let Ok(s) = rt.block_on(h) {
                samples.extend(s);
            }
        }
        samples
    }
}
